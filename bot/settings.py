"""Bot settings from the environment or .env files (TELEGRAM_BOT_TOKEN required; the rest SELFIE_BOT_*).

Every setting carries its description: docs/hooks.py renders them as the documentation's settings table.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runtime.acquire import AUTO, twin_of
from runtime.engines import ENGINE_NAMES, LITERT, TVM_DEFAULT, TVM_TUNED
from runtime.errors import RegistryError
from runtime.file_model import is_file_model_name
from runtime.registry import registry

TOKEN_PATTERN = re.compile(r"^\d{5,}:[A-Za-z0-9_-]{30,}$")
SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what Telegram accepts as a webhook secret_token


# Secrets may come from files (compose `secrets:`, mounted under /run/secrets) instead of the environment.
SECRET_FILES = {"token": "TELEGRAM_BOT_TOKEN_FILE", "webhook_secret": "SELFIE_BOT_WEBHOOK_SECRET_FILE",
                "redis_password": "SELFIE_BOT_REDIS_PASSWORD_FILE"}


# Read from the current directory (where `python -m bot` or compose runs); `python -m bot` logs whether it found one.
ENV_FILE = ".env"


def _engines_from_text(value):
    """SELFIE_BOT_ENGINES as the CLI writes it (`litert,tvm-tuned`) or as JSON (`["litert", "tvm-tuned"]`)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError(f"SELFIE_BOT_ENGINES={value!r} is not a JSON list; write engines of "
                             f"{', '.join(ENGINE_NAMES)} comma-separated, e.g. litert,tvm-tuned") from None
    return [e.strip() for e in text.split(",") if e.strip()]


