"""Getting a photo out of a message into memory (never onto disk), with specific refusals."""

from __future__ import annotations

import io

from aiogram import Bot
from aiogram.types import Message


class PhotoRejected(Exception):
    """The message has no usable photo; the text says why, for the user."""


def photo_file(message: Message, max_bytes: int) -> str:
    if message.photo:
        item = message.photo[-1]  # the largest size Telegram made
    elif message.document:
        if not (message.document.mime_type or "").startswith("image/"):
            raise PhotoRejected("That file is not an image. Please send a photo (JPEG, PNG or WebP).")
        item = message.document
    elif message.sticker:
        raise PhotoRejected("Stickers can't be edited. Please send a photo.")
    else:
        raise PhotoRejected("Please send a photo (or an image file), or /cancel.")
    if item.file_size and item.file_size > max_bytes:
        raise PhotoRejected(f"That file is {item.file_size / 2**20:.1f} MB; bots can only download files up to "
                            f"{max_bytes / 2**20:.0f} MB. Please send a smaller photo.")
    return item.file_id


async def download(bot: Bot, file_id: str) -> bytes:
    buffer = io.BytesIO()
    await bot.download(file_id, destination=buffer)
    return buffer.getvalue()


async def accept_photo(message: Message, max_bytes: int) -> str | None:
    """The message's photo file id, or None after telling the user why it can't be used."""
    try:
        return photo_file(message, max_bytes)
    except PhotoRejected as e:
        await message.answer(str(e))
        return None
