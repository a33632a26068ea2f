"""Every CLI verb answers a user's mistake or a missing artefact with one sentence, never a traceback.

Each case goes through `runtime.cli.main` as the console script does: exit status 2, one line on
stderr saying what is wrong and what to run (or fix) next, and no Python traceback anywhere.
"""

from __future__ import annotations

import pytest

from runtime.cli import main

TWIN = "selfie_multiclass_twin"


def fails(capsys, *argv: str) -> str:
    """Run the CLI, expect a clean failure; return its stderr."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out = capsys.readouterr()
    assert code == 2, (code, out.err)
    assert "Traceback" not in out.err + out.out
    assert out.err.strip(), "a failure must say why on stderr"
    return out.err


def test_missing_photo(capsys, tmp_path):
    err = fails(capsys, "segment", str(tmp_path / "nope.jpg"), "--model", TWIN)
    assert "nope.jpg: no such file" in err


def test_photo_is_a_directory(capsys, tmp_path):
    assert "is a directory" in fails(capsys, "hair", str(tmp_path), "--color", "red", "--model", TWIN)


def test_missing_background(capsys, grace_hopper_path, tmp_path):
    err = fails(capsys, "background", str(grace_hopper_path), "--background", str(tmp_path / "bg.png"),
                "--model", TWIN)
    assert "bg.png: no such file" in err


def test_unknown_model(capsys, grace_hopper_path):
    err = fails(capsys, "segment", str(grace_hopper_path), "--model", "nope")
    assert "unknown model 'nope'" in err and "`selfie-tvm models`" in err


def test_missing_model_file(capsys, grace_hopper_path, tmp_path):
    err = fails(capsys, "segment", str(grace_hopper_path), "--model", TWIN,
                "--model-path", str(tmp_path / f"{TWIN}.tflite"))
    assert "does not exist" in err


def test_model_that_cannot_be_downloaded(capsys, grace_hopper_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFIE_TVM_OFFLINE", "1")
    monkeypatch.setenv("SELFIE_TVM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SELFIE_TVM_MODELS_DIR", str(tmp_path))
    err = fails(capsys, "segment", str(grace_hopper_path), "--model", "selfie_multiclass_256x256")
    assert "https://storage.googleapis.com/" in err and str(tmp_path) in err


def test_unknown_engine(capsys, grace_hopper_path):
    err = fails(capsys, "segment", str(grace_hopper_path), "--engine", "onnx")
    assert "invalid choice: 'onnx'" in err and "tvm-tuned" in err


def test_zero_threads(capsys, grace_hopper_path):
    assert "must be at least 1" in fails(capsys, "segment", str(grace_hopper_path), "--threads", "0")


def test_missing_library(capsys, grace_hopper_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFIE_TVM_BUILD_DIR", str(tmp_path))
    err = fails(capsys, "segment", str(grace_hopper_path), "--model", TWIN, "--engine", "tvm-tuned")
    assert f"build it with `selfie-tvm compile --model {TWIN} --tuned`" in err


def test_missing_tuning_records(capsys, tmp_path):
    (tmp_path / "records").mkdir()
    err = fails(capsys, "compile", "--model", TWIN, "--tuned", "--records", str(tmp_path / "records"),
                "--out", str(tmp_path / "out"))
    assert f"no tuning records for {TWIN}" in err and f"`selfie-tvm tune --model {TWIN}`" in err
    assert not (tmp_path / "out" / "default.so").exists()  # it stopped before building anything


def test_bad_colour(capsys, grace_hopper_path):
    err = fails(capsys, "hair", str(grace_hopper_path), "--color", "blurple", "--model", TWIN)
    assert "'blurple' is not a colour" in err and "#RRGGBB" in err


def test_corrupt_photo(capsys, tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    err = fails(capsys, "segment", str(junk), "--model", TWIN)
    assert "error: the file is corrupt or truncated" in err


def test_output_that_cannot_be_written(capsys, grace_hopper_path, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    err = fails(capsys, "segment", str(grace_hopper_path), "--model", TWIN, "--out", str(blocker / "out"))
    assert str(blocker) in err


@pytest.mark.parametrize("tracker", ["localhost", "localhost:port", ":9190", "host:70000"])
def test_bad_rpc_tracker(capsys, tracker):
    err = fails(capsys, "tune", "--model", TWIN, "--rpc-tracker", tracker, "--rpc-key", "k")
    assert "must be HOST:PORT" in err


def test_rpc_key_without_tracker(capsys):
    err = fails(capsys, "tune", "--model", TWIN, "--rpc-key", "k")
    assert "--rpc-tracker and --rpc-key go together" in err


def test_bad_budget(capsys):
    assert "must be at least 1" in fails(capsys, "tune", "--model", TWIN, "--budget", "-5")


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--mcpu", "bogus", "--mcpu 'bogus' is not a CPU LLVM knows"),
    ("--mtriple", "nonsense-triple", "LLVM knows no architecture 'nonsense'"),
])
def test_unknown_target_names(capsys, tmp_path, option, value, message):
    err = fails(capsys, "compile", "--model", TWIN, option, value, "--out", str(tmp_path))
    assert message in err and not list(tmp_path.iterdir())


def test_a_verb_whose_package_cannot_be_imported_says_so(capsys, tmp_path, monkeypatch):
    """An installed package registering a verb whose module fails to import (extras missing)."""
    dist = tmp_path / "broken_verbs-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-verbs\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[selfie_tvm.commands]\nwarp = broken_verbs_needs_an_extra.cli\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    err = fails(capsys, "warp", "--budget", "5")
    assert "`selfie-tvm warp` is unavailable: importing broken_verbs_needs_an_extra.cli failed" in err
    assert "No module named 'broken_verbs_needs_an_extra'" in err and "pip install" in err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "warp" in capsys.readouterr().out
