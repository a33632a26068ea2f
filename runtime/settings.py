"""Runtime settings from the environment (prefix SELFIE_TVM_) or a .env file.

The one place that says where models, build outputs and results live. Read lazily (call
`get_settings()` when needed, never at import), so a value set in `.env` or by a test is honoured.
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_path
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class RuntimeSettings(BaseSettings):
    """Where models, build outputs and results live: SELFIE_TVM_<NAME> (environment, then .env)."""

    model_config = SettingsConfigDict(env_prefix="SELFIE_TVM_", env_file=".env", extra="ignore")

    models_dir: Path | None = Field(None, description="A directory holding .tflite files by their registry file "
                                                     "name (e.g. /work/shared/models); looked in before the cache "
                                                     "and any download.")
    cache_dir: Path = Field(user_cache_path("selfie-tvm") / "models",
                            description="Where downloaded and generated models (the twin) are cached.")
    offline: bool = Field(False, description="Never download: a model that is not in SELFIE_TVM_MODELS_DIR or the "
                                             "cache fails at once, saying where to put it.")
    download_timeout_s: float = Field(30.0, gt=0, description="Seconds to download one model file.")
    build_dir: Path = Field(PROJECT_ROOT / "tvm_model",
                            description="Compiled libraries: "
                                        "<build_dir>/<model>/<target-id>/{default,tuned}.{so,json}.")
    results_dir: Path = Field(PROJECT_ROOT / "results",
                              description="Reports and tuning records: <results_dir>/<model>/<target-id>/ and "
                                          "<results_dir>/tuning/<ISA level>/.")


def get_settings() -> RuntimeSettings:
    return RuntimeSettings()
