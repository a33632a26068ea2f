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
from ..replies import submit
from .common import end_flow, receive_checked, step_back


class HairColor(StatesGroup):
    photo = State()
    color = State()


async def ask_photo(message: Message, state: FSMContext, service) -> None:
    if reason := service.hair_unavailable():
        await state.clear()  # a flow started before must not take the next photo
        await message.answer(reason)
        return
    await state.set_state(HairColor.photo)
    await message.answer("Send me a photo whose hair I should recolour.")


async def got_photo(message: Message, state: FSMContext, service) -> None:
    """A photo, checked now; also while a colour is awaited (the new photo replaces the old one)."""
    file_id = await receive_checked(message, service, "photo")
    if file_id is None:
        return
    await state.update_data(photo=file_id)  # the file id only: state may live in Redis
    await state.set_state(HairColor.color)
    await message.answer(f"Which colour? {ACCEPTED}.")


async def got_color(message: Message, state: FSMContext, service) -> None:
    try:
        color = parse_color(message.text)
    except ColorError as e:
        await message.answer(f"{e}. Send another colour, or /cancel.")
        return
    photo = (await state.get_data())["photo"]
    text = message.text
    # The flow stays at this step until the result is delivered: refused or failed, the colour can be resent.
    await submit(message, service, {"photo": photo}, lambda photo: service.recolor_hair(photo, color, text),
                 on_success=end_flow(state, HairColor.color, "photo", photo),
                 on_rejected=step_back(state, HairColor.color, {"photo": HairColor.photo}))


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
