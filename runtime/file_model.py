"""A .tflite file that is not in the registry: its spec read from the file, its name from its sha256.

Read as MediaPipe's ImageSegmenter reads a model: the first input is the image (NHWC, 3 channels, or 4 with
a previous-mask channel), its range from the normalisation in the file's TFLite metadata, the last output
the mask; class names from the labels file packed in the model, if any.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from .errors import ModelFileError
from .registry import InputSpec, ModelSpec
from .tflite_graph import TFLiteGraph

FILE_MODEL_PREFIX = "file-"
# Without normalisation metadata MediaPipe refuses a float model; selfie-tvm assumes the common [0, 1].
DEFAULT_RANGE = (0.0, 1.0)
PERSON_LABELS = ("person", "selfie")


def file_model_name(sha256: str) -> str:
    """The name results and libraries of a file model are kept under."""
    return f"{FILE_MODEL_PREFIX}{sha256[:12]}"


def is_file_model_name(name: str) -> bool:
    return name.startswith(FILE_MODEL_PREFIX)


def spec_from_file(path: Path, sha256: str) -> ModelSpec:
    """The model's spec from the file itself; ModelFileError (one line) if the effects cannot use it."""
    try:
        graph = TFLiteGraph.load(path)
        inputs, outputs = graph.input_shapes, graph.output_shapes
        in_types, out_types, producers = graph.input_types, graph.output_types, graph.output_producers
        normalization = graph.input_normalization()
    except Exception as e:  # the flatbuffer reader fails in many ways on a file that is not TFLite
        raise ModelFileError(f"{path} is not a TFLite model file ({type(e).__name__}: {e})") from None
    if not inputs or not outputs:
        raise ModelFileError(f"{path}: the model has no inputs or no outputs")
    shape = inputs[0]
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in (3, 4):
        layout = " (channels first? only NHWC is supported)" if len(shape) == 4 and shape[1] in (3, 4) else ""
        raise ModelFileError(f"{path}: input {shape} is not one NHWC image with 3 or 4 channels{layout}")
    if in_types[0] != "float32":
        raise ModelFileError(f"{path}: input is {in_types[0]}; only float32 inputs are supported")
    out = outputs[-1]
    if len(out) != 4 or out[0] != 1 or out_types[-1] != "float32":
        raise ModelFileError(f"{path}: output {out} ({out_types[-1]}) is not a float32 mask (1, height, width, "
                             "classes); the effects cannot use it")
    channels = out[3]
    kind = "probability" if channels == 1 else "probabilities" if producers[-1] == "SOFTMAX" else "logits"
    labels = _labels(path, channels)
    classes = ("background", labels[0] if labels else "foreground") if channels == 1 else \
        tuple(labels or (f"class{i}" for i in range(channels)))
    person = (classes[1],) if channels == 1 else tuple(c for c in classes if c in PERSON_LABELS)
    if normalization is None:
        value_range, source = DEFAULT_RANGE, "no normalisation metadata: input assumed in [0, 1]"
    else:
        mean, std = normalization
        value_range, source = ((0.0 - mean) / std, (255.0 - mean) / std), "input range from its metadata"
    return ModelSpec(
        name=file_model_name(sha256),
        description=f"a .tflite file not in the registry (sha256 {sha256[:12]}...; {source})",
        input=InputSpec(shape[1], shape[2], "NHWC", value_range, ("previous_mask",) if shape[3] == 4 else ()),
        output_kind=kind,
        classes=classes,
        person_classes=person,
        hair_class="hair" if "hair" in classes else None,
        sha256=sha256,
        output_size=(out[1], out[2]),
    )


def _labels(path: Path, channels: int) -> tuple[str, ...]:
    """Class names from a labels file packed in the model (a .tflite with metadata is also a zip)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in sorted(archive.namelist(), key=lambda n: n != "labels.txt"):
                if name.endswith(".txt"):
                    lines = [line.strip() for line in archive.read(name).decode(errors="replace").splitlines()]
                    lines = [line for line in lines if line]
                    if len(lines) == channels:
                        return tuple(lines)
    except (zipfile.BadZipFile, OSError):
        pass  # no packed files: the classes get generic names
    return ()
