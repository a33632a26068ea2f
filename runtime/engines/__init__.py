"""The engine table: names users type -> label and class (imported lazily: TVM is heavy).

The one place engines are named; the CLI, the benchmark, its report and the bot all read it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..acquire import ResolvedModel
from ..errors import EngineError
from .base import Engine


@dataclass(frozen=True)
class EngineInfo:
    name: str  # what users type: --engine, SELFIE_BOT_ENGINES, benchmark --engines
    label: str  # what reports and replies show
    target: str  # "module:Class", imported on first use


ENGINES: dict[str, EngineInfo] = {
    info.name: info
    for info in (
        EngineInfo("litert", "TFLite (LiteRT)", "runtime.engines.litert:LiteRTEngine"),
        EngineInfo("tvm-default", "TVM default", "runtime.engines.tvm:TVMDefaultEngine"),
        EngineInfo("tvm-tuned", "TVM tuned", "runtime.engines.tvm:TVMTunedEngine"),
    )
}
ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES)


def _info(name: str) -> EngineInfo:
    try:
        return ENGINES[name]
    except KeyError:
        raise EngineError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINE_NAMES)}") from None


def engine_label(name: str) -> str:
    return _info(name).label


def create_engine(name: str, model: ResolvedModel, threads: int = 1, **options) -> Engine:
    module_name, cls_name = _info(name).target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(model, threads, **options)


__all__ = ["ENGINES", "ENGINE_NAMES", "Engine", "EngineInfo", "create_engine", "engine_label"]
