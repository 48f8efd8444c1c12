"""Fixtures for the data tests: synthetic brightfield images, a pyramidal TIFF, and a loopback HTTP server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BACKGROUND = (243, 242, 244)  # bright grey glass (S ~0.01, like the SVS and IHC glass)
TISSUE = (196, 110, 170)  # H&E-like pink/purple


def brightfield(h: int, w: int, tissue: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """White-ish glass with pink tissue where ``tissue`` is True, plus texture and sensor noise."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[:] = BACKGROUND
    if tissue is not None:
        tex = rng.normal(0, 18, (h, w, 1)).astype(np.float32)  # nuclei/stroma texture inside tissue
        img = np.where(tissue[..., None], np.asarray(TISSUE, np.float32) + tex, img)
    img += rng.normal(0, 2, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def disk_mask(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def save_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def write_pyramid_tiff(path: Path, base: np.ndarray, levels: int = 3, tile: int = 128) -> list[np.ndarray]:
    """A tiled pyramidal TIFF OpenSlide reads as a multi-level generic-tiff: chained pages (not SubIFDs),
    each reduced page marked ``subfiletype=1``. Returns the arrays of every level (2x mean pooling)."""
    import tifffile

    arrays = [base]
    for _ in range(1, levels):
        a = arrays[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        a = a[:h, :w].astype(np.float32)
        arrays.append(((a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) / 4 + 0.5).astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path) as tw:
        for i, a in enumerate(arrays):
            tw.write(a, tile=(tile, tile), photometric="rgb", compression="zlib", subfiletype=1 if i else 0, resolution=(40000, 40000), resolutionunit="CENTIMETER")
    return arrays


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    log: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802
        self.log.append((self.path, self.headers.get("Range")))
        data = self.files.get(self.path.split("?")[0])
        if data is None:
            self.send_error(404, "not found")
            return
        rng = self.headers.get("Range")
        start = 0
        if rng and rng.startswith("bytes=") and self.server.honour_range:  # type: ignore[attr-defined]
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


class LocalServer:
    """A real HTTP server on 127.0.0.1 serving in-memory files; ``requests`` lists (path, Range header)."""

    def __init__(self):
        handler = type("Handler", (_Handler,), {"files": {}, "log": []})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.honour_range = True  # type: ignore[attr-defined]
        self.handler = handler
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        return self.handler.log

    def add(self, path: str, data: bytes) -> str:
        self.handler.files[path] = data
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server():
    s = LocalServer()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def helpers():
    class H:
        pass

    h = H()
    h.brightfield = brightfield
    h.disk_mask = disk_mask
    h.save_png = save_png
    h.write_pyramid_tiff = write_pyramid_tiff
    return h
