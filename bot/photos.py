"""Getting a photo out of a message into memory (never onto disk) and checking it at once.

Every failure becomes one sentence for the user that names the image concerned; logs get the chat
id and the kind of failure, never a URL (file URLs contain the bot token).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import aiohttp
import numpy as np
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message

from runtime.errors import ImageError
from runtime.images import load_image, probe_image

log = logging.getLogger(__name__)


class PhotoRejected(Exception):
    """The message has no usable photo; the text says why, for the user; `what` names the image."""

    def __init__(self, text: str, what: str = "photo") -> None:
        super().__init__(text)
        self.what = what


class _TooBig(Exception):
    pass


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def photo_file(message: Message, max_bytes: int, what: str = "photo") -> str:
    if message.photo:
        item = message.photo[-1]  # the largest size Telegram made
    elif message.document:
        if not (message.document.mime_type or "").startswith("image/"):
            raise PhotoRejected(f"That file is not an image. Please send the {what} as a photo (JPEG, PNG or WebP).",
                                what)
        item = message.document
    elif message.sticker:
        raise PhotoRejected(f"Stickers can't be edited. Please send the {what} as a photo.", what)
    else:
        raise PhotoRejected(f"Please send the {what} as a photo (or an image file), or /cancel.", what)
    if item.file_size and item.file_size > max_bytes:
        raise PhotoRejected(f"Your {what} is {_mb(item.file_size)}; bots can only download files up to "
                            f"{max_bytes / 2**20:.0f} MB. Please send a smaller one.", what)
    return item.file_id


class _Capped:
    """A write-only buffer that refuses to grow past `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit, self.chunks, self.size = limit, [], 0

    def write(self, chunk: bytes) -> int:
        self.size += len(chunk)
        if self.size > self.limit:
            raise _TooBig()
        self.chunks.append(chunk)
        return len(chunk)

    def flush(self) -> None:
        pass

    def seek(self, *args) -> int:
        return 0


async def download(bot: Bot, file_id: str, *, max_bytes: int, timeout: int, chat_id: int, what: str) -> bytes:
    """The file's bytes, or PhotoRejected with a sentence for the user (and a token-free log line)."""
    try:
        file = await bot.get_file(file_id)
        if file.file_size and file.file_size > max_bytes:
            raise _TooBig()
        buffer = _Capped(max_bytes)
        await bot.download_file(file.file_path, destination=buffer, timeout=timeout)
        return b"".join(buffer.chunks)
    except _TooBig:
        raise PhotoRejected(f"Your {what} is larger than {max_bytes / 2**20:.0f} MB, the most a bot can download. "
                            "Please send a smaller one.", what) from None
    except TimeoutError:
        log.warning("chat %s: downloading the %s timed out after %s s", chat_id, what, timeout)
        raise PhotoRejected(f"Telegram took too long to give me your {what}; please send it again.", what) from None
    except aiohttp.ClientResponseError as e:  # its text holds the file URL, and so the token: log the status only
        log.warning("chat %s: downloading the %s failed with HTTP %s", chat_id, what, e.status)
        raise PhotoRejected(f"I couldn't download your {what} from Telegram; please send it again.", what) from None
    except aiohttp.ClientError as e:
        log.warning("chat %s: downloading the %s failed (%s)", chat_id, what, type(e).__name__)
        raise PhotoRejected(f"I couldn't download your {what} from Telegram; please send it again.", what) from None
    except TelegramAPIError as e:
        log.warning("chat %s: getFile for the %s failed (%s)", chat_id, what, type(e).__name__)
        raise PhotoRejected(f"I couldn't download your {what} from Telegram; please send it again.", what) from None


class RecentFiles:
    """Bytes of images checked on arrival, kept (at most `limit` bytes, oldest dropped first) so the
    request that uses them later does not download them again. Per process: another replica downloads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._files: OrderedDict[str, bytes] = OrderedDict()

    def put(self, file_id: str, data: bytes) -> None:
        self._files[file_id] = data
        self._files.move_to_end(file_id)
        while sum(len(d) for d in self._files.values()) > self.limit and len(self._files) > 1:
            self._files.popitem(last=False)

    def take(self, file_id: str) -> bytes | None:
        return self._files.pop(file_id, None)


async def fetch(bot: Bot, file_id: str, *, settings, recent: RecentFiles, chat_id: int, what: str) -> bytes:
    """The file's bytes: kept from its check on arrival, else downloaded."""
    data = recent.take(file_id)
    if data is None:
        data = await download(bot, file_id, max_bytes=settings.max_download_bytes,
                              timeout=settings.download_timeout_s, chat_id=chat_id, what=what)
    return data


def decode(data: bytes, what: str, max_side: int) -> np.ndarray:
    """Decode (bounded: see runtime.images) or PhotoRejected naming the image."""
    try:
        return load_image(data, max_side=max_side)
    except ImageError as e:
        raise PhotoRejected(f"Your {what} can't be used: {e}. Please send another {what}, or /cancel.",
                            what) from None


def check(data: bytes, what: str) -> None:
    """The header's checks only (format, size, a readable header), without decoding the pixels."""
    try:
        probe_image(data)
    except ImageError as e:
        raise PhotoRejected(f"Your {what} can't be used: {e}. Please send another {what}, or /cancel.",
                            what) from None


async def say(message: Message, text: str) -> bool:
    """Answer with one sentence; a failing send is logged (no token in it), never raised."""
    try:
        await message.answer(text)
        return True
    except (TelegramAPIError, aiohttp.ClientError, TimeoutError) as e:
        log.warning("chat %s: could not send a message (%s)", message.chat.id, type(e).__name__)
        return False
