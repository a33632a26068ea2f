"""Model resolution order and the download path, against a local HTTP server started here."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from runtime import acquire
from runtime.acquire import available_models, download, resolve_model
from runtime.errors import ChecksumMismatchError, ModelDownloadError, ModelFileError, ModelNotFoundError
from runtime.registry import registry
from runtime.settings import RuntimeSettings

from .conftest import need_model

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path == "/model.tflite":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/truncated.tflite":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.send_error(404)


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_download_success(server, tmp_path):
    dest = download(f"{server}/model.tflite", tmp_path / "m.tflite", PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert list(tmp_path.iterdir()) == [dest]  # no temporary files left behind


def test_download_checksum_mismatch_saves_nothing(server, tmp_path):
    with pytest.raises(ChecksumMismatchError, match="expected 0000"):
        download(f"{server}/model.tflite", tmp_path / "m.tflite", "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_truncated(server, tmp_path):
    with pytest.raises(ModelDownloadError):
        download(f"{server}/truncated.tflite", tmp_path / "m.tflite", PAYLOAD_SHA, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_server_down(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/model.tflite"
    with pytest.raises(ModelDownloadError, match="could not download"):
        download(url, tmp_path / "m.tflite", PAYLOAD_SHA, timeout_s=5, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_not_found(server, tmp_path):
    with pytest.raises(ModelDownloadError, match="404"):
        download(f"{server}/missing.tflite", tmp_path / "m.tflite", None, progress=False)


@pytest.fixture
def fake_spec(server, monkeypatch):
    """Register the download URL of the local server under the main model's name."""
    reg = registry()
    spec = dataclasses.replace(reg.get("selfie_multiclass_256x256"), url=f"{server}/model.tflite",
                               sha256=PAYLOAD_SHA)
    patched = dataclasses.replace(reg, models={**reg.models, spec.name: spec})
    monkeypatch.setattr(acquire, "registry", lambda: patched)
    return spec


def test_resolve_downloads_into_cache_then_reuses_it(fake_spec, tmp_path):
    settings = RuntimeSettings(models_dir=None, cache_dir=tmp_path / "cache")
    first = resolve_model(fake_spec.name, settings=settings, progress=False)
    assert first.source == "downloaded" and first.path.read_bytes() == PAYLOAD
    second = resolve_model(fake_spec.name, settings=settings, progress=False)
    assert second.source == "cache" and second.path == first.path


def test_resolve_prefers_models_dir_over_cache(fake_spec, tmp_path):
    models_dir, cache = tmp_path / "models", tmp_path / "cache"
    for d in (models_dir, cache):
        d.mkdir()
        (d / fake_spec.filename).write_bytes(PAYLOAD)
    settings = RuntimeSettings(models_dir=models_dir, cache_dir=cache)
    assert resolve_model(fake_spec.name, settings=settings).source == "models_dir"


def test_resolve_explicit_path_wins(fake_spec, tmp_path):
    explicit = tmp_path / "selfie_multiclass_256x256.tflite"
    explicit.write_bytes(b"anything")
    resolved = resolve_model(explicit, settings=RuntimeSettings(cache_dir=tmp_path / "c"))
    assert resolved.source == "explicit" and resolved.spec.name == fake_spec.name


def test_resolve_rejects_corrupt_cached_file(fake_spec, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / fake_spec.filename).write_bytes(b"corrupt")
    with pytest.raises(ChecksumMismatchError, match="corrupt or a different version"):
        resolve_model(fake_spec.name, settings=RuntimeSettings(models_dir=None, cache_dir=cache))


def test_offline_error_names_url_and_destination(tmp_path):
    settings = RuntimeSettings(models_dir=tmp_path, cache_dir=tmp_path / "cache", offline=True)
    spec = registry().get("selfie_multiclass_256x256")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model(spec.name, settings=settings)
    message = str(err.value)
    assert spec.url in message and str(tmp_path / "cache" / spec.filename) in message
    assert "selfie_multiclass_twin" in message


def test_download_failure_through_resolve_keeps_instructions(fake_spec, tmp_path, monkeypatch):
    spec = dataclasses.replace(fake_spec, url=f"http://127.0.0.1:{_closed_port()}/x.tflite")
    reg = acquire.registry()
    patched = dataclasses.replace(reg, models={**reg.models, spec.name: spec})
    monkeypatch.setattr(acquire, "registry", lambda: patched)
    with pytest.raises(ModelDownloadError, match="SELFIE_TVM_MODELS_DIR"):
        resolve_model(spec.name, settings=RuntimeSettings(models_dir=None, cache_dir=tmp_path),
                      progress=False)


def test_available_models_are_those_needing_no_download(fake_spec, tmp_path):
    """The twin stands in only while its original is missing; nothing is downloaded to find out."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "deeplab_v3.tflite").symlink_to(need_model("deeplab_v3"))
    offline = RuntimeSettings(models_dir=models_dir, cache_dir=tmp_path / "cache", offline=True)
    assert [m.spec.name for m in available_models(offline)] == ["selfie_multiclass_twin", "deeplab_v3"]
    (models_dir / fake_spec.filename).write_bytes(PAYLOAD)
    names = [m.spec.name for m in available_models(offline)]
    assert names == ["selfie_multiclass_256x256", "deeplab_v3"]
    (models_dir / "selfie_segmenter.tflite").write_bytes(b"corrupt")  # there, but not the model: say so
    with pytest.raises(ChecksumMismatchError, match="selfie_segmenter"):
        available_models(offline)


def test_twin_is_generated_then_cached(tmp_path):
    settings = RuntimeSettings(models_dir=None, cache_dir=tmp_path)
    first = resolve_model("selfie_multiclass_twin", settings=settings)
    second = resolve_model("selfie_multiclass_twin", settings=settings)
    assert (first.source, second.source) == ("generated", "cache")
    assert first.path == second.path and first.path.stat().st_size > 16_000_000


def test_unknown_model_lists_known_ones():
    with pytest.raises(Exception, match="known models: .*deeplab_v3"):
        resolve_model("nope")


def test_unregistered_file_that_is_not_tflite_is_refused(tmp_path: Path):
    """A file not in the registry is read as a model of its own (tests/test_file_model.py); junk says so."""
    f = tmp_path / "whatever.tflite"
    f.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="whatever.tflite is not a TFLite model file"):
        resolve_model(f, settings=RuntimeSettings(models_dir=None, cache_dir=tmp_path / "cache"))
