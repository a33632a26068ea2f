"""The one interface every inference engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..acquire import ResolvedModel


class Engine(ABC):
    """Runs one model on NHWC float32 input and returns its raw output (1, h, w, C)."""

    name: str = "engine"

    def __init__(self, model: ResolvedModel, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.model = model
        self.spec = model.spec
        self.threads = threads

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray: ...
