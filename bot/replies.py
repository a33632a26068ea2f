"""Sending results, and turning failures into polite, specific replies."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiogram.types import BufferedInputFile, InputMediaPhoto, Message
from aiogram.utils.chat_action import ChatActionSender

from runtime.errors import SelfieTvmError

from .service import Busy, Result

log = logging.getLogger(__name__)
ALBUM_MAX = 10
BUSY = "I'm busy with other photos right now. Please send it again in a minute."
FAILED = "Sorry, something went wrong with that photo. Please try another one."


def _extension(data: bytes) -> str:
    return "png" if data.startswith(b"\x89PNG") else "jpg"


async def send_result(message: Message, result: Result, *, album: bool = False) -> None:
    files = [(BufferedInputFile(data, f"{i}.{_extension(data)}"), caption) for i, (data, caption) in
             enumerate(result.images)]
    if album:
        *grid, (last, last_caption) = files
        for start in range(0, len(grid), ALBUM_MAX):
            chunk = grid[start : start + ALBUM_MAX]
            await message.answer_media_group([InputMediaPhoto(media=f, caption=c) for f, c in chunk])
        await message.answer_photo(last, caption=f"{last_caption}\n{result.timings}")
    else:
        ((photo, caption),) = files
        await message.answer_photo(photo, caption=f"{caption}\n{result.timings}")


async def run_task(message: Message, task: Callable[[], Awaitable[Result]], *, album: bool = False) -> bool:
    """Run a service task; reply with the result or a specific message. True when it succeeded."""
    try:
        async with ChatActionSender.upload_photo(bot=message.bot, chat_id=message.chat.id):
            result = await task()
    except Busy:
        await message.answer(BUSY)
        return False
    except SelfieTvmError as e:
        await message.answer(f"{e}")
        return False
    except Exception:
        log.exception("request from chat %s failed", message.chat.id)
        await message.answer(FAILED)
        return False
    await send_result(message, result, album=album)
    return True
