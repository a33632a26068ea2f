"""The real bot (`python -m bot`, its own process) under hostile load from the fake Bot API: memory stays
bounded, nobody is left without an answer."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .fake_telegram import FakeTelegram

TOKEN = "123456789:AAHloadTestTokenOnly_abcdefghijklmnop"
ROOT = Path(__file__).resolve().parents[1]
# Peak resident memory of the bot through the whole load below (measured: see README, "Bounded memory").
PEAK_RSS_LIMIT_MB = 1400  # measured here: 565 MB after start, 1167 MB peak (lazy masks, banded blends)


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def hostile_images(astronaut) -> dict[str, bytes]:
    big = Image.fromarray(astronaut).resize((4096, 4096), Image.Resampling.BICUBIC)
    jpeg = io.BytesIO()
    big.save(jpeg, format="JPEG", quality=95)
    gradient = (np.arange(10_000, dtype=np.uint32)[None, :] * 6).astype(np.uint16)
    return {"photo": jpeg.getvalue(),
            "100 Mpx RGB PNG": _png(np.zeros((10_000, 10_000, 3), np.uint8)),
            "16-bit PNG": _png(np.repeat(gradient, 10_000, axis=0))}


def test_twenty_chats_of_4096px_photos_plus_a_100_mpx_and_a_16_bit_png(hostile_images, tmp_path):
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "PYTHONPATH": str(ROOT),
           "SELFIE_BOT_MODEL": "selfie_multiclass_twin", "SELFIE_BOT_ENGINES": '["litert"]'}

    async def main() -> tuple[float, float]:
        tg = FakeTelegram(TOKEN)
        url = await tg.start()
        log = (tmp_path / "bot.log").open("w")
        bot = subprocess.Popen([sys.executable, "-m", "bot"], cwd=tmp_path, env={**env, "SELFIE_BOT_API_SERVER": url},
                               stdout=log, stderr=subprocess.STDOUT)
        try:
            await tg.send_text(1, "/start")
            assert await tg.replies(1, 1, timeout=300), "the bot did not start"
            idle_mb = _status_mb(bot.pid, "VmRSS")
            chats = {100 + i: ("photo", hostile_images["photo"]) for i in range(20)}
            chats[200] = ("100 Mpx RGB PNG", hostile_images["100 Mpx RGB PNG"])
            chats[201] = ("16-bit PNG", hostile_images["16-bit PNG"])
            for chat in chats:
                await tg.send_text(chat, "/segmentation")
            for chat in chats:
                await tg.replies(chat, 1)
            for chat, (name, data) in chats.items():
                await tg.send_document(chat, data, "image/png" if "PNG" in name else "image/jpeg", f"{name}.img")
            answers = await asyncio.gather(*(tg.replies(chat, 1, timeout=300) for chat in chats))
            for chat, sent in zip(chats, answers, strict=True):
                assert sent, f"chat {chat} ({chats[chat][0]}) got no answer"
                assert sent[0].method == "sendMediaGroup" or "Sorry" in sent[0].params.get("text", ""), sent[0]
            assert bot.poll() is None, "the bot died: " + (tmp_path / "bot.log").read_text()[-2000:]
            return idle_mb, _status_mb(bot.pid, "VmHWM")
        finally:
            bot.terminate()
            try:
                bot.wait(30)
            except subprocess.TimeoutExpired:
                bot.kill()
                bot.wait(30)
            log.close()
            await tg.stop()

    idle_mb, peak_mb = asyncio.run(main())
    print(f"bot RSS: {idle_mb:.0f} MB after start, peak {peak_mb:.0f} MB under load")
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB (after start {idle_mb:.0f} MB)"
