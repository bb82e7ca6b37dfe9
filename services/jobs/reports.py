"""Printable PDFs: the 卫片图斑实地核查表 of one patch, the batch of a round, and the 合规性审查 result.

A 核查表 holds what an inspector files for a patch: the header fields (监测编号, location, area, round and
sources, image dates), a location map (the patch over the 三调 colours of the current DLTB, approvals), the
before / after image clips, the overlay breakdown, the approvals, the pre-judgement and its reason, the judgements
and status history (audit log), and the evidence photos with time, position, azimuth, distance to the patch and
any flags (services/jobs/evidence.py). Fonts: Noto Sans CJK SC (Debian fonts-noto-cjk), embedded as a subset.
Maps and image clips are drawn with matplotlib.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import numpy as np
import shapely

from .colors import color_of
from .evidence import check_evidence

VERDICT_COLOR = {"legal": "#1a9850", "partly_approved": "#fdae61", "suspected_illegal": "#d73027", "other": "#74add1"}
MU = 2000.0 / 3.0


def _font_path() -> tuple[str, int]:
    from .glyphs import font_file

    return font_file()


def _m2(v) -> str:
    if v is None:
        return "—"
    return f"{float(v):,.2f}"


def _mu(v) -> str:
    return "—" if v is None else f"{float(v) / MU:,.2f}"


class Pdf:
    """fpdf2 with the CJK font registered and a few layout helpers."""

    def __init__(self, title: str):
        from fpdf import FPDF

        self.pdf = FPDF(orientation="P", unit="mm", format="A4")
        path, index = _font_path()
        self.pdf.add_font("cjk", "", path, collection_font_number=index)
        bold = path.replace("Regular", "Bold")
        self.pdf.add_font("cjk", "B", bold if Path(bold).is_file() else path, collection_font_number=index)
        self.pdf.set_auto_page_break(True, margin=14)
        self.pdf.set_margins(14, 14, 14)
        self.pdf.set_title(title)
        self.pdf.set_creator("yizhangtu 一张图")
        self.title = title
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        pdf = self.pdf

        def footer():
            pdf.set_y(-10)
            pdf.set_font("cjk", "", 7)
            pdf.set_text_color(110)
            pdf.cell(0, 4, f"yizhangtu 一张图 · {title} · 生成于 {stamp} · 第 {pdf.page_no()} 页", align="C")
            pdf.set_text_color(0)

        pdf.footer = footer  # type: ignore[method-assign]  # fpdf2's documented way to set a page footer

    def page(self) -> None:
        self.pdf.add_page()

    def h1(self, text: str) -> None:
        self.pdf.set_font("cjk", "B", 16)
        self.pdf.cell(0, 10, text, align="C", new_x="LMARGIN", new_y="NEXT")

    def h2(self, text: str) -> None:
        self.pdf.ln(2)
        self.pdf.set_font("cjk", "B", 11)
        self.pdf.set_fill_color(228, 234, 242)
        self.pdf.cell(0, 7, text, fill=True, new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(1)

    def text(self, text: str, size: float = 9) -> None:
        self.pdf.set_font("cjk", "", size)
        self.pdf.multi_cell(0, 4.8, text, new_x="LMARGIN", new_y="NEXT")

    def kv(self, rows: list[tuple[str, str]], cols: int = 2) -> None:
        """Label / value pairs in ``cols`` pairs per row."""
        self.pdf.set_font("cjk", "", 9)
        width = (self.pdf.w - 28) / cols
        with self.pdf.table(col_widths=[width * 0.36, width * 0.64] * cols, text_align="LEFT", line_height=5.5,
                            first_row_as_headings=False, borders_layout="ALL") as table:
            for i in range(0, len(rows), cols):
                row = table.row()
                for label, value in rows[i:i + cols] + [("", "")] * (cols - len(rows[i:i + cols])):
                    row.cell(label, style=None)
                    row.cell(str(value))

    def grid(self, headers: list[str], rows: list[list], widths: list[float] | None = None, size: float = 8) -> None:
        self.pdf.set_font("cjk", "", size)
        with self.pdf.table(col_widths=widths, text_align="LEFT", line_height=4.8, borders_layout="ALL") as table:
            head = table.row()
            for h in headers:
                head.cell(h)
            for r in rows:
                row = table.row()
                for v in r:
                    row.cell("" if v is None else str(v))

    def image(self, png: bytes, w: float, x: float | None = None, y: float | None = None) -> None:
        self.pdf.image(io.BytesIO(png), x=x, y=y, w=w)

    def images_side_by_side(self, items: list[tuple[str, bytes | None]], height: float = 80) -> None:
        gap = 4
        width = (self.pdf.w - 28 - gap * (len(items) - 1)) / len(items)
        if self.pdf.get_y() + height + 8 > self.pdf.h - 16:
            self.pdf.add_page()
        y = self.pdf.get_y()
        for i, (caption, png) in enumerate(items):
            x = 14 + i * (width + gap)
            self.pdf.set_xy(x, y)
            self.pdf.set_font("cjk", "", 8.5)
            self.pdf.cell(width, 5, caption, align="C")
            if png:
                self.pdf.image(io.BytesIO(png), x=x, y=y + 5, w=width, h=height)
            else:
                self.pdf.set_xy(x, y + 5 + height / 2 - 3)
                self.pdf.cell(width, 6, "（无影像覆盖）", align="C")
        self.pdf.set_xy(14, y + height + 7)

    def bytes(self) -> bytes:
        return bytes(self.pdf.output())


# --- figures ------------------------------------------------------------------------------------------------

def _figure(size=(4.2, 4.2)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=150)
    ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1)
    return fig, ax


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    plt.close(fig)
    return buf.getvalue()


def _draw(ax, geom, **style) -> None:
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MPath

    for poly in shapely.get_parts(geom):
        if poly.geom_type != "Polygon" or poly.is_empty:
            continue
        verts, codes = [], []
        for ring in [poly.exterior, *poly.interiors]:
            c = np.asarray(ring.coords)
            verts += c.tolist()
            codes += [MPath.MOVETO] + [MPath.LINETO] * (len(c) - 2) + [MPath.CLOSEPOLY]
        ax.add_patch(PathPatch(MPath(verts, codes), **style))


def location_map(store, geom, approvals_ids: list[str] | None = None, pad: float = 250.0) -> bytes:
    """The patch (red) over the current DLTB in 三调 colours, approvals (blue), within ``pad`` metres."""
    x0, y0, x1, y1 = shapely.bounds(geom)
    side = max(x1 - x0, y1 - y0) / 2 + pad
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    box = (cx - side, cy - side, cx + side, cy + side)
    fig, ax = _figure()
    layers = set(store.layer_names())
    if "dltb" in layers:
        dltb = store.read_layer("dltb", bbox=box, columns=["DLBM"])
        for code, g in zip(dltb["DLBM"], dltb.geometry.values):
            _draw(ax, g, facecolor=color_of(code), edgecolor="#777777", linewidth=0.3)
    if "approvals" in layers and approvals_ids:
        appr = store.read_layer("approvals", bbox=box)
        for _, r in appr.iterrows():
            if str(r.get("PZWH")) in approvals_ids or str(r.get("DZJGH")) in approvals_ids:
                _draw(ax, r.geometry, facecolor="none", edgecolor="#2166ac", linewidth=1.4, linestyle="--")
    _draw(ax, geom, facecolor="none", edgecolor="#e31a1c", linewidth=2.0)
    ax.set_xlim(box[0], box[2])
    ax.set_ylim(box[1], box[3])
    ax.set_aspect("equal")
    # a 100 m scale bar
    ax.plot([box[0] + 20, box[0] + 120], [box[1] + 20, box[1] + 20], color="black", linewidth=2)
    ax.text(box[0] + 70, box[1] + 28, "100 m", ha="center", fontsize=7)
    return _png(fig)


def image_clip(layer, geom, epsg: int, pad: float = 120.0) -> bytes | None:
    """The patch (outline) on a raster role's image, stretched as the map shows it; None if not covered."""
    import rasterio
    from rasterio.windows import from_bounds

    from layers.store.tiles import transformer

    x0, y0, x1, y1 = shapely.bounds(geom)
    side = max(x1 - x0, y1 - y0) / 2 + pad
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    with rasterio.open(layer.path) as src:
        r_epsg = src.crs.to_epsg()
        g = geom
        if r_epsg and r_epsg != epsg:
            tr = transformer(epsg, r_epsg)
            g = shapely.transform(geom, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
            x0, y0, x1, y1 = shapely.bounds(g)
            side = max(x1 - x0, y1 - y0) / 2 + pad * abs(src.res[0]) / max(abs(src.res[0]), 1e-9)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        box = (cx - side, cy - side, cx + side, cy + side)
        b = src.bounds
        if box[2] < b.left or box[0] > b.right or box[3] < b.bottom or box[1] > b.top:
            return None
        if not shapely.intersects(shapely.box(b.left, b.bottom, b.right, b.top), g):
            return None
        window = from_bounds(*box, transform=src.transform)
        data = src.read(layer.indexes, window=window, boundless=True, fill_value=0).astype("float32")
    for i, (lo, hi) in enumerate(layer.ranges):
        data[i] = np.clip((data[i] - lo) / ((hi - lo) or 1.0), 0, 1)
    img = np.moveaxis(data, 0, -1) if data.shape[0] == 3 else data[0]
    fig, ax = _figure()
    ax.imshow(img, extent=(box[0], box[2], box[1], box[3]), cmap=None if img.ndim == 3 else "gray")
    _draw(ax, g, facecolor="none", edgecolor="#ffeb3b", linewidth=1.8)
    ax.set_xlim(box[0], box[2])
    ax.set_ylim(box[1], box[3])
    return _png(fig)


def evidence_thumbnail(path: Path) -> bytes | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            img = opened.convert("RGB")
            img.thumbnail((600, 600))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=80)
            return buf.getvalue()
    except (UnidentifiedImageError, OSError):
        return None


