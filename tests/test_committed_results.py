"""Every committed result page is what today's code renders from its saved data, byte for byte.

A renderer that changes (a column, a word, a ratio's direction) without the committed pages being rendered
again (`python -m benchmark.rerender`) fails here, as does a page edited by hand or a run whose saved data
today's code cannot read.
"""

from __future__ import annotations

import json

import pytest

from benchmark import ablation, headline, rerender
from runtime.settings import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "results"


def test_every_committed_page_renders_again_byte_for_byte():
    assert rerender.stale(RESULTS, headline.README) == []


def test_the_check_sees_a_page_that_differs(tmp_path):
    """The comparison can fail: a committed ablation page with one number changed is named stale."""
    import shutil

    copy = tmp_path / "results"
    directory = next(d for d in rerender.ablation_dirs(RESULTS) if (d / ablation.SAMPLES).is_file())
    target = copy / directory.relative_to(RESULTS)
    shutil.copytree(directory, target)
    page = target / ablation.PAGE
    page.write_text(page.read_text().replace("| LiteRT (XNNPACK)", "| LiteRT (XNNPACK) ", 1))
    assert rerender.stale(copy, None) == [str(page.relative_to(copy))]


def test_every_report_and_ablation_page_says_the_ratio_direction_in_words():
    pages = [run.parent / "report.md" for run in rerender.saved_runs(RESULTS)]
    pages += [d / ablation.PAGE for d in rerender.ablation_dirs(RESULTS)]
    pages += [RESULTS / "leaderboard.md"]
    for page in pages:
        text = page.read_text()
        assert "x LiteRT's time: " in text, page
        assert " vs LiteRT" not in text and "vs_litert" not in text, page


def test_no_orphaned_result_folder():
    """Every folder of results/<model>/ holds a saved run or is linked from a page that is (README, docs, a
    report or ablation page beside it)."""
    linked = "\n".join(p.read_text() for p in [PROJECT_ROOT / "README.md", *(PROJECT_ROOT / "docs").rglob("*.md"),
                                                *RESULTS.rglob("*.md")])
    for folder in sorted(p for p in RESULTS.glob("*/*") if p.is_dir()):
        rel = folder.relative_to(RESULTS).as_posix()
        assert (folder / "benchmark.json").is_file() or rel in linked, rel


@pytest.mark.parametrize("run", rerender.saved_runs(RESULTS), ids=lambda p: p.parent.relative_to(RESULTS).as_posix())
def test_the_leaderboard_or_readme_shows_each_saved_run(run):
    shown = json.loads((RESULTS / "leaderboard_runs.json").read_text())["runs"]
    readme = (PROJECT_ROOT / "README.md").read_text()
    rel = run.relative_to(RESULTS).as_posix()
    assert rel in shown or f"results/{run.parent.relative_to(RESULTS).as_posix()}/report.md" in readme
