"""Model registry: pins, cache, pull from a folder/file and over HTTP (a local server on 127.0.0.1)."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.cli import main
from edge_sdk.contract.card import sidecar_path
from edge_sdk.errors import ArtifactError, InputError
from edge_sdk.models_registry import (
    REGISTRY,
    cache_dir,
    digest_file,
    find_pulled_model,
    git_blob_sha1_file,
    model_path,
    pull,
)
from tests.model_factory import build_packed_onnx

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
YUNET_DIR = SHARED / "models" / "yunet"
YUNET_FILE = YUNET_DIR / "yunet_s_640_640.onnx"
FAST = {"attempts": 3, "backoff_s": 0.0, "timeout_s": 5.0}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_HOME", str(tmp_path / "home"))
    assert YUNET_FILE.is_file(), f"test data missing: {YUNET_FILE} (the ../shared folder beside the repo)"


# ---- a small HTTP server ---------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files[path] = (bytes, mode)``; mode: ok | truncate | truncate_once | 404."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 (http.server API)
        self.server.requests.append((self.path, self.headers.get("Range")))
        body, mode = self.server.files.get(self.path, (b"", "404"))
        if mode == "404":
            self.send_error(404, "Not Found")
            return
        start = 0
        if self.headers.get("Range", "").startswith("bytes=") and mode != "truncate":
            start = int(self.headers["Range"][6:].split("-")[0])
        chunk = body[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if mode == "truncate" or (mode == "truncate_once" and not self.server.truncated_once):
            self.server.truncated_once = True
            self.wfile.write(chunk[: len(chunk) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.truncated_once = {}, [], False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _leftovers() -> list[str]:
    root = cache_dir() / "models"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _serve_yunet(server, mode: str, body: bytes | None = None) -> dict:
    server.files["/yunet.onnx"] = (YUNET_FILE.read_bytes() if body is None else body, mode)
    return {"yunet": replace(REGISTRY["yunet"], url=f"{server.url}/yunet.onnx")}


# ---- hashes and cache location -----------------------------------------------------------------------
def test_git_blob_id_matches_git_hash_object():
    expected = subprocess.run(["git", "hash-object", str(YUNET_FILE)], capture_output=True, text=True, check=True)
    assert git_blob_sha1_file(YUNET_FILE) == expected.stdout.strip()
    assert digest_file(YUNET_FILE).sha256 == REGISTRY["yunet"].sha256


def test_cache_dir_order(monkeypatch, tmp_path):
    assert cache_dir() == tmp_path / "home"
    monkeypatch.delenv("EDGE_SDK_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "edge-sdk"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cache_dir() == tmp_path / "user" / ".cache" / "edge-sdk"


def test_registry_rows_are_pinned_and_licensed():
    for entry in REGISTRY.values():
        assert entry.sha256 or entry.git_blob_sha1
        assert entry.license in ("MIT", "Apache-2.0")
        if entry.kind == "face_model":
            assert entry.card is not None and not entry.card.has_pain  # no AU heads, no pain score
            assert entry.card.head("expression").columns == (0, 8)
            assert entry.card.head("valence_arousal").clamp == (-1.0, 1.0)
    assert REGISTRY["hsemotion-enet-b0-va"].card.input.height == 224
    assert REGISTRY["hsemotion-mbf-va"].card.input.height == 112


# ---- pull from a local folder or file (air-gapped provisioning) ---------------------------------------
def test_pull_yunet_from_folder_then_find_by_name(capsys):
    assert find_pulled_model("yunet") is None
    assert main(["models", "pull", "yunet", "--from", str(YUNET_DIR)]) == 0
    assert "verified by sha256" in capsys.readouterr().out
    path = find_pulled_model("yunet")
    assert path == model_path(REGISTRY["yunet"]) and path.name == "face_detection_yunet_2023mar.onnx"
    assert digest_file(path).sha256 == REGISTRY["yunet"].sha256
    manifest = json.loads((path.parent / "pulled.json").read_text())
    assert manifest["source"] == str(YUNET_FILE.resolve())
    assert main(["models", "path", "yunet"]) == 0
    assert capsys.readouterr().out.strip() == str(path)


def test_pull_from_file_and_tampering_is_detected():
    pull("yunet", source=YUNET_FILE)
    path = find_pulled_model("yunet")
    with open(path, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(ArtifactError, match="does not match the pinned"):
        find_pulled_model("yunet")


def test_pull_from_folder_without_the_model_fails_clearly(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.onnx").write_bytes(b"not yunet")
    with pytest.raises(ArtifactError, match=r"no \.onnx file there matches 'yunet'.*x\.onnx"):
        pull("yunet", source=other)
    assert _leftovers() == []


def test_unknown_name_and_unpulled_path(capsys):
    with pytest.raises(InputError, match="unknown model 'nope'"):
        pull("nope", source=YUNET_DIR)
    assert main(["models", "path", "hsemotion-mbf-va"]) == 1
    assert "edge-sdk models pull hsemotion-mbf-va" in capsys.readouterr().err


# ---- pull over HTTP ----------------------------------------------------------------------------------
def test_http_download_verified(server):
    result = pull("yunet", registry=_serve_yunet(server, "ok"), **FAST)
    assert result.manifest.verified_by == "sha256" and result.path.is_file()
    assert _leftovers() == ["yunet", "yunet/face_detection_yunet_2023mar.onnx", "yunet/pulled.json"]


def test_http_wrong_hash_leaves_nothing(server):
    registry = _serve_yunet(server, "ok", body=b"x" * 5000)
    with pytest.raises(ArtifactError, match="not the registry's 'yunet': sha256 is"):
        pull("yunet", registry=registry, **FAST)
    assert _leftovers() == []


def test_http_404_is_final_and_clear(server):
    registry = {"yunet": replace(REGISTRY["yunet"], url=f"{server.url}/missing.onnx")}
    with pytest.raises(ArtifactError, match=r"HTTP 404 Not Found.*nothing was saved.*--from DIR"):
        pull("yunet", registry=registry, **FAST)
    assert len(server.requests) == 1  # 404 is not retried
    assert _leftovers() == []


def test_http_truncated_every_time_fails_and_leaves_nothing(server):
    with pytest.raises(ArtifactError, match=r"truncated transfer: got \d+ of \d+ bytes \(after 3 attempts\)"):
        pull("yunet", registry=_serve_yunet(server, "truncate"), **FAST)
    assert len(server.requests) == 3
    assert _leftovers() == []


def test_http_truncated_once_resumes_with_range(server):
    result = pull("yunet", registry=_serve_yunet(server, "truncate_once"), **FAST)
    assert digest_file(result.path).sha256 == REGISTRY["yunet"].sha256
    (first, first_range), (_, resume_range) = server.requests
    assert first_range is None and resume_range == f"bytes={YUNET_FILE.stat().st_size // 2}-"


def test_http_connection_refused_is_retried_then_clear(server):
    registry = {"yunet": replace(REGISTRY["yunet"], url="http://127.0.0.1:9/yunet.onnx")}
    with pytest.raises(ArtifactError, match=r"cannot connect .*after 3 attempts"):
        pull("yunet", registry=registry, **FAST)
    assert _leftovers() == []


# ---- a face model with a hand-written card (an HSEmotion-shaped stand-in from tests/model_factory) -------
def test_face_model_pull_writes_checked_card_and_runs_by_name(server, tmp_path, monkeypatch):
    from edge_sdk.model.face_model import FaceModel

    fake = tmp_path / "enet_b0_8_va_mtl.onnx"
    build_packed_onnx(fake, size=224)  # output "logits", not the card's guess "output": the pull must fix the card
    server.files["/enet.onnx"] = (fake.read_bytes(), "ok")
    entry = replace(
        REGISTRY["hsemotion-enet-b0-va"], git_blob_sha1=git_blob_sha1_file(fake), url=f"{server.url}/enet.onnx"
    )
    monkeypatch.setitem(REGISTRY, entry.name, entry)  # the real row pins the real file's blob id

    result = pull(entry.name, **FAST)
    assert result.manifest.verified_by == "git blob"
    assert any("'output' -> 'logits'" in n for n in result.notes)
    assert any(result.manifest.sha256 in n and "pin it" in n for n in result.notes)
    card = json.loads(sidecar_path(result.path).read_text())
    assert card["files"] == {"enet_b0_8_va_mtl.onnx": digest_file(fake).sha256}

    model = FaceModel("hsemotion-enet-b0-va")  # resolved through find_pulled_model
    crop = np.random.default_rng(1).integers(0, 255, (150, 130, 3), dtype=np.uint8)
    out = model.predict([crop, crop])
    assert set(out) == {"expression", "valence_arousal"}  # no AU heads, so no pspi
    np.testing.assert_allclose(out["expression"].sum(axis=1), 1.0, rtol=1e-5)
    assert out["valence_arousal"].shape == (2, 2) and np.all(np.abs(out["valence_arousal"]) <= 1.0)


def test_face_model_with_wrong_input_size_is_rejected(tmp_path, monkeypatch):
    fake = tmp_path / "mbf_va_mtl.onnx"
    build_packed_onnx(fake, size=224)  # 224x224, but the mbf card says 112x112
    entry = replace(REGISTRY["hsemotion-mbf-va"], git_blob_sha1=git_blob_sha1_file(fake))
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    with pytest.raises(ArtifactError, match=r"the card expects \[112, 112\]"):
        pull(entry.name, source=fake)
    assert _leftovers() == []
