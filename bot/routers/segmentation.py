"""/segmentation: photo -> album of the original and one mask per class, plus a coloured overlay."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

from ..filters import NOT_A_COMMAND
from ..photos import PhotoRejected, photo_file, say
from ..replies import submit


class Segmentation(StatesGroup):
    photo = State()


async def ask_photo(message: Message, state: FSMContext) -> None:
    await state.set_state(Segmentation.photo)
    await message.answer("Send me a photo to segment (or several; /cancel when done).")


async def got_photo(message: Message, state: FSMContext, service) -> None:
    try:
        photo = photo_file(message, service.settings.max_download_bytes, "photo")
    except PhotoRejected as e:
        await say(message, str(e))
        return  # told why; still waiting for a photo
    # The step stays: more photos may follow (one at a time per chat, a few queued); /cancel ends it.
    await submit(message, service, {"photo": photo}, lambda photo: service.segment(photo), album=True)


def create_router() -> Router:
    router = Router(name="segmentation")
    router.message(Command("segmentation"))(ask_photo)
    router.message(Segmentation.photo, NOT_A_COMMAND)(got_photo)
    return router
