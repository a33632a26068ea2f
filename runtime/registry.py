"""The model registry: typed view of original_model/registry.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .errors import RegistryError

REGISTRY_PATH = Path(__file__).resolve().parent.parent / "original_model" / "registry.toml"
OUTPUT_KINDS = {"logits", "probabilities", "probability"}


@dataclass(frozen=True)
class InputSpec:
    height: int
    width: int
    layout: str
    range: tuple[float, float]
    extra: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        return 3 + len(self.extra)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    input: InputSpec
    output_kind: str
    classes: tuple[str, ...]
    person_classes: tuple[str, ...] = ()
    hair_class: str | None = None
    url: str | None = None
    sha256: str | None = None
    generator: str | None = None
    synthetic: bool = False
    twin_of: str | None = None
    license: str | None = None
    output_size: tuple[int, int] | None = None  # (height, width) of the mask; None: the input's

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """The model's output tensor: (1, height, width, channels); one channel for a foreground probability."""
        height, width = self.output_size or (self.input.height, self.input.width)
        return 1, height, width, 1 if self.output_kind == "probability" else self.num_classes

    @property
    def filename(self) -> str:
        return f"{self.name}.tflite"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_index(self, name: str) -> int:
        try:
            return self.classes.index(name)
        except ValueError:
            known = ", ".join(self.classes)
            raise RegistryError(f"model {self.name} has no class {name!r} (classes: {known})") from None

    @property
    def synthetic_notice(self) -> str | None:
        if not self.synthetic:
            return None
        return (f"{self.name} is an architecture twin of {self.twin_of} with synthetic weights: "
                "its latency is representative, its masks are meaningless.")


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelSpec]
    default: str
    hair_fallback: str | None

    def get(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise RegistryError(f"unknown model {name!r}; known models: {', '.join(sorted(self.models))} "
                                "(`selfie-tvm models` lists them)") from None

    def find_by_filename(self, filename: str) -> ModelSpec | None:
        return next((m for m in self.models.values() if m.filename == filename), None)


def _parse_model(name: str, raw: dict) -> ModelSpec:
    try:
        inp = raw["input"]
        spec = ModelSpec(
            name=name,
            description=raw["description"],
            input=InputSpec(int(inp["height"]), int(inp["width"]), inp["layout"],
                            (float(inp["range"][0]), float(inp["range"][1])), tuple(inp.get("extra", ()))),
            output_kind=raw["output"]["kind"],
            classes=tuple(raw["classes"]),
            person_classes=tuple(raw.get("person_classes", ())),
            hair_class=raw.get("hair_class"),
            url=raw.get("url"),
            sha256=raw.get("sha256"),
            generator=raw.get("generator"),
            synthetic=bool(raw.get("synthetic", False)),
            twin_of=raw.get("twin_of"),
            license=raw.get("license"),
        )
    except KeyError as e:
        raise RegistryError(f"registry entry {name!r} lacks field {e.args[0]!r}") from None
    if spec.output_kind not in OUTPUT_KINDS:
        raise RegistryError(f"registry entry {name!r}: output.kind must be one of {sorted(OUTPUT_KINDS)}")
    if spec.input.layout != "NHWC":
        raise RegistryError(f"registry entry {name!r}: only NHWC inputs are supported")
    for cls in (*spec.person_classes, *([spec.hair_class] if spec.hair_class else [])):
        if cls not in spec.classes:
            raise RegistryError(f"registry entry {name!r}: class {cls!r} is not in its classes")
    if spec.url is None and spec.generator is None:
        raise RegistryError(f"registry entry {name!r} needs a url or a generator")
    return spec


def load_registry(path: Path = REGISTRY_PATH) -> Registry:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise RegistryError(f"cannot read model registry {path}: {e}") from e
    models = {name: _parse_model(name, entry) for name, entry in raw.get("models", {}).items()}
    default = raw.get("default")
    if default not in models:
        raise RegistryError(f"registry default {default!r} is not a registered model")
    return Registry(models, default, raw.get("hair_fallback"))


@cache
def registry() -> Registry:
    return load_registry()
