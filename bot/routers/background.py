"""/change_background: portrait, then the new background -> the composite."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

from ..filters import NOT_A_COMMAND
from ..photos import receive_image
from ..replies import submit
from .common import fetch_stored_image, restore_state


class Background(StatesGroup):
    portrait = State()
    background = State()


async def ask_portrait(message: Message, state: FSMContext) -> None:
    await state.set_state(Background.portrait)
    await message.answer("Send me the portrait.")


async def got_portrait(message: Message, state: FSMContext, service) -> None:
    received = await receive_image(message, service.settings, "portrait")
    if received is None:
        return  # told which image is bad; still waiting for the portrait
    await state.update_data(portrait=received[0])
    await state.set_state(Background.background)
    await message.answer("Now send the new background.")


async def got_background(message: Message, state: FSMContext, service) -> None:
    received = await receive_image(message, service.settings, "background")
    if received is None:
        return  # the portrait is kept; still waiting for a usable background
    background = received[1]
    portrait = await fetch_stored_image(message, state, service, "portrait", "portrait", back_to=Background.portrait)
    if portrait is None:
        return
    await state.clear()
    await submit(message, service, lambda: service.replace_background(portrait, background),
                 on_failure=restore_state(state, Background.portrait))


def create_router() -> Router:
    router = Router(name="background")
    router.message(Command("change_background", "change-background"))(ask_portrait)
    router.message(Background.portrait, NOT_A_COMMAND)(got_portrait)
    router.message(Background.background, NOT_A_COMMAND)(got_background)
    return router
