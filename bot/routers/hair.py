"""/change_hair_color: photo, then a colour -> the recoloured photo."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

from runtime.colors import ACCEPTED, parse_color
from runtime.errors import ColorError

from ..filters import NOT_A_COMMAND
from ..photos import accept_photo, download
from ..replies import run_task


class HairColor(StatesGroup):
    photo = State()
    color = State()


async def ask_photo(message: Message, state: FSMContext) -> None:
    await state.set_state(HairColor.photo)
    await message.answer("Send me a photo whose hair I should recolour.")


async def got_photo(message: Message, state: FSMContext, service) -> None:
    file_id = await accept_photo(message, service.settings.max_download_bytes)
    if file_id is None:
        return
    await state.update_data(photo=file_id)
    await state.set_state(HairColor.color)
    await message.answer(f"Which colour? {ACCEPTED}.")


async def got_color(message: Message, state: FSMContext, service) -> None:
    try:
        parse_color(message.text)
    except ColorError as e:
        await message.answer(f"{e}. Send another colour, or /cancel.")
        return
    photo = await download(message.bot, (await state.get_data())["photo"])
    if await run_task(message, lambda: service.run(service.hair_color, photo, message.text)):
        await state.clear()


async def not_a_color(message: Message) -> None:
    await message.answer(f"Please send the colour as text: {ACCEPTED}.")


def create_router() -> Router:
    router = Router(name="hair")
    router.message(Command("change_hair_color", "change-hair-color"))(ask_photo)
    router.message(HairColor.photo, NOT_A_COMMAND)(got_photo)
    router.message(HairColor.color, F.text, NOT_A_COMMAND)(got_color)
    router.message(HairColor.color, NOT_A_COMMAND)(not_a_color)
    return router
