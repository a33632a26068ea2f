"""Runtime settings from the environment (prefix SELFIE_TVM_) or a .env file."""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_path
from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SELFIE_TVM_", env_file=".env", extra="ignore")

    # A directory holding .tflite files by registry file name (CI: ../shared/models).
    models_dir: Path | None = None
    # Where downloaded and generated models are cached.
    cache_dir: Path = user_cache_path("selfie-tvm") / "models"
    # Disable downloads entirely (fail fast with instructions instead).
    offline: bool = False
    download_timeout_s: float = 30.0


def get_settings() -> RuntimeSettings:
    return RuntimeSettings()
