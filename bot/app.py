"""Wiring: Bot, Dispatcher, routers, command menu; long polling or webhook."""

from __future__ import annotations

import logging

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from .routers import background, common, hair, segmentation
from .service import SegmentationService
from .settings import BotSettings

log = logging.getLogger(__name__)


def create_bot(settings: BotSettings) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.api_server)) if settings.api_server else None
    return Bot(token=settings.token.get_secret_value(), session=session)


def create_dispatcher(service: SegmentationService) -> Dispatcher:
    dp = Dispatcher(service=service)
    dp.include_routers(common.create_router(), segmentation.create_router(), hair.create_router(),
                       background.create_router(), common.create_fallback_router())

    @dp.startup()
    async def set_commands(bot: Bot) -> None:
        await bot.set_my_commands(common.COMMANDS)

    return dp


async def run_polling(settings: BotSettings, service: SegmentationService) -> None:
    bot = create_bot(settings)
    dp = create_dispatcher(service)
    await bot.delete_webhook(drop_pending_updates=False)
    await dp.start_polling(bot, handle_signals=False)


WEBHOOK_PATH = "/webhook"


def create_webhook_app(settings: BotSettings, service: SegmentationService):
    """An aiohttp app receiving updates at WEBHOOK_PATH; registers settings.webhook_url on start."""
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
    from aiohttp import web

    bot = create_bot(settings)
    dp = create_dispatcher(service)

    @dp.startup()
    async def register(bot: Bot) -> None:
        await bot.set_webhook(settings.webhook_url)

    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot).register(app, path=WEBHOOK_PATH)
    setup_application(app, dp, bot=bot)
    return app


def run_webhook(settings: BotSettings, service: SegmentationService) -> None:
    from aiohttp import web

    web.run_app(create_webhook_app(settings, service), host=settings.webhook_host, port=settings.webhook_port)
