"""Requests from accepted input to the last edited caption: admission, the reply, the late timings.

A handler validates its input, then calls `submit`, which admits the request (or says why not) and
returns at once; the request is processed in a task, in the chat's turn, and every failure ends in
one sentence for the user and a log line without the token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BufferedInputFile, InputMediaPhoto, Message

from .admission import Busy
from .photos import PhotoRejected, decode, fetch, say
from .service import SegmentationService, Unavailable
from .timings import Result

log = logging.getLogger(__name__)
ALBUM_MAX = 10
CAPTION_MAX = 1024
FAILED = "Sorry, something went wrong with that photo; please try another one."
TIMEOUT = "Sorry, that took too long; please send the photo again in a minute."
SEND_FAILED = "Sorry, Telegram refused the result I made for you; please try again."
SEND_ERRORS = (TelegramAPIError, aiohttp.ClientError, TimeoutError)


def _extension(data: bytes) -> str:
    return "png" if data.startswith(b"\x89PNG") else "jpg"


def _caption(result: Result) -> str:
    return f"{result.images[-1][1]}\n{result.report.text()}"[:CAPTION_MAX]


def _albums(items: list) -> list[list]:
    """Items in as few albums as Telegram allows (10 at most each), of even sizes: an album needs 2 items,
    so 11 masks go as 6 + 5, not 10 + 1."""
    count = -(-len(items) // ALBUM_MAX)
    size, larger = divmod(len(items), max(count, 1))
    bounds = [0]
    for i in range(count):
        bounds.append(bounds[-1] + size + (i < larger))
    return [items[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


async def send_result(message: Message, result: Result, *, album: bool = False) -> Message:
    """Send the images; the last one carries the timing report. Returns that last message."""
    files = [(BufferedInputFile(data, f"{i}.{_extension(data)}"), caption) for i, (data, caption) in
             enumerate(result.images)]
    *grid, (last, _) = files
    if album:
        for chunk in _albums(grid):
            await message.answer_media_group([InputMediaPhoto(media=f, caption=c) for f, c in chunk])
    return await message.answer_photo(last, caption=_caption(result))


async def submit(message: Message, service: SegmentationService, inputs: dict[str, str],
                 task: Callable[..., Result], *, album: bool = False,
                 on_success: Callable[[], Awaitable[None]] | None = None,
                 on_rejected: Callable[[str], Awaitable[None]] | None = None) -> bool:
    """Admit the request (or tell the user why not) before anything is downloaded, and process it in a task:
    fetch each input image (`what` -> file id), decode them on the reply lane, call `task(**images)` there.
    True when admitted. `on_success` runs once the result is delivered (a flow ends there, never earlier,
    so a refusal or failure loses nothing); `on_rejected(what)` when an input image cannot be used."""
    chat = message.chat.id
    try:
        service.admission.enter(chat)
    except Busy as e:
        await say(message, str(e))
        return False
    process = _process(message, service, inputs, task, album, on_success, on_rejected)
    request = asyncio.create_task(process)
    service.tasks.add(request)
    request.add_done_callback(service.tasks.discard)
    return True


async def _process(message, service: SegmentationService, inputs, task, album, on_success, on_rejected) -> None:
    chat = message.chat.id
    result = sent = None
    try:
        async with service.admission.turn(chat):
            try:
                await message.bot.send_chat_action(chat, "upload_photo")
            except SEND_ERRORS as e:
                log.info("chat %s: chat action not sent (%s)", chat, type(e).__name__)
            failure = None
            try:
                data = {what: await fetch(message.bot, file_id, settings=service.settings, recent=service.recent,
                                          chat_id=chat, what=what) for what, file_id in inputs.items()}
                max_side = service.settings.max_side

                def work() -> Result:
                    return task(**{what: decode(d, what, max_side) for what, d in data.items()})

                result = await service.lanes.on_reply_lane(work)
            except PhotoRejected as e:
                await say(message, str(e))
                if on_rejected:
                    await on_rejected(e.what)
                return
            except TimeoutError:
                log.warning("chat %s: request timed out after %s s", chat, service.settings.request_timeout_s)
                failure = TIMEOUT
            except Unavailable as e:
                failure = str(e)
            except Exception:
                log.exception("chat %s: request failed", chat)
                failure = FAILED
            if result is not None:
                service.lanes.plan_background(result.report)
                try:
                    sent = await send_result(message, result, album=album)
                except SEND_ERRORS as e:
                    log.warning("chat %s: sending the result failed (%s: %s)", chat, type(e).__name__,
                                getattr(e, "message", ""))
                    failure = SEND_FAILED
            if failure:
                await say(message, failure)
            elif on_success:
                await on_success()
    finally:
        service.admission.leave(chat)
    if sent is not None:  # the request is answered; its late timings are background work, dropped at shutdown
        late = asyncio.create_task(_late_timings(message, service, result, sent))
        service.late_timings.add(late)
        late.add_done_callback(service.late_timings.discard)
    elif result is not None:
        service.lanes.drop_background(result.report)


async def _late_timings(message: Message, service: SegmentationService, result: Result, sent: Message) -> None:
    """Time the slower engines (and the answering one again) on the same photo in the background, then edit the
    reply's caption."""
    try:
        if not await service.lanes.time_others(result):
            return
        await message.bot.edit_message_caption(chat_id=sent.chat.id, message_id=sent.message_id,
                                               caption=_caption(result))
    except SEND_ERRORS as e:
        log.warning("chat %s: editing the timings failed (%s)", message.chat.id, type(e).__name__)
    except RuntimeError:  # the timing lane was shut down (the bot is stopping)
        log.info("chat %s: background timings dropped at shutdown", message.chat.id)
    except asyncio.CancelledError:
        log.info("chat %s: background timings dropped at shutdown", message.chat.id)
        raise
