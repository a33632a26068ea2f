"""Engine factory: names users type -> engine classes (imported lazily: TVM is heavy)."""

from __future__ import annotations

import importlib

from ..acquire import ResolvedModel
from ..errors import EngineError
from .base import Engine

ENGINES: dict[str, str] = {
    "litert": "runtime.engines.litert:LiteRTEngine",
    "tvm-default": "runtime.engines.tvm:TVMDefaultEngine",
    "tvm-tuned": "runtime.engines.tvm:TVMTunedEngine",
}


def create_engine(name: str, model: ResolvedModel, threads: int = 1, **options) -> Engine:
    try:
        target = ENGINES[name]
    except KeyError:
        raise EngineError(f"unknown engine {name!r}; available: {', '.join(ENGINES)}") from None
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(model, threads, **options)


__all__ = ["ENGINES", "Engine", "create_engine"]
