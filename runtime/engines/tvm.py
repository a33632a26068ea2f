"""TVM engines: run an exported library (tvm-default or tvm-tuned) through the Relax VM."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..acquire import ResolvedModel
from ..errors import EngineError
from . import TVM_DEFAULT, TVM_TUNED
from .base import Engine


def set_tvm_threads(threads: int) -> None:
    """Size TVM's CPU thread pool *of the calling thread* (TVM keeps one pool per OS thread).

    Call it on the thread that runs inference: a pool sized elsewhere does not apply there.
    Reconfiguring the pool pins the calling thread to one core; every thread it starts afterwards
    (LiteRT's among them) would inherit that, so the caller's affinity is restored.
    """
    import os

    import tvm

    _raise_pool_limit(threads)
    affinity = os.sched_getaffinity(0)
    tvm.get_global_func("runtime.config_threadpool")(0, threads)
    os.sched_setaffinity(0, affinity)
    if (actual := tvm_threads()) != threads:
        raise EngineError(f"TVM's thread pool on this thread has {actual} threads, not {threads}: it was made "
                          f"before its limit was raised; set TVM_NUM_THREADS={threads} before the process starts")
    _pool.threads = threads


def _raise_pool_limit(threads: int) -> None:
    """TVM caps each thread's pool at a limit it reads when it makes that pool: TVM_NUM_THREADS, else half
    the logical CPUs (1 on a 2-vCPU machine). Raise the variable before this thread's pool is made, so the
    count asked for is the count run, whatever the environment (CLI, bot, image, library use)."""
    import os

    current = os.environ.get("TVM_NUM_THREADS", "")
    if not current.isdigit() or int(current) < threads:  # at least the core count: a later, larger count fits too
        os.environ["TVM_NUM_THREADS"] = str(max(threads, os.cpu_count() or 1))


def tvm_threads() -> int:
    """The worker count of the calling thread's TVM pool: what a run on this thread really uses."""
    import tvm

    return int(tvm.get_global_func("runtime.NumThreads")())


_pool = threading.local()  # the size this OS thread's pool was given by set_tvm_threads


class TVMEngine(Engine):
    kind = "default"

    def __init__(self, model: ResolvedModel, threads: int, *, library: Path | None = None, target=None,
                 build_root: Path | None = None) -> None:
        super().__init__(model, threads)
        import tvm
        from tvm import relax

        from runtime.artifacts import LibraryMetadata, build_dir, check_metadata, library_paths
        from runtime.target import PORTABLE_CPU, library_targets

        if target is None:  # this host's own build, else a portable (x86-64-v3) one it can run
            built = build_dir(model.spec.name, library_targets()[0]).parent
            cores = tuple(int(d.name.rsplit("-", 1)[1][:-1]) for d in built.glob(f"{PORTABLE_CPU}-avx2-*c"))
            candidates = library_targets(cores)
            target = next((t for t in candidates if build_root is None and
                           library_paths(build_dir(model.spec.name, t), self.kind)[0].is_file()), candidates[0])
        if library is None:
            directory = build_dir(model.spec.name, target) if build_root is None else build_root
            library, meta_path = library_paths(directory, self.kind)
        else:
            meta_path = library.with_suffix(".json")
        if not library.is_file() or not meta_path.is_file():
            command = f"selfie-tvm compile --model {model.spec.name}" + (" --tuned" if self.kind == "tuned" else "")
            raise EngineError(
                f"no {self.name} library for {model.spec.name} on {target.id} at {library}; build it with `{command}`")
        self.metadata = LibraryMetadata.read(meta_path)
        check_metadata(self.metadata, model.spec.name, model.sha256(), target, library)
        self.library = library
        self._device = tvm.cpu()
        self._vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), self._device)
        self._main = self._vm["main"]
        self._tensor = tvm.runtime.tensor

    def run(self, x: np.ndarray) -> np.ndarray:
        if getattr(_pool, "threads", None) != self.threads:  # first run on this thread, or resized
            set_tvm_threads(self.threads)
        out = self._main(self._tensor(np.ascontiguousarray(x, dtype=np.float32), self._device))
        return out.numpy()

    def actual_threads(self) -> int:
        """Threads a run on the calling thread uses (TVM's pool of this thread, as TVM reports it)."""
        return tvm_threads()


class TVMDefaultEngine(TVMEngine):
    name = TVM_DEFAULT
    kind = "default"


class TVMTunedEngine(TVMEngine):
    name = TVM_TUNED
    kind = "tuned"
