"""Admission: one request in flight per chat plus a small queue, and a bound for all chats together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class Busy(Exception):
    """The request is refused (this chat's queue or the whole bot is full); the text is for the user."""


class Admission:
    """One request in flight per chat, `chat_queue` more waiting, `max_admitted` in all (read from the
    settings at each request)."""

    def __init__(self, limits: Callable[[], tuple[int, int]]) -> None:
        self.limits = limits
        self._counts: dict[int, int] = {}
        self._tails: dict[int, asyncio.Future] = {}

    @property
    def admitted(self) -> int:
        """Requests admitted and not yet left, all chats together."""
        return sum(self._counts.values())

    def enter(self, chat_id: int) -> None:
        chat_queue, total = self.limits()
        mine = self._counts.get(chat_id, 0)
        if mine > chat_queue:
            raise Busy(f"You already have {mine} photos in progress; I'll answer those first, "
                       "then send this one again.")
        if self.admitted >= total:
            raise Busy("I'm busy with other people's photos right now. Please send it again in a minute.")
        self._counts[chat_id] = mine + 1

    def leave(self, chat_id: int) -> None:
        left = self._counts.get(chat_id, 1) - 1
        if left > 0:
            self._counts[chat_id] = left
        else:
            self._counts.pop(chat_id, None)

    @contextlib.asynccontextmanager
    async def turn(self, chat_id: int):
        """Wait for this chat's earlier requests (in arrival order), then hold the chat's turn."""
        before = self._tails.get(chat_id)
        mine = asyncio.get_running_loop().create_future()
        self._tails[chat_id] = mine
        try:
            if before is not None and not before.done():
                await asyncio.shield(before)  # a waiter cancelled here must not cancel the request before it
            yield
        finally:
            def release(_=None) -> None:
                if not mine.done():
                    mine.set_result(None)
                if self._tails.get(chat_id) is mine:
                    del self._tails[chat_id]

            if before is not None and not before.done():  # cancelled while waiting: the next one still waits
                before.add_done_callback(release)
            else:
                release()
