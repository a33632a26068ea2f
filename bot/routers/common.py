"""/start, /help, /cancel."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import BotCommand, Message

from ..admission import Busy
from ..photos import PhotoRejected, check, download, photo_file, say

COMMANDS = [
    BotCommand(command="segmentation", description="segment a photo into class masks"),
    BotCommand(command="change_hair_color", description="recolour the hair in a photo"),
    BotCommand(command="change_background", description="put a portrait on a new background"),
    BotCommand(command="cancel", description="stop the current step"),
    BotCommand(command="help", description="what I can do"),
]


def help_text(model: str, classes: tuple[str, ...], notice: str | None) -> str:
    text = (f"I segment photos with {model} ({', '.join(classes)}), compiled by Apache TVM, and report how fast "
            "each engine was.\n\n"
            "/segmentation: send a photo, get one mask per class and a coloured overlay\n"
            "/change_hair_color: send a photo, then a colour (#RRGGBB, RRGGBB, #RGB or a name like gold)\n"
            "/change_background: send a portrait, then the new background\n"
            "/cancel: stop at any step. Photos sent as files work too.")
    return f"{text}\n\n⚠️ {notice}" if notice else text


async def start(message: Message, service) -> None:
    await message.answer(help_text(service.main.spec.name, service.classes, service.notice))


async def cancel(message: Message, state: FSMContext) -> None:
    current = await state.get_state()
    await state.clear()
    await message.answer("Cancelled." if current else "Nothing to cancel.")


async def unknown_command(message: Message) -> None:
    await message.answer("I don't know that command. /help lists what I can do.")


async def no_flow(message: Message) -> None:
    await message.answer("What should I do with it? Send /segmentation, /change_hair_color or /change_background "
                         "first.")


async def receive_checked(message: Message, service, what: str) -> str | None:
    """The file id of the message's image once downloaded and its header checked (admitted like a request,
    so a burst of large files is bounded too), or None after telling the user why not. Its bytes are kept
    for the request that will use it."""
    try:
        file_id = photo_file(message, service.settings.max_download_bytes, what)
        service.admission.enter(message.chat.id)
    except (PhotoRejected, Busy) as e:
        await say(message, str(e))
        return None
    try:
        data = await download(message.bot, file_id, max_bytes=service.settings.max_download_bytes,
                              timeout=service.settings.download_timeout_s, chat_id=message.chat.id, what=what)
        check(data, what)
    except PhotoRejected as e:
        await say(message, str(e))
        return None
    finally:
        service.admission.leave(message.chat.id)
    service.recent.put(file_id, data)
    return file_id


def end_flow(state: FSMContext, step: State, key: str, file_id: str):
    """After a delivered result: end the flow, unless the user has moved on meanwhile (another step or
    another stored image)."""
    async def end() -> None:
        if await state.get_state() == step.state and (await state.get_data()).get(key) == file_id:
            await state.clear()
    return end


def step_back(state: FSMContext, step: State, to: dict[str, State]):
    """When a stored image turns out unusable: wait for it again (`to[what]`), if the flow is still at `step`."""
    async def back(what: str) -> None:
        if what in to and await state.get_state() == step.state:
            await state.set_state(to[what])
    return back


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
