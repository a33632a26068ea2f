"""/start, /help, /cancel."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import BotCommand, Message

from ..photos import PhotoRejected, fetch_image, say

COMMANDS = [
    BotCommand(command="segmentation", description="segment a photo into class masks"),
    BotCommand(command="change_hair_color", description="recolour the hair in a photo"),
    BotCommand(command="change_background", description="put a portrait on a new background"),
    BotCommand(command="cancel", description="stop the current step"),
    BotCommand(command="help", description="what I can do"),
]


def help_text(notice: str | None) -> str:
    text = ("I segment selfies with MediaPipe's model compiled by Apache TVM and report how fast each engine was.\n\n"
            "/segmentation: send a photo, get one mask per class and a coloured overlay\n"
            "/change_hair_color: send a photo, then a colour (#RRGGBB, RRGGBB, #RGB or a name like gold)\n"
            "/change_background: send a portrait, then the new background\n"
            "/cancel: stop at any step. Photos sent as files work too.")
    return f"{text}\n\n⚠️ {notice}" if notice else text


async def start(message: Message, service) -> None:
    await message.answer(help_text(service.notice))


async def cancel(message: Message, state: FSMContext) -> None:
    current = await state.get_state()
    await state.clear()
    await message.answer("Cancelled." if current else "Nothing to cancel.")


async def unknown_command(message: Message) -> None:
    await message.answer("I don't know that command. /help lists what I can do.")


async def no_flow(message: Message) -> None:
    await message.answer("What should I do with it? Send /segmentation, /change_hair_color or /change_background "
                         "first.")


def restore_state(state: FSMContext, step: State):
    """After a failed request: wait at `step` again, unless the user has started something else meanwhile."""
    async def restore() -> None:
        if await state.get_state() is None:
            await state.set_state(step)
    return restore


async def fetch_stored_image(message: Message, state: FSMContext, service, key: str, what: str,
                             back_to: State):
    """The image stored under `key` earlier in the flow, or None after telling the user it can no
    longer be used and stepping the flow back to `back_to` to ask for it again."""
    try:
        return await fetch_image(message.bot, (await state.get_data())[key], settings=service.settings,
                                 chat_id=message.chat.id, what=what)
    except PhotoRejected as e:
        await state.set_state(back_to)
        await say(message, str(e))
        return None


def create_router() -> Router:
    """/start, /help, /cancel: checked before the features, so they work in any state."""
    router = Router(name="common")
    router.message(CommandStart())(start)
    router.message(Command("help"))(start)
    router.message(Command("cancel"))(cancel)
    return router


def create_fallback_router() -> Router:
    """Checked last: a command nobody handled."""
    router = Router(name="fallback")
    router.message(F.text.startswith("/"))(unknown_command)
    router.message(F.photo | F.document | F.sticker)(no_flow)
    return router
