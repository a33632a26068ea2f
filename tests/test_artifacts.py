"""Library metadata that this version cannot read is one clear error naming the file and the fix."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from runtime.artifacts import ArtifactMetadataError, LibraryMetadata
from runtime.engines.tvm import TVMDefaultEngine
from runtime.errors import EngineError
from runtime.target import host_target

from .tiny_models import tiny_segmenter


def metadata(kind: str = "tuned") -> LibraryMetadata:
    return LibraryMetadata(kind=kind, model="selfie_multiclass_twin", model_sha256="ab" * 32,
                           target=host_target().as_dict(), tvm_version="0.27.0", untuned_kernels=["fused_conv2d"])


def test_metadata_round_trip(tmp_path):
    path = tmp_path / "tuned.json"
    metadata().write(path)
    assert LibraryMetadata.read(path) == metadata()


def test_metadata_of_a_newer_version(tmp_path):
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({**asdict(metadata()), "schedule_cache": "x", "arena": 1}))
    with pytest.raises(ArtifactMetadataError) as err:
        LibraryMetadata.read(path)
    assert str(err.value) == (f"{path} was written by another version of selfie-tvm (unknown fields arena, "
                              "schedule_cache): rebuild the library with `selfie-tvm compile --model "
                              "selfie_multiclass_twin --tuned`")


def test_metadata_of_an_older_version(tmp_path):
    path = tmp_path / "default.json"
    old = asdict(metadata("default"))
    del old["model_sha256"], old["tvm_version"], old["untuned_kernels"]  # the last has a default: not missing
    path.write_text(json.dumps(old))
    with pytest.raises(ArtifactMetadataError, match=r"\(missing fields model_sha256, tvm_version\): rebuild the "
                       r"library with `selfie-tvm compile --model selfie_multiclass_twin`$"):
        LibraryMetadata.read(path)


@pytest.mark.parametrize(("text", "message"), [("{not json", "is not valid JSON"),
                                               ("[1, 2]", "holds a JSON list, not library metadata")])
def test_metadata_that_is_not_metadata(tmp_path, text, message):
    path = tmp_path / "default.json"
    path.write_text(text)
    with pytest.raises(ArtifactMetadataError, match=message):
        LibraryMetadata.read(path)


def test_an_engine_refuses_a_library_whose_metadata_it_cannot_read(tmp_path):
    model = tiny_segmenter(tmp_path / "tiny.tflite")
    (tmp_path / "default.so").write_bytes(b"")  # never loaded: the metadata is read first
    (tmp_path / "default.json").write_text(json.dumps({**asdict(metadata("default")), "arena": 1}))
    with pytest.raises(EngineError, match="default.json was written by another version"):
        TVMDefaultEngine(model, 1, build_root=tmp_path)