# --- the 核查表 ----------------------------------------------------------------------------------------------

def evidence_checks_for(bench, settings, detail: dict, geom, epsg: int) -> dict[str, dict]:
    """evidence_id → checks (recomputed from the stored file and the upload's values: deterministic)."""
    hsx = [s.get("HSX") for s in detail.get("sources", [])]
    out = {}
    root = Path(settings.evidence_dir)
    for e in detail.get("evidence", []):
        item = bench.flow.evidence_item(e["evidence_id"])
        path = root / item["path"] if item.get("path") else None
        uploaded = dt.datetime.fromisoformat(str(e.get("uploaded_at") or e["taken_at"]).replace("Z", "+00:00"))
        out[e["evidence_id"]] = check_evidence(
            path if item.get("content_type", "").startswith("image/") else None, e, geom, epsg, hsx, uploaded,
            settings.evidence_max_distance_m, settings.evidence_max_age_days)
    return out


def add_patch_pages(doc: Pdf, bench, rasters, settings, jcbh: str, who) -> dict:
    d = bench.detail(jcbh, who)
    frame, p = bench.current()
    i = bench.locate(d["JCBH"], frame)
    geom = p.frame.geometry.iloc[i]
    epsg = p.epsg
    store = bench.store
    meta = store.meta()
    b, lu, cl, w = d["breakdown"], d["breakdown"]["land_use_before"], d["breakdown"]["control_lines"], d["workflow"]
    doc.page()
    doc.h1("卫片图斑实地核查表")
    doc.text(f"{meta.get('region_name', '')}（{meta.get('region_code', '')}）    监测编号 {d['JCBH']}", 10)
    c = shapely.centroid(shapely.geometry.shape(d["geometry"])) if d.get("geometry") else None
    sources = d.get("sources", [])
    qsx = sorted({str(s.get("QSX"))[:10] for s in sources if s.get("QSX")})
    hsx = sorted({str(s.get("HSX"))[:10] for s in sources if s.get("HSX")})
    props = d.get("properties", {})
    doc.h2("一、基本信息")
    doc.kv([
        ("监测编号", d["JCBH"]), ("案件编号", d.get("case_id") or d["JCBH"]),
        ("行政区", f"{d['location'].get('township') or ''} {d['location'].get('village') or ''}"),
        ("行政区代码", d["location"].get("XZQDM") or ""),
        ("图斑面积", f"{_m2(b['area_m2'])} m²（{_mu(b['area_m2'])} 亩）"),
        ("中心点", f"{c.x:.6f}E, {c.y:.6f}N" if c is not None else "—"),
        ("批次", ", ".join(map(str, props.get("rounds", [])))), ("来源", ", ".join(map(str, props.get("sources", [])))),
        ("前时相", ", ".join(qsx) or "—"), ("后时相", ", ".join(hsx) or "—"),
        ("合并的监测编号", ", ".join(map(str, props.get("source_ids", [])))),
        ("分析运行", str(props.get("run_id") or "")),
    ])
    doc.h2("二、位置图与前后时相影像")
    before = rasters.layers.get("image_before") if rasters is not None else None
    after = rasters.layers.get("image_after") if rasters is not None else None
    doc.images_side_by_side([
        ("位置图（三调地类，红线为图斑）", location_map(store, geom, b["approvals"]["ids"])),
        (f"前时相影像 {before.date or ''}" if before else "前时相影像",
         image_clip(before, geom, epsg) if before else None),
        (f"后时相影像 {after.date or ''}" if after else "后时相影像",
         image_clip(after, geom, epsg) if after else None),
    ], height=56)
    doc.h2("三、叠加分析")
    doc.kv([
        ("原地类", f"{lu.get('orig_dlbm') or ''} {lu.get('orig_dlmc') or ''}"),
        ("现地类", f"{lu.get('now_dlbm') or ''} {lu.get('now_dlmc') or ''}"),
        ("占耕地（扣田坎）", f"{_m2(lu.get('cultivated'))} m²"), ("田坎", f"{_m2(lu.get('tiankan'))} m²"),
        ("其他农用地", f"{_m2(lu.get('agri_other'))} m²"), ("建设用地", f"{_m2(lu.get('construction'))} m²"),
        ("未利用地", f"{_m2(lu.get('unused'))} m²"), ("永久基本农田", f"{_m2(cl['yjjbnt']['area_m2'])} m²"),
        ("生态保护红线内", f"{_m2(cl['stbhhx']['area_m2'])} m²"),
        ("城镇开发边界外", f"{_m2(cl['czkfbj']['area_outside_m2'])} m²"),
        ("批准覆盖", f"{_m2(b['approvals']['area_approved_m2'])} m²"
                     f"（{100 * float(b['approvals']['approved_share'] or 0):.1f}%）"),
        ("临时/设施农用地覆盖", f"{_m2(b['approvals']['area_compliant_m2'])} m²"),
    ])
    doc.h2("四、用地批准情况")
    if d["approvals"]:
        doc.grid(["批准文号 / 电子监管号", "类型", "批准日期", "批准面积(m²)", "与图斑重叠(m²)"],
                 [[a.get("PZWH") or a.get("DZJGH"), a.get("PZLX"), str(a.get("PZRQ") or "")[:10], _m2(a.get("PZMJ")),
                   _m2(a.get("overlap_m2"))] for a in d["approvals"]], widths=[60, 30, 28, 32, 32])
    else:
        doc.text("无覆盖该图斑的用地批准。")
    doc.h2("五、预判结论")
    doc.kv([("预判结论", b.get("verdict_zh") or ""), ("当前状态", w["status"]),
            ("核查认定", w.get("judgement") or "未认定"), ("版本", str(w["version"]))])
    doc.text(f"预判理由：{b.get('verdict_reason') or ''}")
    doc.h2("六、核查认定与状态流转记录")
    if d["history"]:
        doc.grid(["序号", "时间(UTC)", "人员", "操作", "状态", "认定", "说明"],
                 [[h["seq"], str(h["at"])[:19].replace("T", " "), f"{h['user']}（{h['role']}）",
                   {"judgement": "认定", "transition": "流转", "evidence": "举证"}.get(h["action"], h["action"]),
                   f"{h['from_status']}→{h['to_status']}", h.get("to_judgement") or "", h.get("note") or ""]
                  for h in reversed(d["history"])], widths=[10, 30, 26, 12, 28, 14, 62])
    else:
        doc.text("尚无认定或流转记录。")
    doc.h2("七、举证材料")
    checks = evidence_checks_for(bench, settings, d, geom, epsg)
    if not d["evidence"]:
        doc.text("尚无举证照片。")
    for e in d["evidence"]:
        ck = checks.get(e["evidence_id"], {})
        flags = ck.get("flags", [])
        item = bench.flow.evidence_item(e["evidence_id"])
        path = Path(settings.evidence_dir) / item["path"]
        thumb = evidence_thumbnail(path) if str(item.get("content_type", "")).startswith("image/") else None
        if doc.pdf.get_y() + 50 > doc.pdf.h - 16:
            doc.page()
        y = doc.pdf.get_y()
        if thumb:
            doc.image(thumb, w=50, x=14, y=y)
        doc.pdf.set_xy(68, y)
        exif = ck.get("exif", {})
        lines = [f"文件：{e.get('filename')}（SHA-256 {str(item.get('sha256'))[:16]}…）",
                 f"拍摄时间（填报）：{e.get('taken_at')}；EXIF：{exif.get('taken_at') or '无'}",
                 f"位置（填报）：{e.get('lon'):.6f}E, {e.get('lat'):.6f}N；EXIF："
                 + (f"{exif['lon']:.6f}E, {exif['lat']:.6f}N" if exif.get("lon") is not None else "无"),
                 f"方位角：{e.get('azimuth') if e.get('azimuth') is not None else (exif.get('azimuth') or '—')}°；"
                 f"距图斑：{ck.get('distance_m')} m",
                 f"上传：{e.get('uploaded_by')} {e.get('uploaded_at')}",
                 "核验：" + ("通过" if not flags else "；".join("⚠ " + f["message"] for f in flags))]
        doc.pdf.set_font("cjk", "", 8.5)
        for line in lines:
            doc.pdf.set_x(68)
            doc.pdf.multi_cell(doc.pdf.w - 82, 4.6, line, new_x="LMARGIN", new_y="NEXT")
        doc.pdf.set_y(max(doc.pdf.get_y(), y + 52))
    doc.h2("八、核查人员签字")
    doc.text("核查人员：________________    复核人员：________________    日期：______年____月____日")
    return d


