"""LiteRT (TFLite) engine: the baseline, with its default XNNPACK delegate."""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from ..acquire import ResolvedModel
from ..errors import EngineError
from . import LITERT
from .base import Engine


class LiteRTEngine(Engine):
    name = LITERT

    def __init__(self, model: ResolvedModel, threads: int) -> None:
        super().__init__(model, threads)
        try:
            self._interp = Interpreter(model_path=str(model.path), num_threads=threads)
            self._interp.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            raise EngineError(f"LiteRT cannot load {model.path}: {e}") from e
        self._input = self._interp.get_input_details()[0]
        self._output = self._interp.get_output_details()[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        expected = tuple(self._input["shape"])
        if x.shape != expected:
            raise EngineError(f"{self.spec.name} expects input {expected}, got {x.shape}")
        self._interp.set_tensor(self._input["index"], np.ascontiguousarray(x, dtype=np.float32))
        self._interp.invoke()
        return self._interp.get_tensor(self._output["index"])
