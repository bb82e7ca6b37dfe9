"""Limits (issue 12, item 1): a body is refused before it is read — without a token (401), or over its route's
limit (413, by its Content-Length, or counted while it streams in). Measured on a real uvicorn in a subprocess:
the body bytes the client managed to send before the answer, the server's resident memory and what its temp
folder held (its TMPDIR is private) while the body was coming.

Before issue 12 a 400 MB chunked upload without a token was spooled to a temp file before the 401, and a
300 MB JSON body raised the server's memory by 900 MB.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.hardening_fixtures import PeakSampler, ServedApp, stream_request
from tests.serve_fixtures import INSPECTOR, PLANNER, TOKENS, analysed_gpkg, patch_ids  # noqa: F401

MB = 1024 * 1024
SENT_BEFORE_ANSWER = 32 * MB  # what loopback socket buffers can take in before the client sees the answer
RSS_GROWTH = 48 * MB


@pytest.fixture(scope="module")
def server(analysed_gpkg, tmp_path_factory):
    work = tmp_path_factory.mktemp("limits")
    store = work / "store.gpkg"
    shutil.copyfile(analysed_gpkg, store)
    app = ServedApp(store, work, TOKENS, max_upload_bytes=1 * MB, max_body_bytes=256 * 1024)
    app.jcbh = patch_ids(store)[0]
    yield app
    app.stop()


MULTIPART = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
             b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff")


def _measured(server, method, path, headers, total, chunked=True):
    base_rss, base_tmp = server.rss(), server.tmp_bytes()
    prefix = MULTIPART if headers.get("Content-Type", "").startswith("multipart/") else b""
    with PeakSampler(server.rss, server.tmp_bytes) as peak:
        status, body, sent = stream_request(server.port, method, path, headers, total, chunked=chunked,
                                            prefix=prefix)
    return status, body, sent, peak.peak - base_rss, peak.peak_tmp - base_tmp


@pytest.mark.slow
@pytest.mark.parametrize("path, ctype", [
    ("/api/patches/{jcbh}/evidence", "multipart/form-data; boundary=xyz"),
    ("/api/patches/{jcbh}/judgement", "application/json"),
    ("/api/review", "application/geo+json"),
    ("/api/selfeval.xlsx?targets=sample", "application/yaml"),
])
def test_a_body_without_a_token_is_refused_unread(server, path, ctype):
    status, body, sent, rss, tmp = _measured(server, "POST", path.format(jcbh=server.jcbh),
                                             {"Content-Type": ctype}, 400 * MB)
    print(f"\nhardening: limits: POST {path} without a token, 400 MB chunked: {status} after {sent / MB:.1f} MB "  # noqa: T201
          f"sent, server memory +{rss / MB:.1f} MB, temp files +{tmp} B")
    assert status == 401, body[:300]
    assert json.loads(body)["code"] == "Unauthorized" and "the body was not read" in json.loads(body)["description"]
    assert sent < SENT_BEFORE_ANSWER, sent
    assert tmp == 0, tmp
    assert rss < RSS_GROWTH, rss


@pytest.mark.slow
@pytest.mark.parametrize("path, ctype, token", [
    ("/api/patches/{jcbh}/judgement", "application/json", INSPECTOR),
    ("/api/review", "application/geo+json", PLANNER),
    ("/api/selfeval.xlsx", "application/yaml", PLANNER),
    ("/api/patches/{jcbh}/evidence", "multipart/form-data; boundary=xyz", INSPECTOR),
])
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_body_over_the_limit_is_cut_at_the_limit(server, path, ctype, token, chunked):
    headers = {"Content-Type": ctype, "Authorization": f"Bearer {token}", "If-Match": '"1"'}
    status, body, sent, rss, tmp = _measured(server, "POST", path.format(jcbh=server.jcbh), headers, 300 * MB,
                                             chunked=chunked)
    print(f"\nhardening: limits: POST {path} with a token, 300 MB {'chunked' if chunked else 'Content-Length'}: "  # noqa: T201
          f"{status} after {sent / MB:.1f} MB sent, server memory +{rss / MB:.1f} MB, temp files +{tmp / MB:.2f} MB")
    assert status == 413, body[:300]
    answer = json.loads(body)
    assert answer["code"] == "PayloadTooLarge"
    assert "the limit is" in answer["description"] or "larger than the limit" in answer["description"]
    assert sent < SENT_BEFORE_ANSWER + (2 * MB if chunked else 0), sent
    assert rss < RSS_GROWTH, rss
    assert tmp <= 1 * MB + 64 * 1024, tmp  # at most one upload's worth, and only on the upload route


@pytest.mark.slow
def test_the_server_still_answers_after_the_refusals(server):
    import httpx

    r = httpx.get(f"{server.base}/api/patches/{server.jcbh}", headers={"Authorization": f"Bearer {PLANNER}"})
    assert r.status_code == 200 and r.json()["JCBH"] == server.jcbh
    assert "Traceback" not in server.log_text()