def patch_report(bench, rasters, settings, jcbh: str, who) -> tuple[bytes, dict]:
    doc = Pdf(f"卫片图斑实地核查表 {jcbh}")
    d = add_patch_pages(doc, bench, rasters, settings, jcbh, who)
    return doc.bytes(), d


def round_report(bench, rasters, settings, round_name: str, who) -> tuple[bytes, list[str]]:
    """One PDF with a cover list and the 核查表 of every patch issued in ``round_name``."""
    from layers.errors import NotFoundError

    frame, p = bench.current()
    ids = [str(j) for j, rs in zip(frame["JCBH"], frame["rounds"]) if round_name in [str(r) for r in rs]]
    if not ids:
        known = sorted({str(r) for rs in frame["rounds"] for r in rs})
        raise NotFoundError(f"no patch was issued in round {round_name!r}; rounds: {', '.join(known)}")
    doc = Pdf(f"卫片图斑实地核查表 批次 {round_name}")
    doc.page()
    doc.h1(f"卫片图斑实地核查表（批次 {round_name}）")
    rows = []
    for j in ids:
        r = frame.iloc[bench.locate(j, frame)]
        rows.append([j, f"{r.get('township') or ''}{r.get('village') or ''}", _m2(r["area_m2"]), r["verdict_zh"],
                     r["status"], r.get("judgement") or ""])
    doc.grid(["监测编号", "位置", "面积(m²)", "预判", "状态", "认定"], rows, widths=[40, 46, 28, 22, 22, 24])
    for j in ids:
        add_patch_pages(doc, bench, rasters, settings, j, who)
    return doc.bytes(), ids


