"""/segmentation: photo -> album of the original and one mask per class, plus a coloured overlay."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

from ..filters import NOT_A_COMMAND
from ..photos import accept_photo, download
from ..replies import run_task


class Segmentation(StatesGroup):
    photo = State()


async def ask_photo(message: Message, state: FSMContext) -> None:
    await state.set_state(Segmentation.photo)
    await message.answer("Send me a photo to segment.")


async def got_photo(message: Message, state: FSMContext, service) -> None:
    file_id = await accept_photo(message, service.settings.max_download_bytes)
    if file_id is None:
        return
    photo = await download(message.bot, file_id)
    if await run_task(message, lambda: service.run(service.segmentation, photo), album=True):
        await state.clear()


def create_router() -> Router:
    router = Router(name="segmentation")
    router.message(Command("segmentation"))(ask_photo)
    router.message(Segmentation.photo, NOT_A_COMMAND)(got_photo)
    return router
