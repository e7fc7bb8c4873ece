"""Plain helpers for the service tests: drawings, encodings, requests, a live uvicorn server."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen

import httpx
import pytest
from PIL import Image, ImageDraw

from gunmatch.state import open_state

# label -> (threat, category, drawing)
LABELS = {
    "pistol_slide": (True, "slide", "slide"),
    "barrel": (True, "barrel", "barrel"),
    "spanner": (False, "benign", "spanner"),
    "umbrella": (False, "benign", "umbrella"),
}


def draw(kind: str, variant: int, size: int = 96) -> Image.Image:
    """A simple, distinct drawing per kind; variants shift and scale it a little."""
    img = Image.new("RGB", (size, size), (235, 235, 235))
    d = ImageDraw.Draw(img)
    o = variant * 3
    if kind == "slide":
        d.rectangle((8 + o, 30, 88 - o, 52), fill=(40, 40, 45))
        d.rectangle((60, 52, 76, 84 - o), fill=(60, 60, 60))
    elif kind == "barrel":
        d.rectangle((4, 44 + o, 92, 54 + o), fill=(90, 90, 100))
        d.ellipse((84, 42 + o, 94, 56 + o), fill=(20, 20, 20))
    elif kind == "spanner":
        d.ellipse((6 + o, 6 + o, 34 + o, 34 + o), outline=(150, 80, 20), width=6)
        d.line((28, 28, 86 - o, 86 - o), fill=(150, 80, 20), width=9)
    else:
        d.pieslice((10, 10 + o, 86, 70 + o), 180, 360, fill=(30, 90, 200))
        d.line((48, 40, 48, 90), fill=(30, 30, 30), width=4)
    return img


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    """Encode an image."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def hdr(key: str) -> dict[str, str]:
    """The auth header."""
    return {"X-API-Key": key}


def create_keys(gallery: Path, *roles: str, name: str = "{role} key") -> dict[str, str]:
    """A new API key per role in the gallery's state, wherever it lives (state.sqlite or the
    shared gallery's PostgreSQL schema): {role: key}."""
    state = open_state(gallery)
    try:
        return {r: state.keys.create(name.format(role=r), r)[1] for r in roles}
    finally:
        state.close()


def search(client, key: str, data: bytes, name: str = "q.png", **form):
    """POST one image to /v1/search."""
    return client.post("/v1/search", files={"image": (name, data)}, data=form, headers=hdr(key))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(gallery: Path, log_level: str = "warning", **env: str) -> tuple[str, Popen]:
    """`gunmatch serve GALLERY` in a real uvicorn process on a free port, not waited for."""
    port = _free_port()
    environ = {**os.environ, "GUNMATCH_THREADS": "1", **env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunmatch.cli", "serve", "--gallery", str(gallery),
         "--port", str(port), "--log-level", log_level],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environ, text=True,
    )  # fmt: skip
    return f"http://127.0.0.1:{port}", proc


def wait_ready(url: str, proc: Popen, timeout: float = 120) -> dict:
    """Poll /readyz until the service answers 200 (its body), failing the test otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"gunmatch serve exited early:\n{proc.stdout.read()}")
        try:
            r = httpx.get(f"{url}/readyz", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not become ready in {timeout} s")
        time.sleep(0.2)


def stop(proc: Popen) -> None:
    """Terminate a service process (kill it after 15 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def serve(gallery: Path, log_level: str = "warning") -> Iterator[tuple[str, object]]:
    """`gunmatch serve GALLERY` in a real uvicorn process on a free port: (url, process)."""
    url, proc = start_serve(gallery, log_level)
    try:
        wait_ready(url, proc, 90)
        yield url, proc
    finally:
        stop(proc)


def endless_body(
    url: str,
    path: str,
    headers: dict[str, str],
    prefix: bytes = b"",
    cap: int = 96_000_000,
    seconds: float = 20.0,
) -> dict:
    """POST a chunked body that never ends (raw socket) and watch what the server does.

    Returns ``status`` (the answer's status code, None if none came), ``sent_before_answer``
    (body bytes the client had pushed when the answer arrived) and ``closed`` (the server
    closed the connection after answering). The body starts with ``prefix`` (e.g. a multipart
    part header), then zeros; the client stops at ``cap`` bytes or ``seconds``.
    """
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Transfer-Encoding: chunked"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    if prefix:
        sock.sendall(b"%x\r\n" % len(prefix) + prefix + b"\r\n")
    chunk = b"%x\r\n" % 65536 + b"\0" * 65536 + b"\r\n"
    state = {"sent": 0, "stop": False}

    def pump() -> None:
        deadline = time.monotonic() + seconds
        while not state["stop"] and state["sent"] < cap and time.monotonic() < deadline:
            try:
                sock.sendall(chunk)
            except OSError:
                return
            state["sent"] += 65536

    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    out = {"status": None, "sent_before_answer": None, "closed": False}
    data = b""
    deadline = time.monotonic() + seconds + 5
    sock.settimeout(0.5)
    try:
        while time.monotonic() < deadline:
            try:
                got = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # reset by the server after its answer
                out["closed"] = out["status"] is not None
                break
            if not got:
                out["closed"] = out["status"] is not None
                break
            data += got
            if out["status"] is None and b"\r\n" in data:
                out["status"] = int(data.split(b" ", 2)[1])
                out["sent_before_answer"] = state["sent"]
    finally:
        state["stop"] = True
        sender.join(timeout=10)
        sock.close()
    return out
