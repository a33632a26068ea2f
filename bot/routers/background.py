"""/change_background: portrait, then the new background -> the composite."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

from ..filters import NOT_A_COMMAND
from ..photos import accept_photo, download
from ..replies import run_task


class Background(StatesGroup):
    portrait = State()
    background = State()


async def ask_portrait(message: Message, state: FSMContext) -> None:
    await state.set_state(Background.portrait)
    await message.answer("Send me the portrait.")


async def got_portrait(message: Message, state: FSMContext, service) -> None:
    file_id = await accept_photo(message, service.settings.max_download_bytes)
    if file_id is None:
        return
    await state.update_data(portrait=file_id)
    await state.set_state(Background.background)
    await message.answer("Now send the new background.")


async def got_background(message: Message, state: FSMContext, service) -> None:
    file_id = await accept_photo(message, service.settings.max_download_bytes)
    if file_id is None:
        return
    portrait = await download(message.bot, (await state.get_data())["portrait"])
    background = await download(message.bot, file_id)
    if await run_task(message, lambda: service.run(service.background, portrait, background)):
        await state.clear()


def create_router() -> Router:
    router = Router(name="background")
    router.message(Command("change_background", "change-background"))(ask_portrait)
    router.message(Background.portrait, NOT_A_COMMAND)(got_portrait)
    router.message(Background.background, NOT_A_COMMAND)(got_background)
    return router
