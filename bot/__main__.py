"""`python -m bot`: run the bot (settings from the environment or .env)."""

from __future__ import annotations

import asyncio
import logging
import sys

from pydantic import ValidationError

from runtime.errors import SelfieTvmError

from .app import run_polling, run_webhook
from .service import SegmentationService
from .settings import BotSettings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiohttp's access log would print request URLs, which contain the token.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        settings = BotSettings()
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
                             for err in e.errors())
        print(f"error: bot settings are invalid ({problems}). Put TELEGRAM_BOT_TOKEN in .env "
              "(see .env.example).", file=sys.stderr)
        return 2
    try:
        service = SegmentationService(settings)
    except SelfieTvmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if settings.webhook_url:
        run_webhook(settings, service)
    else:
        asyncio.run(run_polling(settings, service))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
