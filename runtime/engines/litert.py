"""LiteRT (TFLite) engine: the baseline, with its default XNNPACK delegate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from ..acquire import ResolvedModel
from ..errors import EngineError
from . import LITERT
from .base import Engine
from .litert_isa import AVX2, ISA_LEVELS, NATIVE, check_limited, limit_to_avx2, xnnpack_arch_flags


def interpreter(model: Path | bytes, threads: int) -> Interpreter:
    """The LiteRT path every measurement here takes: the default op resolver (XNNPACK delegate), `threads`
    threads, tensors allocated. `model`: a .tflite file, or its bytes."""
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    interp = Interpreter(**source, num_threads=threads)
    interp.allocate_tensors()
    return interp


class LiteRTEngine(Engine):
    name = LITERT

    def __init__(self, model: ResolvedModel, threads: int, *, isa: str = NATIVE) -> None:
        """`isa="avx2"`: XNNPACK runs only its AVX2 kernels in this whole process (runtime/engines/litert_isa.py)."""
        super().__init__(model, threads)
        if isa not in ISA_LEVELS:
            raise EngineError(f"unknown LiteRT ISA {isa!r}: one of {', '.join(ISA_LEVELS)}")
        if isa == AVX2:
            limit_to_avx2()
        self.isa = isa
        try:
            self._interp = interpreter(model.path, threads)
        except (RuntimeError, ValueError) as e:
            raise EngineError(f"LiteRT cannot load {model.path}: {e}") from e
        if isa == AVX2:
            check_limited(xnnpack_arch_flags())
        self._input = self._interp.get_input_details()[0]
        self._output = self._interp.get_output_details()[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        expected = tuple(self._input["shape"])
        if x.shape != expected:
            raise EngineError(f"{self.spec.name} expects input {expected}, got {x.shape}")
        self._interp.set_tensor(self._input["index"], np.ascontiguousarray(x, dtype=np.float32))
        self._interp.invoke()
        return self._interp.get_tensor(self._output["index"])
