"""README's headline table: tuned / LiteRT for every model and every machine a run was saved on.

    python -m benchmark.headline            # rewrite the table in README.md from results/*/*/benchmark.json

Rendered from the saved runs only (like the leaderboard), between two markers in README.md, so a new
measurement is one command away from the README, and tests/test_committed_results.py fails when the
committed table is not what the committed runs say.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from runtime.artifacts import results_root
from runtime.registry import registry
from runtime.settings import PROJECT_ROOT

from .leaderboard import rows
from .saved_run import SavedRun

README = PROJECT_ROOT / "README.md"
START = "<!-- headline table: rendered by `python -m benchmark.headline` from the saved runs; do not edit -->"
END = "<!-- end of headline table -->"


def _ratio(medians: float, paired: float) -> str:
    """The paired ratio where the run timed pairs (drift cancels), else the ratio of medians (marked †)."""
    value, mark = (paired, "") if not pd.isna(paired) else (medians, " †")
    if pd.isna(value):
        return "-"
    change = round(abs(1 - value) * 100)
    words = ("as fast" if change == 0 else f"{change} % {'faster' if value < 1 else 'slower'}" if value < 2
             else f"{value:.1f}x as long")
    return f"**{value:.2f}**{mark} ({words})"


def table(readme_dir: Path, root: Path) -> str:
    names = list(registry().models)
    found = []
    for path in sorted(root.glob("*/*/benchmark.json")):
        run = SavedRun.read(path)
        by_threads = {r["threads"]: r for r in rows(run)}
        first = next(iter(by_threads.values()))
        found.append({
            "order": (names.index(run.model) if run.model in names else len(names), first["isa"], first["date"]),
            "model": run.model + (" (twin)" if first["synthetic"] else ""), "ISA level": first["isa"],
            "measured on": f"{run.environment.cpu} (`{run.target['id']}`)", "date": first["date"][:10],
            **{f"tuned / LiteRT, {n} thread{'s' if n > 1 else ''}":
               _ratio(by_threads[n]["tuned_vs_litert"], by_threads[n]["tuned_vs_litert_paired"])
               if n in by_threads else "-" for n in (1, 2)},
            "report": f"[report]({Path(os.path.relpath(path.parent / 'report.md', readme_dir)).as_posix()})"})
    frame = pd.DataFrame(sorted(found, key=lambda r: r["order"])).drop(columns="order")
    return frame.to_markdown(index=False, disable_numparse=True)


def render(readme_text: str, readme_dir: Path, root: Path) -> str:
    """README's text with the table between START and END rendered again."""
    head, start, rest = readme_text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README has no headline table markers ({START!r} ... {END!r})")
    return f"{head}{START}\n{table(readme_dir, root)}\n{END}{tail}"


def update_readme(readme: Path, root: Path | None = None) -> Path:
    readme.write_text(render(readme.read_text(), readme.parent, root or results_root()))
    return readme


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.headline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readme", type=Path, default=README)
    args = p.parse_args(argv)
    try:
        print(f"headline table: {update_readme(args.readme)}")
    except ValueError as e:
        p.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
