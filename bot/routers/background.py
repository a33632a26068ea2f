"""/change_background: portrait, then the new background -> the composite."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

from ..filters import NOT_A_COMMAND
from ..photos import PhotoRejected, photo_file, say
from ..replies import submit
from .common import end_flow, receive_checked, step_back


class Background(StatesGroup):
    portrait = State()
    background = State()


async def ask_portrait(message: Message, state: FSMContext, service) -> None:
    if reason := service.background_unavailable():  # said now, before the user sends two photos
        await state.clear()  # a flow started before must not take the next photo
        await message.answer(reason)
        return
    await state.set_state(Background.portrait)
    await message.answer("Send me the portrait.")


async def got_portrait(message: Message, state: FSMContext, service) -> None:
    file_id = await receive_checked(message, service, "portrait")
    if file_id is None:
        return  # told which image is bad; still waiting for the portrait
    await state.update_data(portrait=file_id)
    await state.set_state(Background.background)
    await message.answer("Now send the new background.")


async def got_background(message: Message, state: FSMContext, service) -> None:
    try:
        background = photo_file(message, service.settings.max_download_bytes, "background")
    except PhotoRejected as e:
        await say(message, str(e))
        return  # the portrait is kept; still waiting for a usable background
    portrait = (await state.get_data())["portrait"]
    # The flow stays at this step until the result is delivered: refused or failed, nothing is lost.
    await submit(message, service, {"portrait": portrait, "background": background},
                 lambda portrait, background: service.replace_background(portrait, background),
                 on_success=end_flow(state, Background.background, "portrait", portrait),
                 on_rejected=step_back(state, Background.background, {"portrait": Background.portrait}))


def create_router() -> Router:
    router = Router(name="background")
    router.message(Command("change_background", "change-background"))(ask_portrait)
    router.message(Background.portrait, NOT_A_COMMAND)(got_portrait)
    router.message(Background.background, NOT_A_COMMAND)(got_background)
    return router
