"""Runtime paths come from one settings object, read when needed, from the environment or `.env`."""

from __future__ import annotations

from types import SimpleNamespace

from runtime import artifacts

TARGET = SimpleNamespace(id="cpu-avx2-2c")  # build_dir/report_dir only need the target's id


def test_paths_follow_dot_env_read_at_call_time(tmp_path, monkeypatch):
    monkeypatch.delenv("SELFIE_TVM_BUILD_DIR", raising=False)  # the environment would win over .env
    monkeypatch.delenv("SELFIE_TVM_RESULTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"SELFIE_TVM_BUILD_DIR={tmp_path / 'libs'}\n"
                                   f"SELFIE_TVM_RESULTS_DIR={tmp_path / 'res'}\n")
    assert artifacts.build_dir("m", TARGET) == tmp_path / "libs" / "m" / "cpu-avx2-2c"
    assert artifacts.report_dir("m", TARGET) == tmp_path / "res" / "m" / "cpu-avx2-2c"


def test_environment_set_after_import_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFIE_TVM_BUILD_DIR", str(tmp_path / "later"))
    assert artifacts.build_root() == tmp_path / "later"


def test_defaults_are_the_checkout_folders(tmp_path, monkeypatch):
    from runtime.settings import PROJECT_ROOT

    monkeypatch.delenv("SELFIE_TVM_BUILD_DIR", raising=False)
    monkeypatch.delenv("SELFIE_TVM_RESULTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    assert artifacts.build_root() == PROJECT_ROOT / "tvm_model"
    assert artifacts.results_root() == PROJECT_ROOT / "results"
