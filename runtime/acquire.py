"""Find a model file: explicit path, models directory, user cache, generator, then download."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .errors import ChecksumMismatchError, ModelDownloadError, ModelNotFoundError
from .file_model import is_file_model_name, spec_from_file
from .registry import ModelSpec, registry
from .settings import RuntimeSettings, get_settings

CHUNK = 1 << 16
# The model verbs that only measure or build use by default: the registry's default if it can be had,
# else its architecture twin (same kernels, synthetic weights), saying so. Photo verbs use the default itself.
AUTO = "auto"
ALL = "all"  # every registry model that can be had without a download (`available_models`)


@dataclass(frozen=True)
class ResolvedModel:
    spec: ModelSpec
    path: Path
    source: str  # "explicit", "models_dir", "cache", "generated", "downloaded"

    def sha256(self) -> str:
        return sha256_of(self.path)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_sha(path: Path, spec: ModelSpec, where: str) -> None:
    if spec.sha256 and sha256_of(path) != spec.sha256:
        raise ChecksumMismatchError(
            f"{path} ({where}) does not match the registry sha256 of {spec.name} ({spec.sha256}); "
            "it is corrupt or a different version: delete it or replace it with the official file "
            f"from {spec.url}")


def download(url: str, dest: Path, sha256: str | None, *, timeout_s: float = 30.0,
             progress: bool = True) -> Path:
    """Stream `url` to `dest` atomically, verifying length and sha256 before it lands."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    received = 0
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp, os.fdopen(fd, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                    while chunk := resp.read(CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
            raise ModelDownloadError(f"could not download {url}: {reason}") from e
        if total is not None and received != total:
            raise ModelDownloadError(f"download of {url} was truncated: got {received} of {total} bytes")
        if sha256 and h.hexdigest() != sha256:
            raise ChecksumMismatchError(
                f"download of {url} has sha256 {h.hexdigest()}, expected {sha256}; nothing was saved")
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def _generate(spec: ModelSpec, dest: Path) -> Path:
    if spec.generator != "twin":
        raise ModelNotFoundError(f"unknown generator {spec.generator!r} for {spec.name}")
    from .twin import twin_bytes

    _atomic_write(dest, twin_bytes())
    return dest


def resolve_model(model: str | Path | None = None, *, path: Path | None = None,
                  settings: RuntimeSettings | None = None, allow_download: bool = True,
                  progress: bool = True) -> ResolvedModel:
    """Resolve a registry name, a .tflite path, or a file model's name (`file-<sha256[:12]>`); None is the
    registry's default, AUTO that default or else its twin.

    A path whose file name is in the registry is that model; any other .tflite file is a file model, its
    spec read from the file (runtime.file_model) and a copy kept in the cache so that its name resolves
    later (the benchmark's pytest run, the TVM engine finding its library)."""
    settings = settings or get_settings()
    reg = registry()
    if model == AUTO:
        if path is None:
            return _default_or_twin(settings, allow_download, progress)
        model = None  # the file names the model
    if model is not None and (str(model).endswith(".tflite") or Path(model).is_file()):
        path, model = Path(model), None
    if model is not None and is_file_model_name(str(model)):
        return _named_file_model(str(model), path, settings)
    if model is None and path is not None:
        spec = reg.find_by_filename(path.name)
        if spec is None:
            return _file_model(path, settings)
    else:
        spec = reg.get(str(model or reg.default))

    if path is not None:
        if not path.is_file():
            raise ModelNotFoundError(f"model file {path} does not exist")
        return ResolvedModel(spec, path, "explicit")

    if settings.models_dir is not None:
        candidate = Path(settings.models_dir) / spec.filename
        if candidate.is_file():
            _check_sha(candidate, spec, "SELFIE_TVM_MODELS_DIR")
            return ResolvedModel(spec, candidate, "models_dir")

    cached = Path(settings.cache_dir) / spec.filename
    if spec.generator is not None:
        from .twin import TWIN_VERSION

        # Versioned so that a changed generator never serves a stale cached file.
        cached = cached.with_name(f"{spec.name}-v{TWIN_VERSION}.tflite")
        if not cached.is_file():
            _generate(spec, cached)
            return ResolvedModel(spec, cached, "generated")
        return ResolvedModel(spec, cached, "cache")
    if cached.is_file():
        _check_sha(cached, spec, "cache")
        return ResolvedModel(spec, cached, "cache")

    if not allow_download or settings.offline:
        raise ModelNotFoundError(_missing_message(spec, cached, settings))
    try:
        download(spec.url, cached, spec.sha256, timeout_s=settings.download_timeout_s, progress=progress)
    except ModelDownloadError as e:
        raise type(e)(f"{e}.\n{_missing_message(spec, cached, settings)}") from e
    return ResolvedModel(spec, cached, "downloaded")


def _file_model(path: Path, settings: RuntimeSettings) -> ResolvedModel:
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist")
    sha = sha256_of(path)
    spec = spec_from_file(path, sha)
    kept = Path(settings.cache_dir) / spec.filename
    if not kept.is_file() or sha256_of(kept) != sha:
        _atomic_write(kept, path.read_bytes())
    return ResolvedModel(spec, path, "explicit")


def _named_file_model(name: str, path: Path | None, settings: RuntimeSettings) -> ResolvedModel:
    """A file model by name: the given file if it is that model, else the copy kept in the cache."""
    if path is not None:
        resolved = _file_model(path, settings)
        if resolved.spec.name != name:
            raise ModelNotFoundError(f"{path} is model {resolved.spec.name}, not {name}")
        return resolved
    kept = Path(settings.cache_dir) / f"{name}.tflite"
    if not kept.is_file():
        raise ModelNotFoundError(f"model {name} is a .tflite file not seen here before ({kept} is missing); "
                                 "give the file itself with --model-path FILE.tflite")
    sha = sha256_of(kept)
    spec = spec_from_file(kept, sha)
    if spec.name != name:
        raise ChecksumMismatchError(f"{kept} has changed (it is now {spec.name}); delete it and give the file "
                                    "again with --model-path FILE.tflite")
    return ResolvedModel(spec, kept, "cache")


def twin_of(name: str) -> ModelSpec | None:
    """The architecture twin generated for model `name`, if the registry has one."""
    return next((m for m in registry().models.values() if m.twin_of == name), None)


def available_models(settings: RuntimeSettings | None = None) -> list[ResolvedModel]:
    """Every registry model that resolves without a download, in registry order; a twin only when the
    model it stands in for is not available (its kernels would be the same). A model file that is
    there but fails its checksum raises (ChecksumMismatchError) rather than being left out quietly."""
    settings = settings or get_settings()
    specs = registry().models.values()
    found: dict[str, ResolvedModel] = {}
    for spec in sorted(specs, key=lambda s: s.twin_of is not None):  # originals first: a twin may not be needed
        if spec.twin_of is not None and spec.twin_of in found:
            continue
        try:
            found[spec.name] = resolve_model(spec.name, settings=settings, allow_download=False, progress=False)
        except ModelNotFoundError:  # a file that is there but corrupt is an error, not a missing model
            continue
    return [found[spec.name] for spec in specs if spec.name in found]


def _default_or_twin(settings: RuntimeSettings, allow_download: bool, progress: bool) -> ResolvedModel:
    default = registry().default
    try:
        return resolve_model(default, settings=settings, allow_download=allow_download, progress=progress)
    except (ModelNotFoundError, ModelDownloadError) as e:
        twin = twin_of(default)
        if twin is None:
            raise
        print(f"{default} is not available ({str(e).splitlines()[0]}).\nUsing {twin.name} instead: "
              f"{twin.synthetic_notice}", file=sys.stderr, flush=True)
        return resolve_model(twin.name, settings=settings, allow_download=allow_download, progress=progress)


def _missing_message(spec: ModelSpec, cached: Path, settings: RuntimeSettings) -> str:
    where = f"{settings.models_dir}/ or " if settings.models_dir else ""
    hint = ""
    if twin := twin_of(spec.name):
        hint = f" Offline, the architecture twin stands in for latency work: --model {twin.name}."
    return (f"model {spec.name} is not available locally. Download {spec.url} and put it at "
            f"{where}{cached} (or set SELFIE_TVM_MODELS_DIR to a directory holding {spec.filename}).{hint}")
