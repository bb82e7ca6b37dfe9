"""`yzt serve`: options, one-line errors, and a real server process on the embedded store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from services.cli import cli
from tests.ogc_fixtures import free_port
from tests.serve_fixtures import analysed_gpkg  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_the_options():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--store", "--host", "--port", "--tokens-file", "--anonymous-read", "--evidence-dir"):
        assert option in result.output


@pytest.mark.parametrize("args, words", [
    (["serve", "--store", "nowhere/store.txt"], "is not a GeoPackage path or a PostGIS URL"),
    (["serve", "--store", "ftp://x/y"], "unsupported URL scheme"),
])
def test_bad_store_is_one_line_exit_2(args, words):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert words in result.output and "Traceback" not in result.output


def test_bad_tokens_file_is_one_line_exit_2(analysed_gpkg, tmp_path):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("abcdefgh1234: {user: x, role: superuser}\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["serve", "--store", str(analysed_gpkg), "--tokens-file", str(tokens),
                                      "--port", str(free_port())])
    assert result.exit_code == 2
    assert "role 'superuser'" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_serve_runs_the_app(analysed_gpkg, tmp_path):
    store = tmp_path / "store.gpkg"
    shutil.copyfile(analysed_gpkg, store)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("plan-cli-0123456: {user: 李四, role: planner}\n", encoding="utf-8")
    port = free_port()
    env = {**os.environ, "YZT_WORKDIR": str(tmp_path / "work"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "serve", "--store", str(store), "--port",
                             str(port), "--tokens-file", str(tokens), "--evidence-dir", str(tmp_path / "ev"),
                             "--log-level", "warning"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/api/config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "yzt serve did not answer"
            time.sleep(0.3)
        assert httpx.get(f"{base}/api/patches?limit=1").status_code == 401
        r = httpx.get(f"{base}/api/patches?limit=1", headers={"X-API-Key": "plan-cli-0123456"})
        assert r.status_code == 200 and r.json()["total"] == 50
        assert httpx.get(f"{base}/ogc/collections/xzq/items?f=json&limit=1").status_code == 200
        assert "图斑核查工作台" in httpx.get(f"{base}/").text
        assert httpx.get(f"{base}/vendor/maplibre-gl/maplibre-gl.mjs").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