# --- 合规性审查 ----------------------------------------------------------------------------------------------

def review_report(answer: dict, site_store_crs, store, source: str) -> bytes:
    doc = Pdf("建设项目用地合规性审查")
    doc.page()
    doc.h1("建设项目用地合规性审查意见")
    region = answer.get("region", {})
    doc.kv([("行政区", f"{region.get('name') or ''}（{region.get('code') or ''}）"), ("审查结论", answer["result"]),
            ("用地面积", f"{_m2(answer['site']['area_m2'])} m²（{_mu(answer['site']['area_m2'])} 亩）"),
            ("区域外面积", f"{_m2(answer['site'].get('area_outside_region_m2'))} m²"),
            ("坐标来源", source), ("容差", f"{answer.get('tolerance_m2')} m²")])
    doc.h2("一、位置图")
    doc.images_side_by_side([("用地范围（红线）与三调地类", location_map(store, site_store_crs, pad=150.0))],
                            height=110)
    doc.h2("二、审查规则")
    doc.grid(["规则", "量值(m²)", "允许(m²)", "结果", "说明"],
             [[r.get("title"), _m2(r.get("value_m2")), _m2(r.get("limit_m2")), r.get("result"), r.get("message")]
              for r in answer["rules"]], widths=[40, 24, 20, 16, 82])
    doc.h2("三、叠加明细")
    rows = []
    for key, o in answer["overlaps"].items():
        if not isinstance(o, dict) or key == "dltb":
            continue
        feats = o.get("features") or o.get("zones") or []
        ids = ", ".join(f"{f.get('id') or f.get('GHFQDM')} ({_m2(f.get('area_m2'))})" for f in feats[:12])
        rows.append([o.get("title", key), _m2(o.get("area_m2")), ids or "—"])
    doc.grid(["图层", "重叠面积(m²)", "涉及要素（面积 m²）"], rows, widths=[34, 28, 120])
    dl = answer["overlaps"].get("dltb") or {}
    if dl.get("by_code"):
        doc.h2("四、现状地类")
        doc.grid(["地类编码", "地类名称", "面积(m²)", "地类面积(扣田坎, m²)"],
                 [[x.get("DLBM"), x.get("DLMC") or x.get("name"), _m2(x.get("area_m2")), _m2(x.get("land_area_m2"))]
                  for x in dl["by_code"]], widths=[30, 50, 50, 52])
    doc.text(f"审查规则 SHA-256：{answer.get('rules_sha256', '')}", 7.5)
    return doc.bytes()


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)