class BotSettings(BaseSettings):
    """The bot's settings: TELEGRAM_BOT_TOKEN, the rest SELFIE_BOT_<NAME> (environment, then .env files)."""

    model_config = SettingsConfigDict(env_prefix="SELFIE_BOT_", env_file=ENV_FILE, extra="ignore",
                                      populate_by_name=True)

    token: SecretStr = Field(validation_alias=AliasChoices("TELEGRAM_BOT_TOKEN", "SELFIE_BOT_TOKEN"),
                             description="The bot's token from @BotFather (required; or TELEGRAM_BOT_TOKEN_FILE "
                                         "naming a file that holds it).")
    model: str = Field(default_factory=lambda: twin_of(registry().default).name,
                       description="Registry model name, `auto`, or a .tflite file. Default: the main model's "
                                   "architecture twin, generated offline, so the bot (and its image) always has it.")
    engines: Annotated[list[str], NoDecode] = Field(
        [TVM_TUNED, TVM_DEFAULT, LITERT],
        description=f"Engines to run, comma-separated or a JSON list, of {', '.join(ENGINE_NAMES)}. The fastest one "
                    "(measured at start) answers; the others are timed on the same photo in the background and "
                    "their timings follow in an edited caption.")
    threads: int = Field(2, ge=1, description="Threads per engine, the same for every engine. One replica with the "
                         "defaults sustained about 1.7 photos/s at a 1 s p99 on a 2-core AVX2 host "
                         "(`./nox -s load -- --bot` measures yours; see Capacity of one replica).")
    tvm_target: str | None = Field(None, description="LLVM CPU the TVM libraries were built for: unset = this "
                                                     "machine; x86-64-v3 = the portable build (`selfie-tvm compile "
                                                     "--portable`, what the Docker image carries).")
    chat_queue: int = Field(2, ge=0, description="Photos a chat may queue behind the one being processed.")
    max_pending: int = Field(32, ge=1, description="Requests queued or running, all chats together, before the bot "
                                                   "answers \"busy\".")
    background_backlog_s: float = Field(60.0, gt=0, description="When the queued work of the slower engines' "
                                                                "background timings exceeds this, a new photo gets "
                                                                "the benchmark's p50 for them instead of a "
                                                                "measurement.")
    request_timeout_s: float = Field(120.0, gt=0, description="A request's decode and processing on the reply "
                                                              "lane, its wait in that lane's queue included (not "
                                                              "the download, nor the wait for the same chat's "
                                                              "earlier requests).")
    max_side: int = Field(2048, ge=256, le=4096, description="Photos are scaled down to this many pixels a side "
                                                             "while decoding: bounds memory and the effects' cost.")
    download_timeout_s: int = Field(30, ge=1, description="Seconds to download one photo from Telegram.")
    max_download_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest photo or file downloaded, in "
                                                                        "bytes (the Bot API's getFile limit).")
    api_server: str | None = Field(None, description="A local Bot API server, e.g. http://127.0.0.1:8081 "
                                                     "(unset: Telegram's).")
    webhook_url: str | None = Field(None, description="Public HTTPS URL Telegram posts updates to; set to use a "
                                                      "webhook instead of long polling. Its path should end in "
                                                      "SELFIE_BOT_WEBHOOK_PATH.")
    webhook_secret: SecretStr | None = Field(None, description="X-Telegram-Bot-Api-Secret-Token (or "
                                                               "SELFIE_BOT_WEBHOOK_SECRET_FILE); generated at start "
                                                               "when unset, required with Redis (replicas share "
                                                               "it).")
    webhook_host: str = Field("0.0.0.0", description="Address the webhook server listens on (inside a container: "
                                                     "all interfaces).")
    webhook_port: int = Field(8080, ge=1, le=65535, description="Port the webhook server listens on (the image "
                                                                "exposes 8080).")
    webhook_path: str = Field("/webhook", pattern=r"^/\S*$", description="Path the webhook server receives "
                                                                         "updates at.")
    redis_url: str | None = Field(None, description="e.g. redis://redis:6379/0: FSM state and event isolation "
                                                    "shared by replicas (unset: in memory).")
    redis_password: SecretStr | None = Field(None, description="Redis password (or SELFIE_BOT_REDIS_PASSWORD_FILE), "
                                                               "kept out of the URL so it can come from a secret "
                                                               "file.")

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, values):
        """`<VARIABLE>_FILE` names a file holding that secret (used when the secret itself is not set)."""
        if not isinstance(values, dict):
            return values
        aliases = {"token": ("TELEGRAM_BOT_TOKEN", "SELFIE_BOT_TOKEN")}
        for name, variable in SECRET_FILES.items():
            given = any(values.get(k) not in (None, "") for k in (name, *aliases.get(name, ())))
            path = os.environ.get(variable)
            if given or not path:
                continue
            try:
                values[name] = Path(path).read_text().strip()
            except OSError as e:
                raise ValueError(f"{variable}={path}: cannot read the secret file ({e.strerror})") from None
        return values

    @field_validator("api_server", "webhook_url", "webhook_secret", "redis_url", "redis_password", "tvm_target",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, v):
        return None if v == "" else v  # docker-compose passes unset variables as ""

    @field_validator("token")
    @classmethod
    def _token_format(cls, v: SecretStr) -> SecretStr:
        if not TOKEN_PATTERN.match(v.get_secret_value()):
            raise ValueError("TELEGRAM_BOT_TOKEN does not look like a bot token (digits:secret from @BotFather)")
        return v

    @field_validator("webhook_secret")
    @classmethod
    def _secret_format(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not SECRET_PATTERN.match(v.get_secret_value()):
            raise ValueError("the webhook secret may hold 1-256 characters A-Z, a-z, 0-9, _ and -")
        return v

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        """A registry name, `auto`, a file model's name or a .tflite file; anything else is refused at once, with
        the names that would work (not after the engines of another model were loaded)."""
        if v == AUTO or is_file_model_name(v) or v.endswith(".tflite") or Path(v).is_file():
            return v
        try:
            registry().get(v)
        except RegistryError as e:
            raise ValueError(f"SELFIE_BOT_MODEL: {e}") from None
        return v

    @field_validator("engines", mode="before")
    @classmethod
    def _engines_list(cls, v):
        return _engines_from_text(v)

    @field_validator("engines")
    @classmethod
    def _known_engines(cls, v: list[str]) -> list[str]:
        unknown = [e for e in v if e not in ENGINE_NAMES]
        if unknown or not v:
            problem = f"unknown engine {', '.join(unknown)}" if unknown else "no engine given"
            raise ValueError(f"SELFIE_BOT_ENGINES: {problem}; choose one or more of {', '.join(ENGINE_NAMES)}, "
                             "comma-separated (e.g. litert,tvm-tuned)")
        return v

    @model_validator(mode="after")
    def _replicas_share_the_secret(self) -> BotSettings:
        if self.redis_url and self.webhook_url and self.webhook_secret is None:
            raise ValueError("SELFIE_BOT_WEBHOOK_SECRET is required with SELFIE_BOT_REDIS_URL and a webhook: "
                             "every replica must register the same secret, or Telegram gets 401 from all but one")
        return self
