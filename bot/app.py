"""Wiring: Bot, Dispatcher (memory or Redis FSM storage), routers, command menu; long polling or webhook."""

from __future__ import annotations

import logging
import secrets

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from .routers import background, common, hair, segmentation
from .service import SegmentationService
from .settings import BotSettings

log = logging.getLogger(__name__)
# At shutdown: requests being answered get this long, the lanes a second more (`python -m bot`): 3 s in all.
SHUTDOWN_REQUESTS_S = 2.0


def create_bot(settings: BotSettings) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.api_server)) if settings.api_server else None
    return Bot(token=settings.token.get_secret_value(), session=session)


def create_storage(settings: BotSettings):
    """(storage, events isolation): Redis when SELFIE_BOT_REDIS_URL is set (replicas share conversations),
    else in memory; either way one chat's updates are handled one at a time, in order."""
    if not settings.redis_url:
        from aiogram.fsm.storage.memory import MemoryStorage, SimpleEventIsolation

        return MemoryStorage(), SimpleEventIsolation()
    from aiogram.fsm.storage.redis import RedisStorage

    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    storage = RedisStorage.from_url(settings.redis_url, connection_kwargs={"password": password} if password else None)
    return storage, storage.create_isolation()


def create_dispatcher(service: SegmentationService, settings: BotSettings | None = None) -> Dispatcher:
    storage, isolation = create_storage(settings or service.settings)
    options = {"storage": storage} if storage else {}
    if isolation:
        options["events_isolation"] = isolation
    dp = Dispatcher(service=service, **options)
    dp.include_routers(common.create_router(), segmentation.create_router(), hair.create_router(),
                       background.create_router(), common.create_fallback_router())

    @dp.startup()
    async def set_commands(bot: Bot) -> None:
        await bot.set_my_commands(common.COMMANDS)

    @dp.shutdown()
    async def finish_requests() -> None:
        """Drop background timings at once; let requests being answered finish (2 s at most)."""
        import asyncio

        for task in service.late_timings:  # a timing run under way ends by itself; `close` stops the lanes
            task.cancel()
        unfinished = [t for t in service.tasks if not t.done()]
        if unfinished:
            log.info("stopping: waiting for %d request(s)", len(unfinished))
            _, late = await asyncio.wait(unfinished, timeout=SHUTDOWN_REQUESTS_S)
            for task in late:
                task.cancel()
        await asyncio.gather(*service.tasks, *service.late_timings, return_exceptions=True)

    return dp


async def run_polling(settings: BotSettings, service: SegmentationService) -> None:
    bot = create_bot(settings)
    dp = create_dispatcher(service, settings)
    await bot.delete_webhook(drop_pending_updates=False)
    log.info("polling for updates")
    await dp.start_polling(bot, handle_signals=True)  # SIGTERM/SIGINT: stop polling, finish, close


def webhook_secret(settings: BotSettings) -> str:
    return settings.webhook_secret.get_secret_value() if settings.webhook_secret else secrets.token_urlsafe(32)


def create_webhook_app(settings: BotSettings, service: SegmentationService):
    """An aiohttp app receiving updates at settings.webhook_path; registers settings.webhook_url with a secret token on
    start, and answers 401 to any request without it."""
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
    from aiohttp import web

    bot = create_bot(settings)
    dp = create_dispatcher(service, settings)
    secret = webhook_secret(settings)

    @dp.startup()
    async def register(bot: Bot) -> None:
        await bot.set_webhook(settings.webhook_url, secret_token=secret)

    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret).register(app, path=settings.webhook_path)
    setup_application(app, dp, bot=bot)
    return app


def run_webhook(settings: BotSettings, service: SegmentationService) -> None:
    from aiohttp import web

    web.run_app(create_webhook_app(settings, service), host=settings.webhook_host, port=settings.webhook_port,
                access_log=None)
