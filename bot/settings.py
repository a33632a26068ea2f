"""Bot settings from the environment or .env (TELEGRAM_BOT_TOKEN required; the rest SELFIE_BOT_*)."""

from __future__ import annotations

import re

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TOKEN_PATTERN = re.compile(r"^\d{5,}:[A-Za-z0-9_-]{30,}$")


class BotSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SELFIE_BOT_", env_file=".env", extra="ignore", populate_by_name=True)

    token: SecretStr = Field(validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN", "SELFIE_BOT_TOKEN"))
    model: str = "selfie_multiclass_twin"
    engines: list[str] = ["tvm-tuned", "tvm-default", "litert"]
    threads: int = 2
    max_pending: int = 4  # requests queued or running before the bot answers "busy"
    workers: int = 1  # inference threads (one request at a time keeps timings honest)
    max_download_bytes: int = 20 * 1024 * 1024  # the Bot API's getFile limit
    api_server: str | None = None  # a local Bot API server, e.g. http://127.0.0.1:8081
    webhook_url: str | None = None  # set to use a webhook instead of long polling
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8080

    @field_validator("token")
    @classmethod
    def _token_format(cls, v: SecretStr) -> SecretStr:
        if not TOKEN_PATTERN.match(v.get_secret_value()):
            raise ValueError("TELEGRAM_BOT_TOKEN does not look like a bot token (digits:secret from @BotFather)")
        return v
