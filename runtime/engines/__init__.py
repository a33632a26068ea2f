"""The engine table: names users type -> label and class (imported lazily: TVM is heavy).

The one place engines are named; the CLI, the benchmark, its report and the bot all import the names
from here (tests/test_single_source.py keeps it so).
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


LITERT = "litert"
TVM_DEFAULT = "tvm-default"
TVM_TUNED = "tvm-tuned"
_TVM_BY_KIND = {"default": TVM_DEFAULT, "tuned": TVM_TUNED}  # runtime.artifacts.KINDS -> engine

ENGINES: dict[str, EngineInfo] = {
    info.name: info
    for info in (
        EngineInfo(LITERT, "TFLite (LiteRT)", "runtime.engines.litert:LiteRTEngine"),
        EngineInfo(TVM_DEFAULT, "TVM default", "runtime.engines.tvm:TVMDefaultEngine"),
        EngineInfo(TVM_TUNED, "TVM tuned", "runtime.engines.tvm:TVMTunedEngine"),
    )
}
ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES)


def tvm_engine(kind: str) -> str:
    """The engine that runs a library of this kind ("default" or "tuned")."""
    try:
        return _TVM_BY_KIND[kind]
    except KeyError:
        raise ValueError(f"kind must be one of {tuple(_TVM_BY_KIND)}, got {kind!r}") from None


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


__all__ = ["ENGINES", "ENGINE_NAMES", "LITERT", "TVM_DEFAULT", "TVM_TUNED", "Engine", "EngineInfo", "create_engine",
           "engine_label", "tvm_engine"]
