"""The web page in a real headless Chromium (Debian's /usr/bin/chromium, driven by the playwright package):
the map loads, the flagged patches are drawn, a judgement made in the page is stored and audited, the
Chinese text renders in Noto Sans CJK, and nothing is fetched from outside the app. Writes docs/img/map.png."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.ogc_fixtures import free_port
from tests.serve_fixtures import INSPECTOR, PLANNER, TOKENS, analysed_gpkg, bearer, settings_for  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "services" / "web"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]


class Server:
    def __init__(self, settings):
        import uvicorn

        from services.app import create_app

        self.port = settings.base_url.rsplit(":", 1)[1]
        self.root = settings.base_url
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=int(self.port), log_level="warning")
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(analysed_gpkg, tmp_path_factory):
    folder = tmp_path_factory.mktemp("web")
    store = folder / "store.gpkg"
    shutil.copyfile(analysed_gpkg, store)
    port = free_port()
    s = Server(settings_for(store, folder, base_url=f"http://127.0.0.1:{port}"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_assets_come_from_npm_with_a_lockfile():
    pkg = json.loads((WEB / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((WEB / "package-lock.json").read_text(encoding="utf-8"))
    assert set(pkg["dependencies"]) == {"leaflet", "chart.js"}
    for name, version in pkg["dependencies"].items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
        assert lock["packages"][f"node_modules/{name}"]["integrity"].startswith("sha512-")
    assert (WEB / "node_modules" / "leaflet" / "dist" / "leaflet.js").is_file(), "run scripts/setup.sh (npm ci)"
    # none of the third-party code is committed next to our own files
    ours = sorted(p.name for p in (WEB / "static").iterdir())
    assert ours == ["api.html", "common.js", "index.html", "indicators.html", "indicators.js", "map.js", "style.css"]


def test_our_pages_name_no_external_url():
    for path in (WEB / "static").iterdir():
        text = path.read_text(encoding="utf-8")
        urls = [u for u in re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'<>)]*", text)
                if "opengis.net" not in u]
        assert urls == [], f"{path.name} names {urls}"


@pytest.mark.slow
def test_map_page_judgement_is_stored_and_audited(server, browser):
    outside: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    page.on("request", lambda req: outside.append(req.url)
            if not (req.url.startswith(server.root + "/") or req.url.startswith("data:")) else None)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(server.root + "/")
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)
    # without a token the inbox asks to log in
    assert "请先输入访问令牌" in page.inner_text("#list")
    page.fill("#token", INSPECTOR)
    page.click("#login button")
    page.wait_for_function("Number(document.body.dataset.patchesDrawn) === 35", timeout=30_000)
    assert page.inner_text("#who") == "张三（inspector）"
    assert page.locator("path.yzt-patch").count() == 35
    assert page.locator("path.yzt-patch[data-verdict='suspected_illegal']").count() == \
        httpx.get(f"{server.root}/api/patches?verdict=suspected_illegal", headers=bearer(PLANNER)).json()["total"]
    page.wait_for_selector(".yzt-layer-xzq", state="attached", timeout=30_000)  # a store layer from the OGC API

    target = "130599202410005"
    page.locator(f"path.yzt-patch[data-jcbh='{target}']").click(force=True)
    page.wait_for_selector("#judge-form", timeout=30_000)
    assert page.inner_text("#detail h2") == f"图斑 {target}"
    page.check("input[name=judgement][value='违法']")
    page.fill("#judge-form textarea", "现场核查：新建厂房，无用地批准手续")
    page.click("#judge-submit")
    page.wait_for_function("document.getElementById('message').textContent.includes('已记录认定')", timeout=30_000)
    assert page.inner_text("#d-status") == "已核查"
    assert page.get_attribute(f"path.yzt-patch[data-jcbh='{target}']", "data-status") == "已核查"

    # stored …
    detail = httpx.get(f"{server.root}/api/patches/{target}", headers=bearer(PLANNER))
    assert detail.headers["etag"] == '"2"'
    w = detail.json()["workflow"]
    assert (w["status"], w["judgement"], w["updated_by"], w["note"]) == \
        ("已核查", "违法", "张三", "现场核查：新建厂房，无用地批准手续")
    # … and audited, with the user
    audit = httpx.get(f"{server.root}/api/audit?jcbh={target}", headers=bearer(PLANNER)).json()
    assert audit["total"] == 1
    row = audit["items"][0]
    assert (row["user"], row["role"], row["action"], row["from_status"], row["to_status"], row["to_judgement"]) == \
        ("张三", "inspector", "judgement", "待核查", "已核查", "违法")
    assert page.locator("#history li").count() == 1

    # Chinese renders with a CJK font (not tofu): ask Chromium which platform font drew the title
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    doc = cdp.send("DOM.getDocument")
    for selector in ("header.top h1", "#detail h3"):
        node = cdp.send("DOM.querySelector", {"nodeId": doc["root"]["nodeId"], "selector": selector})
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})["fonts"]
        assert fonts and all("Noto Sans CJK" in f["familyName"] for f in fonts), fonts
    title_width = page.evaluate("document.querySelector('header.top h1').getBoundingClientRect().width")
    assert title_width > 150  # 11 glyphs, not collapsed

    # the README's screenshot: the judged patch among the survey patches and the farmland, the panel on top
    page.evaluate("map.setZoom(16)")
    for title in ("地类图斑", "永久基本农田"):
        page.get_by_label(title).check()
    page.wait_for_selector(".yzt-layer-dltb", state="attached", timeout=30_000)
    page.wait_for_timeout(500)
    page.evaluate("document.getElementById('panel').scrollTop = 0")
    shot = ROOT / "docs" / "img" / "map.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000
    assert errors == []
    assert outside == [], f"requests left the app: {outside}"
    page.close()


@pytest.mark.slow
def test_indicators_page_draws_tables_and_chart(server, browser):
    from services.jobs import indicators as svc

    svc.run_indicators(server.server.config.app.state.patch_book.store)
    outside: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("request", lambda req: outside.append(req.url)
            if not (req.url.startswith(server.root + "/") or req.url.startswith("data:")) else None)
    page.goto(server.root + "/indicators.html")
    page.fill("#token", PLANNER)
    page.click("#login button")
    page.wait_for_selector("table.grid td.num", timeout=30_000)
    assert page.locator("table.grid").first.locator("tbody tr").count() == 6  # 6 乡镇
    assert page.evaluate("Chart.getChart(document.getElementById('chart')).data.labels.length") == 6
    page.locator("table.grid td.num").first.click()
    page.wait_for_function("document.getElementById('drilldown').textContent.includes('dltb')", timeout=30_000)
    page.wait_for_selector("#selfeval table")
    assert "总得分" in page.inner_text("#selfeval")
    assert outside == []
    page.close()
