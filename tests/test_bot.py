"""The real aiogram bot, long-polling a local fake Bot API server over HTTP, driven like users would."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.app import create_bot, create_dispatcher
from bot.service import SegmentationService
from bot.settings import BotSettings
from runtime.acquire import resolve_model
from runtime.target import host_target
from tuning.build import export

from .conftest import need_model
from .fake_telegram import FakeTelegram

TOKEN = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"
ROOT = Path(__file__).resolve().parents[1]


def jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def selfie_service():
    """Real selfie_segmenter with LiteRT and a TVM default library; no tuned library (reported as such)."""
    need_model("selfie_segmenter")
    need_model("hair_segmentation")
    export(resolve_model("selfie_segmenter"), host_target(), "default")
    settings = BotSettings(token=TOKEN, model="selfie_segmenter", engines=["tvm-tuned", "tvm-default", "litert"],
                           threads=2, max_pending=64)
    return SegmentationService(settings, results_root=ROOT / "results")


@pytest.fixture(scope="module")
def twin_service():
    settings = BotSettings(token=TOKEN, model="selfie_multiclass_twin", engines=["litert"], threads=2)
    return SegmentationService(settings, results_root=ROOT / "results")


def converse(service: SegmentationService, scenario) -> None:
    async def main():
        telegram = FakeTelegram(TOKEN)
        url = await telegram.start()
        service.settings = service.settings.model_copy(update={"api_server": url})
        bot = create_bot(service.settings)
        dp = create_dispatcher(service)
        polling = asyncio.create_task(dp.start_polling(bot, polling_timeout=1, handle_signals=False))
        try:
            await scenario(telegram)
        finally:
            await dp.stop_polling()
            await polling
            await bot.session.close()
            await telegram.stop()

    asyncio.run(main())


def test_start_help_and_command_menu(twin_service):
    async def scenario(tg: FakeTelegram):
        await tg.send_text(1, "/start")
        (reply,) = await tg.replies(1, 1)
        assert "/segmentation" in reply.params["text"] and "meaningless" in reply.params["text"]
        assert {c["command"] for c in tg.commands} >= {"segmentation", "change_hair_color", "change_background"}
        await tg.send_text(1, "/frobnicate")
        (reply,) = await tg.replies(1, 1)
        assert "/help" in reply.params["text"]

    converse(twin_service, scenario)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_segmentation_album_with_timings_and_missing_engine(selfie_service, astronaut):
    logs = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(logs)
    root.setLevel(logging.DEBUG)

    async def scenario(tg: FakeTelegram):
        await tg.send_text(7, "/segmentation")
        await tg.replies(7, 1)
        await tg.send_photo(7, jpeg(astronaut))
        album, overlay = await tg.replies(7, 2)
        assert album.method == "sendMediaGroup" and len(album.files) == 3  # original + 2 classes
        captions = [m.get("caption") for m in album.params["media"]]
        assert captions == ["original", "background", "person"]
        assert all(img.size == (512, 512) for img in album.images())
        person = np.asarray(album.images()[2].convert("L"))
        assert 0.15 < (person > 127).mean() < 0.85
        caption = overlay.params["caption"]
        assert overlay.method == "sendPhoto" and "TVM default" in caption and "TFLite" in caption
        assert "TVM tuned not available here; result from TVM default" in caption
        assert overlay.images()[0].size[0] > 512  # legend panel beside the photo

    try:
        converse(selfie_service, scenario)
    finally:
        root.removeHandler(logs)
        root.setLevel(old_level)
    text = "\n".join(logs.lines)
    assert logs.lines and TOKEN.split(":")[1] not in text


def test_twin_album_has_one_mask_per_class_and_says_synthetic(twin_service, astronaut):
    async def scenario(tg: FakeTelegram):
        await tg.send_text(3, "/segmentation")
        await tg.replies(3, 1)
        await tg.send_document(3, jpeg(astronaut), "image/jpeg", "me.jpg")  # sent as a file
        album, overlay = await tg.replies(3, 2)
        assert len(album.files) == 7
        assert [m["caption"] for m in album.params["media"]][1:] == list(twin_service.classes)
        assert "synthetic" in overlay.params["caption"]

    converse(twin_service, scenario)


def test_hair_colour_flow_with_invalid_colour_then_valid(selfie_service, astronaut):
    async def scenario(tg: FakeTelegram):
        await tg.send_text(9, "/change-hair-color")  # the seed's hyphenated spelling still works
        await tg.replies(9, 1)
        await tg.send_photo(9, jpeg(astronaut))
        (ask,) = await tg.replies(9, 1)
        assert "#RRGGBB" in ask.params["text"]
        await tg.send_text(9, "#12")
        (again,) = await tg.replies(9, 1)
        assert "not a colour" in again.params["text"] and "/cancel" in again.params["text"]
        await tg.send_text(9, "#00ff00")
        (result,) = await tg.replies(9, 1)
        out = np.asarray(result.images()[0].convert("RGB")).astype(int)
        original = np.asarray(Image.open(io.BytesIO(jpeg(astronaut))).convert("RGB")).astype(int)
        changed = np.abs(out - original).sum(-1) > 40
        rows = np.nonzero(changed.any(axis=1))[0]
        assert changed.mean() > 0.01 and np.median(rows) < 256  # the hair, at the top of the head
        hair = out[changed]
        assert (hair[:, 1] > hair[:, 0]).mean() > 0.8  # greener than red where it changed
        assert "hair_segmentation" in result.params["caption"]

    converse(selfie_service, scenario)


def test_background_flow(selfie_service, grace_hopper):
    async def scenario(tg: FakeTelegram):
        await tg.send_text(11, "/change_background")
        await tg.replies(11, 1)
        await tg.send_photo(11, jpeg(grace_hopper))
        await tg.replies(11, 1)
        blue = np.zeros((300, 800, 3), np.uint8)
        blue[..., 2] = 255
        await tg.send_photo(11, jpeg(blue))
        (result,) = await tg.replies(11, 1)
        out = np.asarray(result.images()[0].convert("RGB")).astype(int)
        assert out.shape == grace_hopper.shape
        corner = out[:40, :40]  # background in the original: now blue
        assert corner[..., 2].mean() > 200 and corner[..., 0].mean() < 60
        centre = out[250:350, 200:300]  # the face: kept
        assert np.abs(centre - grace_hopper[250:350, 200:300]).mean() < 20

    converse(selfie_service, scenario)


def test_bad_inputs_get_specific_replies_and_the_flow_survives(selfie_service, astronaut):
    async def scenario(tg: FakeTelegram):
        await tg.send_text(5, "/segmentation")
        await tg.replies(5, 1)
        await tg.send_text(5, "hello")
        assert "send a photo" in (await tg.replies(5, 1))[0].params["text"]
        await tg.send_sticker(5)
        assert "Stickers" in (await tg.replies(5, 1))[0].params["text"]
        await tg.send_document(5, b"%PDF-1.4", "application/pdf", "doc.pdf")
        assert "not an image" in (await tg.replies(5, 1))[0].params["text"]
        await tg.send_document(5, b"\xff\xd8\xff\xe0 truncated", "image/jpeg", "bad.jpg")
        assert "corrupt" in (await tg.replies(5, 1))[0].params["text"]
        huge = io.BytesIO()
        Image.new("L", (12_000, 9_000)).save(huge, format="PNG")
        await tg.send_document(5, huge.getvalue(), "image/png", "huge.png")
        assert "the limit is" in (await tg.replies(5, 1))[0].params["text"]
        await tg.send_photo(5, jpeg(astronaut), size=25 * 2**20)
        assert "20 MB" in (await tg.replies(5, 1))[0].params["text"]
        await tg.send_photo(5, jpeg(astronaut))  # still waiting for a photo: this one works
        album, _ = await tg.replies(5, 2)
        assert album.method == "sendMediaGroup"
        await tg.send_text(5, "/change_background")
        await tg.replies(5, 1)
        await tg.send_text(5, "/cancel")
        assert (await tg.replies(5, 1))[0].params["text"] == "Cancelled."

    converse(selfie_service, scenario)


def test_twenty_users_at_once(selfie_service, astronaut, grace_hopper):
    photos = [jpeg(astronaut), jpeg(grace_hopper)]

    async def scenario(tg: FakeTelegram):
        users = range(100, 120)
        for u in users:
            await tg.send_text(u, "/segmentation")
        for u in users:
            await tg.replies(u, 1)
        for u in users:
            await tg.send_photo(u, photos[u % 2])
        results = await asyncio.gather(*(tg.replies(u, 2, timeout=300) for u in users))
        for album, overlay in results:
            assert album.method == "sendMediaGroup" and overlay.method == "sendPhoto"

    converse(selfie_service, scenario)


def test_busy_reply_when_the_queue_is_full(selfie_service, astronaut):
    settings = selfie_service.settings
    selfie_service.settings = settings.model_copy(update={"max_pending": 1})
    try:
        async def scenario(tg: FakeTelegram):
            for u in (201, 202, 203):
                await tg.send_text(u, "/segmentation")
                await tg.replies(u, 1)
            for u in (201, 202, 203):
                await tg.send_photo(u, jpeg(astronaut))
            firsts = [(await tg.replies(u, 1))[0] for u in (201, 202, 203)]
            busy = [r for r in firsts if r.method == "sendMessage" and "busy" in r.params["text"]]
            assert busy  # at least one request found the queue full

        converse(selfie_service, scenario)
    finally:
        selfie_service.settings = settings


def test_webhook_mode(twin_service, astronaut):
    from aiohttp import web

    from bot.app import WEBHOOK_PATH, create_webhook_app

    async def main():
        telegram = FakeTelegram(TOKEN)
        url = await telegram.start()
        runner = None
        try:
            # Bind first to learn the port, then tell the bot its public URL.
            probe = web.AppRunner(web.Application())
            await probe.setup()
            site = web.TCPSite(probe, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            await probe.cleanup()
            settings = twin_service.settings.model_copy(update={
                "api_server": url, "webhook_url": f"http://127.0.0.1:{port}{WEBHOOK_PATH}"})
            runner = web.AppRunner(create_webhook_app(settings, twin_service))
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            assert telegram.webhook_url == settings.webhook_url
            await telegram.send_text(77, "/segmentation")
            await telegram.replies(77, 1)
            await telegram.send_photo(77, jpeg(astronaut))
            album, overlay = await telegram.replies(77, 2)
            assert len(album.files) == 7 and "synthetic" in overlay.params["caption"]
        finally:
            if runner:
                await runner.cleanup()
            await telegram.stop()

    asyncio.run(main())


def test_missing_or_malformed_token_is_a_clear_error(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for token in (None, "not-a-token"):
        run_env = env if token is None else {**env, "TELEGRAM_BOT_TOKEN": token}
        proc = subprocess.run([sys.executable, "-m", "bot"], cwd=tmp_path, env={**run_env, "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert "TELEGRAM_BOT_TOKEN" in proc.stderr and "not-a-token" not in proc.stderr


def test_benchmark_p50_is_read_from_this_machines_report(tmp_path):
    import pandas as pd

    from benchmark.summary import summarise
    from bot.service import benchmark_p50

    samples = pd.DataFrame({"engine": ["litert"] * 3 + ["tvm-tuned"] * 3, "threads": [2] * 6,
                            "latency_ms": [70, 80, 90, 100, 120, 140]})
    (tmp_path / "m" / "this-cpu").mkdir(parents=True)
    summarise(samples).to_csv(tmp_path / "m" / "this-cpu" / "latency_stats.csv", index=False)
    assert benchmark_p50("m", tmp_path, "this-cpu") == {("litert", 2): 80.0, ("tvm-tuned", 2): 120.0}
    assert benchmark_p50("m", tmp_path, "another-cpu") == {}
