"""Fixtures of the hardening suites (issue 12): the app served by a real uvicorn in a subprocess, its memory
and temp folder measured, and a raw HTTP client that streams a body and stops as soon as the server answers.

- ``ServedApp(store, tmp_path, tokens=…, **settings)``: ``uvicorn --factory services.app:create_app`` on a free
  127.0.0.1 port with YZT_* settings and its own TMPDIR (``.tmp``), so temp files it spools can be measured;
  ``rss()`` its resident memory, ``tmp_bytes()`` what its temp folder holds, ``log_text()`` its log.
- ``stream_request(port, method, path, headers, total, chunked)``: send headers, then up to ``total`` body bytes
  in 64 KiB pieces, checking before each piece whether the server has answered; (status, body, bytes sent).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.ogc_fixtures import free_port

ROOT = Path(__file__).resolve().parent.parent


class ServedApp:
    def __init__(self, store, workdir: Path, tokens: dict, **settings):
        import psutil

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(workdir)
        self.tmp = self.workdir / ".tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "YZT_STORE": str(store), "YZT_BASE_URL": self.base, "YZT_WORKDIR": str(self.workdir),
               "YZT_EVIDENCE_DIR": str(self.workdir / "evidence"), "YZT_TOKENS": json.dumps(tokens),
               "PYTHONPATH": str(ROOT), "TMPDIR": str(self.tmp)}
        for key, value in settings.items():
            env[f"YZT_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        self.log_path = self.workdir / "uvicorn.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - the child's log, open while it runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "services.app:create_app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"], env=env, cwd=ROOT, stdout=self._log,
            stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.base + "/api/config", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the app did not start; see {self.log_path}:\n{self.log_text()[-2000:]}")
            time.sleep(0.2)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def tmp_bytes(self) -> int:
        total = 0
        for root, _, files in os.walk(self.tmp):
            for f in files:
                with contextlib.suppress(OSError):  # a spooled file removed while we look
                    total += os.path.getsize(os.path.join(root, f))
        return total

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


class PeakSampler:
    """The largest value of ``fn()`` sampled every 20 ms while the block runs (and the values of ``tmp()``)."""

    def __init__(self, fn, tmp=None):
        self.fn, self.tmp = fn, tmp
        self.peak = fn()
        self.peak_tmp = tmp() if tmp else 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.fn())
                if self.tmp:
                    self.peak_tmp = max(self.peak_tmp, self.tmp())
            except Exception:
                return
            time.sleep(0.02)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _read_response(sock: socket.socket, timeout: float = 30) -> tuple[int, bytes]:
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), None)
                if length is not None and len(body) >= length:
                    break
    except (ConnectionResetError, TimeoutError, OSError):
        pass
    if not data:
        return 0, b""
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def stream_request(port: int, method: str, path: str, headers: dict[str, str], total: int,
                   chunked: bool = True, piece: int = 64 * 1024, prefix: bytes = b"") -> tuple[int, bytes, int]:
    """Send a request whose body is ``prefix`` then b"0" up to ``total`` bytes (chunked, or with
    Content-Length), stopping as soon as the server answers; (status, response body, body bytes sent).
    Status 0: no answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
                 *(f"{k}: {v}" for k, v in headers.items())]
        lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        if prefix:
            sock.sendall(f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n" if chunked else prefix)
        data = b"0" * piece
        framed = f"{piece:x}\r\n".encode() + data + b"\r\n" if chunked else data
        sent = 0
        sock.settimeout(10)
        try:
            while sent < total:
                ready, _, _ = select.select([sock], [], [], 0)
                if ready:
                    break
                sock.sendall(framed)
                sent += piece
            else:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        status, body = _read_response(sock)
        return status, body, sent
    finally:
        sock.close()
