"""The engines a model runs on here, and which of them answers (the fastest, measured at start)."""

from __future__ import annotations

import logging
import threading

import numpy as np

from runtime.acquire import resolve_model
from runtime.engines import create_engine
from runtime.errors import SelfieTvmError
from runtime.segmenter import Segmentation, Segmenter

log = logging.getLogger(__name__)


def built_target(model: str, mcpu: str):
    """The target of libraries built for CPU `mcpu`: this host's core count if there is such a build, else
    any core count (the count only guided tuning; a library runs on any number of cores)."""
    from runtime.artifacts import build_dir
    from runtime.target import host_target

    wanted = host_target(mcpu=mcpu)
    built = sorted(int(d.name.rsplit("-", 1)[1][:-1]) for d in build_dir(model, wanted).parent.glob(f"{mcpu}-*-*c"))
    if built and wanted.num_cores not in built:
        return host_target(mcpu=mcpu, num_cores=built[0])
    return wanted


class EngineSet:
    """Segmenters of one model on every configured engine that can run here, fastest first once warmed up."""

    def __init__(self, model: str, engines: list[str], threads: int, tvm_target: str | None = None) -> None:
        self.model = resolve_model(model)
        self.threads = threads
        self.segmenters: dict[str, Segmenter] = {}
        self.unavailable: dict[str, str] = {}
        for name in engines:
            try:
                options = {"target": built_target(self.model.spec.name, tvm_target)} if (
                    tvm_target and name.startswith("tvm")) else {}
                self.segmenters[name] = Segmenter(create_engine(name, self.model, threads, **options))
            except SelfieTvmError as e:
                self.unavailable[name] = str(e)
                log.warning("engine %s unavailable for %s: %s", name, model, e)
        if not self.segmenters:
            raise SelfieTvmError(f"no engine can run {model}: {self.unavailable}")
        self.warm_ms: dict[str, float] = {}  # inference time measured at start, per engine
        # One run at a time per engine: the timing lane re-times the answering engine while the reply lane may
        # need it (neither a LiteRT interpreter nor a TVM VirtualMachine may run on two threads at once). A reply
        # waits at most for the one run under way: the timing lane starts none while a reply is due.
        self.locks = {name: threading.Lock() for name in self.segmenters}

    @property
    def spec(self):
        return self.model.spec

    @property
    def order(self) -> list[str]:
        """Engines, fastest first (configuration order until warmed up)."""
        names = list(self.segmenters)
        return sorted(names, key=lambda n: self.warm_ms.get(n, float(names.index(n))))

    @property
    def primary(self) -> str:
        return self.order[0]

    def engines_with_pools(self) -> dict:
        """Engines that can report the threads a run on the calling thread uses (TVM's)."""
        return {n: s.engine for n, s in self.segmenters.items() if hasattr(s.engine, "actual_threads")}

    def segment(self, name: str, rgb: np.ndarray) -> Segmentation:
        with self.locks[name]:
            return self.segmenters[name].segment(rgb)
