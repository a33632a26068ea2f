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
from ..photos import receive_image
from ..replies import submit
from .common import fetch_stored_image, restore_state


class HairColor(StatesGroup):
    photo = State()
    color = State()


async def ask_photo(message: Message, state: FSMContext) -> None:
    await state.set_state(HairColor.photo)
    await message.answer("Send me a photo whose hair I should recolour.")


async def got_photo(message: Message, state: FSMContext, service) -> None:
    """A photo, checked now; also while a colour is awaited (the new photo replaces the old one)."""
    received = await receive_image(message, service.settings, "photo")
    if received is None:
        return
    await state.update_data(photo=received[0])  # the file id only: state may live in Redis
    await state.set_state(HairColor.color)
    await message.answer(f"Which colour? {ACCEPTED}.")


async def got_color(message: Message, state: FSMContext, service) -> None:
    try:
        color = parse_color(message.text)
    except ColorError as e:
        await message.answer(f"{e}. Send another colour, or /cancel.")
        return
    rgb = await fetch_stored_image(message, state, service, "photo", "photo", back_to=HairColor.photo)
    if rgb is None:
        return
    await state.clear()
    text = message.text
    await submit(message, service, lambda: service.recolor_hair(rgb, color, text),
                 on_failure=restore_state(state, HairColor.photo))


def create_router() -> Router:
    router = Router(name="hair")
    router.message(Command("change_hair_color", "change-hair-color"))(ask_photo)
    router.message(HairColor.photo, NOT_A_COMMAND)(got_photo)
    router.message(HairColor.color, F.text, NOT_A_COMMAND)(got_color)
    router.message(HairColor.color, F.photo | F.document)(got_photo)
    router.message(HairColor.color, NOT_A_COMMAND)(not_a_color)
    return router


async def not_a_color(message: Message) -> None:
    await message.answer(f"Please send the colour as text: {ACCEPTED}.")
