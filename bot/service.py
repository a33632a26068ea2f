"""The bot's service: the engines, lanes and admission wired together, and the three image tasks.

- Every configured engine is loaded and warmed up at start; the fastest (measured then) answers
  (`engines.py`); the other engines are timed afterwards on the timing lane (`lanes.py`).
- Admission (`admission.py`): one request in flight per chat plus a small queue, and a global bound.
- The tasks (segmentation, hair colour, background) run on the reply lane and return a `Result`
  whose caption says how fast each engine was (`timings.py`).
Every engine uses the same thread count, sized on the thread that runs it (TVM's pool is per thread).
Handlers call this package; it calls runtime/ and nothing else of the project.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np

from runtime.effects import mask_image, overlay, recolor_hair, replace_background
from runtime.engines import engine_label
from runtime.errors import SelfieTvmError
from runtime.images import encode_jpeg, encode_png
from runtime.pipeline import hair_model_for
from runtime.segmenter import Segmentation

from .admission import Admission
from .engines import EngineSet
from .lanes import Lanes
from .photos import RecentFiles
from .published import read_published
from .settings import BotSettings
from .timings import Result, Timing, TimingReport

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The task cannot run here (e.g. no hair model); the text is for the user."""


class SegmentationService:
    def __init__(self, settings: BotSettings, results_root: Path | None = None, *, warm_up: bool = True) -> None:
        from runtime.artifacts import results_root as default_results_root
        from runtime.target import host_target

        self.settings = settings
        self.main = EngineSet(settings.model, settings.engines, settings.threads, settings.tvm_target)
        hair_name = hair_model_for(self.main.spec)
        self.hair = self.main if hair_name == self.main.spec.name else self._optional_engines(hair_name)
        self.published = read_published(self.main.spec.name, results_root or default_results_root(),
                                        host_target().id)
        self.admission = Admission(lambda: (self.settings.chat_queue, self.settings.max_pending))
        self.lanes = Lanes(lambda: self.settings.request_timeout_s, lambda: self.settings.background_backlog_s)
        self.tasks: set[asyncio.Task] = set()  # requests being answered (given a few seconds at shutdown)
        self.late_timings: set[asyncio.Task] = set()  # answered requests' background timings (dropped at shutdown)
        # Images checked on arrival, kept for the request that uses them (a few photos' worth).
        self.recent = RecentFiles(limit=4 * settings.max_download_bytes)
        if warm_up:
            self.warm_up()

    def _optional_engines(self, model: str) -> EngineSet | None:
        try:
            return EngineSet(model, self.settings.engines, self.settings.threads, self.settings.tvm_target)
        except SelfieTvmError as e:
            log.warning("hair model %s unavailable: %s", model, e)
            return None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.main.spec.classes

    @property
    def notice(self) -> str | None:
        return self.main.spec.synthetic_notice

    def warm_up(self) -> None:
        """Run every engine on the lane that will run it: one-time costs are paid, pools are sized, and
        the fastest engine (second run when the first is short) becomes the answering one."""
        photo = np.full((256, 256, 3), 128, np.uint8)
        for engines in {id(e): e for e in (self.main, self.hair) if e is not None}.values():
            for name in list(engines.segmenters):
                first = self.lanes.timing.submit(engines.segment, name, photo).result().timings.inference_ms
                if first < 2000:
                    first = self.lanes.timing.submit(engines.segment, name, photo).result().timings.inference_ms
                engines.warm_ms[name] = first
            primary = engines.primary
            self.lanes.reply.submit(engines.segment, primary, photo).result()
            log.info("%s: answering with %s; warm-up inference %s", engines.spec.name, engine_label(primary),
                     ", ".join(f"{engine_label(n)} {ms:.0f} ms" for n, ms in engines.warm_ms.items()))
            pools = {name: (self.lanes.reply if name == primary else self.lanes.timing).submit(
                engine.actual_threads).result() for name, engine in engines.engines_with_pools().items()}
            if pools:  # what each TVM engine's pool really has, on the lane that runs it
                log.info("%s: TVM thread pools %s", engines.spec.name,
                         ", ".join(f"{engine_label(n)} {threads}" for n, threads in pools.items()))

    def close(self, timeout: float = 3.0) -> bool:
        """Stop taking background work; True when both lanes are idle within `timeout` seconds."""
        return self.lanes.close(timeout)

    # -- the three tasks (run on the reply lane) --------------------------------------------------------
    def _report(self, engines: EngineSet, seg: Segmentation) -> TimingReport:
        report = TimingReport(engines, self.settings.threads, self.published)
        report.timings[seg.engine] = Timing(seg.timings.inference_ms)
        return report

    def segment(self, rgb: np.ndarray) -> Result:
        seg = self.main.segment(self.main.primary, rgb)
        images = [(encode_jpeg(rgb), "original")]
        images += [(encode_png(mask_image(seg.confidence(c))), c) for c in self.classes]
        images.append((encode_jpeg(overlay(rgb, seg.category_mask, self.classes)), "all classes"))
        return Result(images, self._report(self.main, seg), rgb)

    def hair_unavailable(self) -> str | None:
        """Why /change_hair_color cannot work here, for the user; None when it can."""
        return None if self.hair else "Sorry, hair recolouring needs a hair model, and none is available here."

    def background_unavailable(self) -> str | None:
        """Why /change_background cannot work with this model, for the user; None when it can."""
        spec = self.main.spec
        if spec.person_classes:
            return None
        return (f"Sorry, I run {spec.name}, which finds {', '.join(spec.classes[1:])} but not people, "
                "so I cannot put a portrait on a new background.")

    def recolor_hair(self, rgb: np.ndarray, color: tuple[int, int, int], color_text: str) -> Result:
        if reason := self.hair_unavailable():
            raise Unavailable(reason)
        seg = self.hair.segment(self.hair.primary, rgb)
        out = recolor_hair(rgb, seg.confidence(seg.spec.hair_class), color)
        return Result([(encode_jpeg(out), f"hair: {color_text}")], self._report(self.hair, seg), rgb)

    def replace_background(self, rgb: np.ndarray, background: np.ndarray) -> Result:
        if reason := self.background_unavailable():
            raise Unavailable(reason)
        seg = self.main.segment(self.main.primary, rgb)
        out = replace_background(rgb, seg.person_confidence(), background)
        return Result([(encode_jpeg(out), "new background")], self._report(self.main, seg), rgb)
