"""`python -m bot`: run the bot (settings from the environment or .env)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from runtime.errors import SelfieTvmError


class RedactToken(logging.Filter):
    """Defence in depth: whatever a library logs, the token is replaced before it is written."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if self.token in text:
            record.msg, record.args = text.replace(self.token, "<token>"), ()
        if record.exc_info and self.token in logging.Formatter().formatException(record.exc_info):
            record.msg = f"{record.getMessage()} ({record.exc_info[0].__name__}; details withheld: they hold the token)"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


def _problem(error: dict) -> str:
    """One validation error as `setting: message` (our validators' messages name the variable already)."""
    message = error["msg"].removeprefix("Value error, ")
    where = ".".join(str(p) for p in error["loc"]) or "settings"
    return message if message.startswith(("SELFIE_", "TELEGRAM_")) else f"{where}: {message}"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiohttp's access log would print request URLs, which contain the token.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    from pydantic_settings import SettingsError

    from .settings import ENV_FILE, BotSettings

    try:
        settings = BotSettings()
    except ValidationError as e:
        problems = "; ".join(_problem(err) for err in e.errors())
        hint = " Put TELEGRAM_BOT_TOKEN in .env (see .env.example)." if "token" in problems.lower() else ""
        print(f"error: bot settings are invalid ({problems}).{hint}", file=sys.stderr)
        return 2
    except SettingsError as e:  # a value pydantic-settings could not even parse (e.g. malformed JSON)
        print(f"error: bot settings are invalid ({e}{': ' + str(e.__cause__) if e.__cause__ else ''}).",
              file=sys.stderr)
        return 2
    env_file = Path(ENV_FILE).resolve()
    logging.getLogger(__name__).info("settings: from the environment, then %s", env_file if env_file.is_file()
                                     else f"no {ENV_FILE} file (looked in {env_file.parent})")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactToken(settings.token.get_secret_value()))
    from .app import run_polling, run_webhook
    from .service import SegmentationService

    try:
        service = SegmentationService(settings)
    except SelfieTvmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a model cache directory that cannot be created
        print(f"error: {e.strerror or e} ({e.filename}); set SELFIE_TVM_CACHE_DIR to a writable directory",
              file=sys.stderr)
        return 2
    try:
        if settings.webhook_url:
            run_webhook(settings, service)
        else:
            asyncio.run(run_polling(settings, service))
    finally:
        idle = service.close(timeout=1)
        logging.getLogger(__name__).info("stopped")
    if not idle:  # an engine run cannot be interrupted: don't wait for it to end
        logging.shutdown()
        os._exit(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
