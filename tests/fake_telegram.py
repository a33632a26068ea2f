"""A local stand-in for the Telegram Bot API: the methods the bot uses, over real HTTP (aiohttp).

Tests play the users: they queue updates (messages with text, photos, documents, stickers) and
read back what the bot sent, files included.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from dataclasses import dataclass, field

from aiohttp import web
from PIL import Image

JSON_FIELDS = {"media", "commands", "allowed_updates", "reply_markup", "scope"}


@dataclass
class Sent:
    method: str
    params: dict
    files: dict[str, bytes] = field(default_factory=dict)
    result_id: int | None = None  # the message_id the fake gave the sent message

    def images(self) -> list[Image.Image]:
        return [Image.open(io.BytesIO(data)) for data in self.files.values()]


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self.updates: list[dict] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self.sent: dict[int, list[Sent]] = {}
        self.commands: list[dict] = []
        self._read: dict[tuple, int] = {}
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        # Failures to inject: method name (or "file" for downloads) -> list of (HTTP status, description,
        # delay in seconds), each used once, in order.
        self.failures: dict[str, list[tuple[int, str, float]]] = {}
        self.downloads: dict[str, int] = {}  # file_id -> times its file was downloaded
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self.url = ""
        self._runner: web.AppRunner | None = None

    # -- server -----------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/bot{token}/{method}", self._method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def fail(self, method: str, status: int = 500, description: str = "Internal Server Error", *,
             delay: float = 0.0, times: int = 1) -> None:
        """Make the next `times` calls of `method` ("file": file downloads) fail, after `delay` seconds."""
        self.failures.setdefault(method, []).extend([(status, description, delay)] * times)

    async def _injected(self, method: str) -> web.Response | None:
        queue = self.failures.get(method)
        if not queue:
            return None
        status, description, delay = queue.pop(0)
        await asyncio.sleep(delay)
        if status == 200:
            return None  # only delayed
        return web.json_response({"ok": False, "error_code": status, "description": description}, status=status)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _params(self, request: web.Request) -> tuple[dict, dict[str, bytes]]:
        params, files = dict(request.query), {}
        if request.method == "POST":
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        files[key] = value.file.read()
                    else:
                        params[key] = json.loads(value) if key in JSON_FIELDS else value
        return params, files

    async def _method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params, files = await self._params(request)
        if (failed := await self._injected(method)) is not None:
            return failed
        handler = getattr(self, f"api_{method}", None)
        if handler is None:
            return web.json_response({"ok": False, "error_code": 404, "description": f"no method {method}"},
                                     status=404)
        result = await handler(params, files)
        return web.json_response({"ok": True, "result": result})

    async def _file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        if (failed := await self._injected("file")) is not None:
            return failed
        for file_id, (data, file_path) in self.files.items():
            if file_path == path:
                self.downloads[file_id] = self.downloads.get(file_id, 0) + 1
                return web.Response(body=data)
        return web.Response(status=404)

    # -- Bot API methods ----------------------------------------------------------------------
    async def api_getMe(self, params, files):
        return {"id": 4242, "is_bot": True, "first_name": "Selfie", "username": "selfie_tvm_bot"}

    async def api_deleteWebhook(self, params, files):
        self.webhook_url = None
        return True

    async def api_setWebhook(self, params, files):
        self.webhook_url = params["url"]
        self.webhook_secret = params.get("secret_token")
        return True

    async def api_setMyCommands(self, params, files):
        self.commands = params["commands"]
        return True

    async def api_getUpdates(self, params, files):
        offset = int(params.get("offset", 0) or 0)
        timeout = float(params.get("timeout", 0) or 0)
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                pending = [u for u in self.updates if u["update_id"] >= offset]
                remaining = deadline - time.monotonic()
                if pending or remaining <= 0:
                    return pending
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    return []

    async def api_getFile(self, params, files):
        data, path = self.files[params["file_id"]]
        return {"file_id": params["file_id"], "file_unique_id": params["file_id"], "file_size": len(data),
                "file_path": path}

    async def api_sendChatAction(self, params, files):
        await self._record(params, Sent("sendChatAction", params))
        return True

    async def api_sendMessage(self, params, files):
        message = self._message(params, text=params.get("text"))
        await self._record(params, Sent("sendMessage", params, result_id=message["message_id"]))
        return message

    async def api_sendPhoto(self, params, files):
        message = self._message(params, photo=[self._photo_size(files.get("photo", b""))],
                                caption=params.get("caption"))
        await self._record(params, Sent("sendPhoto", params, files, result_id=message["message_id"]))
        return message

    async def api_editMessageCaption(self, params, files):
        await self._record(params, Sent("editMessageCaption", params))
        return self._message(params, caption=params.get("caption"))

    async def api_sendMediaGroup(self, params, files):
        ordered = {}
        for item in params["media"]:
            name = item["media"].removeprefix("attach://")
            ordered[name] = files[name]
        await self._record(params, Sent("sendMediaGroup", params, ordered))
        return [self._message(params, photo=[self._photo_size(b"")], caption=item.get("caption"))
                for item in params["media"]]

    # -- helpers ------------------------------------------------------------------------------
    async def _record(self, params, sent: Sent) -> None:
        async with self._changed:
            self.sent.setdefault(int(params["chat_id"]), []).append(sent)
            self._changed.notify_all()

    def _message(self, params, **content) -> dict:
        chat_id = int(params["chat_id"])
        return {"message_id": next(self._ids), "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"}, **{k: v for k, v in content.items() if v is not None}}

    def _photo_size(self, data: bytes) -> dict:
        file_id = f"sent{next(self._ids)}"
        return {"file_id": file_id, "file_unique_id": file_id, "width": 1, "height": 1, "file_size": len(data)}

    def add_file(self, data: bytes, name: str = "photo.jpg") -> str:
        file_id = f"file{next(self._ids)}"
        self.files[file_id] = (data, f"photos/{file_id}_{name}")
        return file_id

    def update(self, chat_id: int, message: dict) -> dict:
        """An update carrying a user's message (to push, or to feed a dispatcher directly)."""
        return {"update_id": next(self._ids), "message": {
            "message_id": next(self._ids), "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": chat_id, "is_bot": False, "first_name": f"user{chat_id}"}, **message}}

    def text_message(self, text: str) -> dict:
        entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}] if text.startswith("/") \
            else []
        return {"text": text, "entities": entities}

    def photo_message(self, data: bytes, *, size: int | None = None) -> dict:
        file_id = self.add_file(data)
        return {"photo": [{"file_id": file_id, "file_unique_id": file_id, "width": 512, "height": 512,
                           "file_size": size or len(data)}]}

    async def _push(self, chat_id: int, message: dict) -> None:
        update = self.update(chat_id, message)
        if self.webhook_url:  # webhook mode: deliver by POSTing to the bot, as Telegram does
            import aiohttp

            headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook_secret} if self.webhook_secret else {}
            async with aiohttp.ClientSession() as session, \
                    session.post(self.webhook_url, json=update, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            return
        async with self._changed:
            self.updates.append(update)
            self._changed.notify_all()

    async def send_text(self, chat_id: int, text: str) -> None:
        await self._push(chat_id, self.text_message(text))

    async def send_photo(self, chat_id: int, data: bytes, *, size: int | None = None) -> None:
        await self._push(chat_id, self.photo_message(data, size=size))

    async def send_document(self, chat_id: int, data: bytes, mime: str, name: str = "photo.png") -> None:
        file_id = self.add_file(data, name)
        await self._push(chat_id, {"document": {"file_id": file_id, "file_unique_id": file_id, "file_name": name,
                                                "mime_type": mime, "file_size": len(data)}})

    async def send_sticker(self, chat_id: int) -> None:
        await self._push(chat_id, {"sticker": {"file_id": "stk", "file_unique_id": "stk", "type": "regular",
                                               "width": 512, "height": 512, "is_animated": False,
                                               "is_video": False}})

    async def replies(self, chat_id: int, count: int, timeout: float = 120.0) -> list[Sent]:
        """Wait for `count` new messages (chat actions and caption edits excluded) and return them."""
        return await self._wait(chat_id, count, timeout, lambda s: s.method not in ("sendChatAction",
                                                                                       "editMessageCaption"))

    async def edits(self, chat_id: int, count: int = 1, timeout: float = 120.0) -> list[Sent]:
        """Wait for `count` new caption edits (the late timings) and return them."""
        return await self._wait(chat_id, count, timeout, lambda s: s.method == "editMessageCaption")

    async def _wait(self, chat_id: int, count: int, timeout: float, kind) -> list[Sent]:
        key = (chat_id, kind.__code__)
        read = self._read.get(key, 0)

        def fresh() -> list[Sent]:
            return [s for s in self.sent.get(chat_id, []) if kind(s)][read:]

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(fresh()) >= count), timeout)
            got = fresh()[:count]
        self._read[key] = read + count
        return got
