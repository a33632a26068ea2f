"""Runtime settings from the environment (prefix SELFIE_TVM_) or a .env file.

The one place that says where models, build outputs and results live. Read lazily (call
`get_settings()` when needed, never at import), so a value set in `.env` or by a test is honoured.
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_path
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SELFIE_TVM_", env_file=".env", extra="ignore")

    # A directory holding .tflite files by registry file name (CI: ../shared/models).
    models_dir: Path | None = None
    # Where downloaded and generated models are cached.
    cache_dir: Path = user_cache_path("selfie-tvm") / "models"
    # Disable downloads entirely (fail fast with instructions instead).
    offline: bool = False
    download_timeout_s: float = 30.0
    # Compiled libraries: <build_dir>/<model>/<target-id>/{default,tuned}.{so,json} (SELFIE_TVM_BUILD_DIR).
    build_dir: Path = PROJECT_ROOT / "tvm_model"
    # Committed reports and tuning records: <results_dir>/<model>/<target-id>/ (SELFIE_TVM_RESULTS_DIR).
    results_dir: Path = PROJECT_ROOT / "results"


def get_settings() -> RuntimeSettings:
    return RuntimeSettings()
