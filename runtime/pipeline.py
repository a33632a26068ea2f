"""Ready-made segmenters for the user-facing tasks, shared by the CLI and the bot."""

from __future__ import annotations

from pathlib import Path

from .acquire import resolve_model
from .engines import LITERT, create_engine
from .errors import SelfieTvmError
from .registry import ModelSpec, registry
from .segmenter import Segmenter


def load_segmenter(model: str | None = None, engine: str = LITERT, threads: int = 1,
                   model_path: Path | None = None, **engine_options) -> Segmenter:
    resolved = resolve_model(model, path=model_path)
    return Segmenter(create_engine(engine, resolved, threads, **engine_options))


def hair_model_for(spec: ModelSpec) -> str:
    """The model that segments hair for `spec`: itself if it has a hair class, else the fallback."""
    if spec.hair_class:
        return spec.name
    fallback = registry().hair_fallback
    if not fallback:
        raise SelfieTvmError(f"{spec.name} has no hair class and no hair model is configured")
    return fallback


def require_person_classes(spec: ModelSpec) -> None:
    if not spec.person_classes:
        raise SelfieTvmError(f"{spec.name} does not segment people; choose a person segmentation model")
