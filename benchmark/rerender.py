"""Render every committed result page again from its saved data, with today's code.

    python -m benchmark.rerender            # rewrite them in place (after a renderer changed)
    python -m benchmark.rerender --check    # render into a scratch copy; list every page that differs

Pages: each run's report (results/<model>/<target>/benchmark.json -> report.md and its tables), the
leaderboard (results/leaderboard_runs.json -> leaderboard.md, .csv), every ablation page
(ablation_latency.csv, and ablation_samples.csv where kept -> ablation_latency.md) and README's headline
table (benchmark/headline.py). Figures are drawn again too but not compared: their bytes depend on the
plotting library's version. tests/test_committed_results.py runs the check, so a page cannot go stale.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from runtime.artifacts import results_root

from . import ablation, headline, leaderboard
from .report import write_report

# What a report renders besides its figures (the pages and tables compared byte for byte).
REPORT_FILES = ("report.md", "latency_samples.csv", "latency_stats.csv", "agreement.csv", "environment.json",
                "profile_tuned.csv")
LEADERBOARD_FILES = ("leaderboard.md", "leaderboard.csv")


def saved_runs(root: Path) -> list[Path]:
    return sorted(root.glob("*/*/benchmark.json"))


def ablation_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob(ablation.SUMMARY))


def _model_of(directory: Path, root: Path) -> str:
    """results/<model>/...: an ablation's summary does not name its model, its folder does."""
    return directory.relative_to(root).parts[0]


def render_all(root: Path, readme: Path | None) -> list[Path]:
    """Render every page under `root` (and README's headline table) in place; returns the pages written."""
    written = []
    for run in saved_runs(root):
        written.append(write_report(run, run.parent))
    if (root / leaderboard.INPUTS).is_file():
        paths, missing = leaderboard.saved_inputs(root)
        written.append(leaderboard.write_leaderboard(paths, root, missing))
    for directory in ablation_dirs(root):
        ablation.render_page(directory, _model_of(directory, root))
        written.append(directory / ablation.PAGE)
    if readme is not None:
        headline.update_readme(readme, root)
        written.append(readme)
    return written


def _compared(root: Path) -> list[Path]:
    """The files render_all writes that are compared, relative to `root`."""
    files = [run.parent / name for run in saved_runs(root) for name in REPORT_FILES]
    files += [root / name for name in LEADERBOARD_FILES]
    files += [d / name for d in ablation_dirs(root) for name in (ablation.SUMMARY, ablation.PAGE)]
    return [f.relative_to(root) for f in files if f.is_file()]


def stale(root: Path, readme: Path | None) -> list[str]:
    """Render a copy of `root` (and README) and name every compared file whose bytes differ from the committed
    one, or that a render would add or remove."""
    with tempfile.TemporaryDirectory(prefix="selfie-tvm-rerender-") as scratch:
        copy = Path(scratch) / "results"
        shutil.copytree(root, copy)
        readme_copy = None
        if readme is not None:
            readme_copy = Path(scratch) / readme.name
            shutil.copyfile(readme, readme_copy)
        render_all(copy, readme_copy)
        before, after = set(_compared(root)), set(_compared(copy))
        differ = [str(f) for f in sorted(before & after) if not filecmp.cmp(root / f, copy / f, shallow=False)]
        differ += [f"{f} (a render removes it)" for f in sorted(before - after)]
        differ += [f"{f} (a render adds it)" for f in sorted(after - before)]
        if readme is not None and readme.read_bytes() != readme_copy.read_bytes():
            differ.append(f"{readme.name} (its headline table)")
        return differ


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.rerender", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="render into a scratch copy and list the pages that differ")
    p.add_argument("--results", type=Path, default=None, help="results directory (default: the project's)")
    p.add_argument("--readme", type=Path, default=headline.README, help="README whose headline table to render")
    args = p.parse_args(argv)
    root = args.results or results_root()
    readme = args.readme if args.readme.is_file() else None
    if args.check:
        differ = stale(root, readme)
        for name in differ:
            print(f"stale: {name}")
        print(f"{len(differ)} stale page(s)" if differ else "every committed page is what today's code renders")
        return 1 if differ else 0
    for page in render_all(root, readme):
        print(f"rendered: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
