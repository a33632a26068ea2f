"""Runs the runtime's segmentation on every configured engine, off the event loop, bounded."""

from __future__ import annotations

import asyncio
import csv
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.acquire import resolve_model
from runtime.colors import parse_color
from runtime.effects import mask_image, overlay, recolor_hair, replace_background
from runtime.errors import SelfieTvmError
from runtime.images import encode_jpeg, encode_png, load_image
from runtime.pipeline import hair_model_for
from runtime.segmenter import Segmentation, Segmenter

from .settings import BotSettings

log = logging.getLogger(__name__)
ENGINE_LABEL = {"tvm-default": "TVM default", "tvm-tuned": "TVM tuned", "litert": "TFLite"}


class Busy(Exception):
    pass


@dataclass
class Result:
    images: list[tuple[bytes, str]]  # (encoded image, caption)
    timings: str


class ModelRunner:
    """Segmenters of one model on every engine that can run here."""

    def __init__(self, model: str, engines: list[str], threads: int) -> None:
        from runtime.engines import create_engine

        self.model = resolve_model(model)
        self.segmenters: dict[str, Segmenter] = {}
        self.unavailable: dict[str, str] = {}
        for name in engines:
            try:
                self.segmenters[name] = Segmenter(create_engine(name, self.model, threads))
            except SelfieTvmError as e:
                self.unavailable[name] = str(e)
                log.warning("engine %s unavailable for %s: %s", name, model, e)
        if not self.segmenters:
            raise SelfieTvmError(f"no engine can run {model}: {self.unavailable}")

    @property
    def spec(self):
        return self.model.spec

    def segment_all(self, rgb: np.ndarray) -> tuple[Segmentation, dict[str, float]]:
        """Run every engine on this request; return the preferred engine's result and all timings."""
        timings, result = {}, None
        for name, segmenter in self.segmenters.items():
            seg = segmenter.segment(rgb)
            timings[name] = seg.timings.inference_ms
            result = result or seg  # engines are in preference order
        return result, timings


def benchmark_p50(model: str, results_root: Path, target_id: str) -> dict[tuple[str, int], float]:
    """p50 latencies from this model's benchmark report for this machine's target, if there is one."""
    path = results_root / model / target_id / "latency_stats.csv"
    if not path.is_file():
        return {}
    with path.open() as f:
        return {(row["engine"], int(row["threads"])): float(row["p50"]) for row in csv.DictReader(f)}


class SegmentationService:
    def __init__(self, settings: BotSettings, results_root: Path | None = None) -> None:
        from runtime.artifacts import results_root as default_results_root
        from runtime.target import host_target

        self.settings = settings
        self.target_id = host_target().id
        self.main = ModelRunner(settings.model, settings.engines, settings.threads)
        hair_name = hair_model_for(self.main.spec)
        self.hair = self.main if hair_name == self.main.spec.name else self._optional_runner(hair_name)
        self.p50 = benchmark_p50(self.main.spec.name, results_root or default_results_root(), self.target_id)
        self._executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="inference")
        self._pending = 0

    def _optional_runner(self, model: str) -> ModelRunner | None:
        try:
            return ModelRunner(model, self.settings.engines, self.settings.threads)
        except SelfieTvmError as e:
            log.warning("hair model %s unavailable: %s", model, e)
            return None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.main.spec.classes

    @property
    def notice(self) -> str | None:
        return self.main.spec.synthetic_notice

    async def run(self, fn, *args) -> Result:
        if self._pending >= self.settings.max_pending:
            raise Busy()
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._pending -= 1

    def format_timings(self, runner: ModelRunner, timings: dict[str, float]) -> str:
        parts = []
        for name in ("tvm-default", "tvm-tuned", "litert"):
            if name not in timings:
                continue
            text = f"{ENGINE_LABEL[name]} {timings[name]:.0f} ms"
            if name == "tvm-tuned" and "tvm-default" in timings:
                text += f" ({timings['tvm-default'] / timings[name]:.1f}x)"
            parts.append(text)
        lines = [f"{runner.spec.name}: " + " · ".join(parts)]
        missing = [ENGINE_LABEL.get(n, n) for n in runner.unavailable]
        if missing:
            used = ENGINE_LABEL.get(next(iter(runner.segmenters)), "")
            lines.append(f"({', '.join(missing)} not available here; result from {used})")
        threads = self.settings.threads
        bench = [f"{ENGINE_LABEL[e]} {self.p50[(e, threads)]:.0f} ms" for e in ("tvm-default", "tvm-tuned", "litert")
                 if runner is self.main and (e, threads) in self.p50]
        if bench:
            lines.append(f"benchmark p50 ({self.target_id}, {threads} threads): " + " · ".join(bench))
        if runner.spec.synthetic_notice:
            lines.append("⚠️ synthetic model: its masks are meaningless (latency is representative)")
        return "\n".join(lines)

    # -- the three tasks (run in the executor) -------------------------------------------
    def segmentation(self, photo: bytes) -> Result:
        rgb = load_image(photo)
        seg, timings = self.main.segment_all(rgb)
        images = [(encode_jpeg(rgb), "original")]
        images += [(encode_png(mask_image(seg.confidence(c))), c) for c in self.classes]
        legend = overlay(rgb, seg.category_mask, self.classes)
        images.append((encode_jpeg(legend), "all classes"))
        return Result(images, self.format_timings(self.main, timings))

    def hair_color(self, photo: bytes, color_text: str) -> Result:
        color = parse_color(color_text)
        if self.hair is None:
            raise SelfieTvmError("hair recolouring needs a hair model, and none is available here")
        rgb = load_image(photo)
        seg, timings = self.hair.segment_all(rgb)
        out = recolor_hair(rgb, seg.confidence(seg.spec.hair_class), color)
        return Result([(encode_jpeg(out), f"hair: {color_text}")], self.format_timings(self.hair, timings))

    def background(self, photo: bytes, background: bytes) -> Result:
        rgb, bg = load_image(photo), load_image(background)
        seg, timings = self.main.segment_all(rgb)
        out = replace_background(rgb, seg.person_confidence(), bg)
        return Result([(encode_jpeg(out), "new background")], self.format_timings(self.main, timings))
