/* yizhangtu — the one map (MapLibre GL JS): the store's layers as OGC API vector tiles (DLTB in the 三调 colours),
   imagery tiles with a before / after swipe, search, the patch workbench (judge, move, evidence, 核查表) and
   合规性审查 of a drawn or uploaded site. Everything comes from this server: tiles, glyphs, scripts. */
import * as maplibregl from "/vendor/maplibre-gl/maplibre-gl.mjs";

// YZT (common.js, a classic script) is a global binding: the token, JSON calls, formatting
const $ = (id) => document.getElementById(id);
const VERDICT_COLOR = { legal: "#1a9850", partly_approved: "#fdae61", suspected_illegal: "#d73027", other: "#74add1" };
const VERDICT_ZH = { legal: "合法", partly_approved: "少批多占", suspected_illegal: "未批先建", other: "其他" };
const STATUS_COLOR = { "待核查": "#222222", "已核查": "#6a3d9a", "立案": "#b2182b", "整改中": "#ff7f00",
                       "已整改": "#33a02c", "销号": "#888888" };
const state = { config: null, map: null, me: { role: "anonymous" }, workflow: null, current: null, etag: null,
                patches: { type: "FeatureCollection", features: [] }, drawing: null, site: null, swipe: null,
                toggles: {} };

function message(text, ok) {
  const el = $("message");
  el.textContent = text;
  el.className = "message " + (ok ? "ok" : "err");
}

const sameOrigin = (url) => url.startsWith("/") || url.startsWith(location.origin);

// --- the style ------------------------------------------------------------------------------------------------------
function landuseColor(colors) {
  const expr = ["match", ["get", "DLBM"]];
  for (const [code, color] of Object.entries(colors)) expr.push(code, color);
  expr.push("#d9d9d9");
  return expr;
}

function vectorLayers(def, colors) {
  const src = def.name, L = [];
  const sl = { source: src, "source-layer": def.name };
  switch (def.kind) {
    case "landuse":
      L.push({ id: `${src}-fill`, type: "fill", ...sl, paint: { "fill-color": landuseColor(colors), "fill-opacity": 0.9 } });
      L.push({ id: `${src}-line`, type: "line", ...sl, minzoom: Math.max(def.detail_zoom, 12),
               paint: { "line-color": "#7a7a7a", "line-width": ["interpolate", ["linear"], ["zoom"], 12, 0.2, 17, 0.8] } });
      L.push({ id: `${src}-label`, type: "symbol", ...sl, minzoom: 16,
               layout: { "text-field": ["get", "DLBM"], "text-font": [state.config.font], "text-size": 10 },
               paint: { "text-color": "#333", "text-halo-color": "#fff", "text-halo-width": 1 } });
      break;
    case "zones":
      L.push({ id: `${src}-fill`, type: "fill", ...sl, paint: { "fill-color": "#7b6fb0", "fill-opacity": 0.18 } });
      L.push({ id: `${src}-line`, type: "line", ...sl, paint: { "line-color": "#7b6fb0", "line-width": 0.8 } });
      break;
    case "farmland":
      L.push({ id: `${src}-fill`, type: "fill", ...sl, paint: { "fill-color": "#f2c200", "fill-opacity": 0.28 } });
      L.push({ id: `${src}-line`, type: "line", ...sl, paint: { "line-color": "#b38f00", "line-width": 1 } });
      break;
    case "redline":
      L.push({ id: `${src}-fill`, type: "fill", ...sl, paint: { "fill-color": "#1a9850", "fill-opacity": 0.25 } });
      L.push({ id: `${src}-line`, type: "line", ...sl, paint: { "line-color": "#0b6b34", "line-width": 1.4 } });
      break;
    case "boundary":
      L.push({ id: `${src}-line`, type: "line", ...sl,
               paint: { "line-color": "#d6604d", "line-width": 2, "line-dasharray": [3, 2] } });
      break;
    case "approvals":
      L.push({ id: `${src}-fill`, type: "fill", ...sl, paint: { "fill-color": "#2166ac", "fill-opacity": 0.08 } });
      L.push({ id: `${src}-line`, type: "line", ...sl, paint: { "line-color": "#2166ac", "line-width": 1.5 } });
      break;
    case "parcels":
      L.push({ id: `${src}-line`, type: "line", ...sl, paint: { "line-color": "#6a51a3", "line-width": 0.9 } });
      break;
    case "monitoring":
      L.push({ id: `${src}-line`, type: "line", ...sl, paint: { "line-color": "#f46d43", "line-width": 1.2 } });
      break;
    case "points":
      L.push({ id: `${src}-circle`, type: "circle", ...sl,
               paint: { "circle-radius": 4, "circle-color": "#000", "circle-stroke-color": "#fff", "circle-stroke-width": 1 } });
      break;
    case "admin":
      L.push({ id: `${src}-line`, type: "line", ...sl, paint: {
        "line-color": "#444", "line-width": ["match", ["get", "XZQJB"], "county", 2.4, "township", 1.4, 0.5],
        "line-dasharray": ["match", ["get", "XZQJB"], "village", ["literal", [2, 2]], ["literal", [1, 0]]] } });
      L.push({ id: `${src}-label`, type: "symbol", ...sl,
               filter: ["match", ["get", "XZQJB"], ["township", "village"], true, false],
               layout: { "text-field": ["get", "XZQMC"], "text-font": [state.config.font],
                         "text-size": ["match", ["get", "XZQJB"], "township", 14, 11],
                         "symbol-placement": "point", "text-allow-overlap": false },
               paint: { "text-color": "#222", "text-halo-color": "#fff", "text-halo-width": 1.5 } });
      break;
    default:
      L.push({ id: `${src}-line`, type: "line", ...sl, paint: { "line-color": "#555" } });
  }
  return L;
}

function buildStyle(cfg) {
  const sources = {}, layers = [{ id: "background", type: "background", paint: { "background-color": "#f4f2ee" } }];
  for (const r of cfg.rasters) {
    sources[`raster-${r.role}`] = { type: "raster", tiles: [location.origin + r.tiles], tileSize: 256, bounds: r.bounds,
                                    minzoom: r.minzoom, maxzoom: r.maxzoom };
    layers.push({ id: `raster-${r.role}`, type: "raster", source: `raster-${r.role}`,
                  layout: { visibility: r.role === "basemap" ? "visible" : "none" } });
  }
  for (const def of cfg.layers) {
    sources[def.name] = { type: "vector", tiles: [location.origin + def.tiles], minzoom: 0, maxzoom: 16 };
    for (const l of vectorLayers(def, cfg.colors)) {
      l.layout = Object.assign({ visibility: def.on ? "visible" : "none" }, l.layout || {});
      layers.push(l);
    }
  }
  sources.patches = { type: "geojson", data: state.patches };
  sources["patch-points"] = { type: "geojson", data: { type: "FeatureCollection", features: [] } };
  sources.selected = { type: "geojson", data: { type: "FeatureCollection", features: [] } };
  sources.site = { type: "geojson", data: { type: "FeatureCollection", features: [] } };
  sources.pieces = { type: "geojson", data: { type: "FeatureCollection", features: [] } };
  const verdictColor = ["match", ["get", "verdict"], ...Object.entries(VERDICT_COLOR).flat(), "#999"];
  const statusColor = ["match", ["get", "status"], ...Object.entries(STATUS_COLOR).flat(), "#000"];
  layers.push(
    { id: "patches-fill", type: "fill", source: "patches", paint: { "fill-color": verdictColor, "fill-opacity": 0.55 } },
    { id: "patches-line", type: "line", source: "patches", paint: { "line-color": statusColor, "line-width": 2.5 } },
    { id: "patches-dot", type: "circle", source: "patch-points", maxzoom: 15,
      paint: { "circle-radius": 6, "circle-color": verdictColor, "circle-stroke-color": "#fff", "circle-stroke-width": 1.5 } },
    { id: "pieces-fill", type: "fill", source: "pieces", paint: {
      "fill-color": ["match", ["get", "layer"], "yjjbnt", "#ffd400", "stbhhx", "#00a651", "ghfq", "#8e44ad",
                     "czkfbj_outside", "#e31a1c", "#555"], "fill-opacity": 0.55 } },
    { id: "site-line", type: "line", source: "site", paint: { "line-color": "#e31a1c", "line-width": 2.5 } },
    { id: "site-vertex", type: "circle", source: "site", filter: ["==", ["geometry-type"], "Point"],
      paint: { "circle-radius": 4, "circle-color": "#e31a1c" } },
    { id: "selected-line", type: "line", source: "selected", paint: { "line-color": "#00e5ff", "line-width": 4 } },
  );
  return { version: 8, glyphs: location.origin + cfg.glyphs, sources, layers };
}

// --- layer switcher and legend --------------------------------------------------------------------------------------
function addToggle(container, key, title, ids, on) {
  const id = `toggle-${key}`;
  container.insertAdjacentHTML("beforeend",
    `<label class="toggle"><input type="checkbox" id="${id}" ${on ? "checked" : ""}> ${YZT.esc(title)}</label>`);
  state.toggles[key] = ids;
  $(id).addEventListener("change", (ev) => {
    for (const lid of ids) if (state.map.getLayer(lid)) state.map.setLayoutProperty(lid, "visibility", ev.target.checked ? "visible" : "none");
  });
}

function buildSwitcher(cfg, style) {
  const box = $("layer-switcher");
  box.innerHTML = "";
  for (const r of cfg.rasters) addToggle(box, `raster-${r.role}`, r.title, [`raster-${r.role}`], r.role === "basemap");
  for (const def of cfg.layers) {
    const ids = style.layers.filter((l) => l.source === def.name).map((l) => l.id);
    addToggle(box, def.name, def.title, ids, def.on);
  }
  addToggle(box, "patches", "监测图斑 (核查)", ["patches-fill", "patches-line", "patches-dot"], true);
  const legend = $("legend");
  legend.innerHTML = cfg.classes.map((c) => `<details class="legend-class"><summary><i style="background:${c.color}"></i>${YZT.esc(c.code)} ${YZT.esc(c.name)}</summary>
      <ul>${c.members.map((m) => `<li><i style="background:${m.color}"></i>${YZT.esc(m.code)} ${YZT.esc(m.name)}</li>`).join("")}</ul></details>`).join("") +
    `<div class="legend-verdicts"><b>预判 (填充)</b> ${Object.entries(VERDICT_ZH).map(([k, v]) => `<span><i style="background:${VERDICT_COLOR[k]}"></i>${v}</span>`).join(" ")}</div>` +
    `<div class="legend-verdicts"><b>状态 (边框)</b> ${Object.entries(STATUS_COLOR).map(([k, c]) => `<span><i style="border:2px solid ${c}"></i>${k}</span>`).join(" ")}</div>`;
  $("legend-source").textContent = "颜色来源：" + cfg.color_source;
}

// --- feature info ---------------------------------------------------------------------------------------------------
const TITLE_OF = {};
function featureInfo(ev) {
  if (state.drawing) return;
  const map = state.map;
  const patch = map.queryRenderedFeatures(ev.point, { layers: ["patches-fill", "patches-dot"] });
  if (patch.length) { openPatch(patch[0].properties.JCBH, false); return; }
  const layers = map.getStyle().layers.filter((l) => l.source && TITLE_OF[l.source] &&
    (l.type === "fill" || l.type === "circle" || l.type === "line") && map.getLayoutProperty(l.id, "visibility") !== "none").map((l) => l.id);
  const hits = map.queryRenderedFeatures(ev.point, { layers });
  if (!hits.length) return;
  const f = hits[0];
  const rows = Object.entries(f.properties).map(([k, v]) => `<tr><th>${YZT.esc(k)}</th><td>${YZT.esc(v)}</td></tr>`).join("");
  new maplibregl.Popup({ maxWidth: "360px" }).setLngLat(ev.lngLat)
    .setHTML(`<div class="info"><b>${YZT.esc(TITLE_OF[f.source] || f.source)}</b><table class="kv">${rows}</table></div>`).addTo(map);
  document.body.dataset.infoLayer = f.source;
}

// --- patches ---------------------------------------------------------------------------------------------------------
function patchQuery() {
  const q = new URLSearchParams({ f: "geojson", limit: "10000" });
  for (const [k, id] of [["verdict", "f-verdict"], ["status", "f-status"], ["xzq", "f-xzq"], ["round", "f-round"]]) {
    if ($(id).value) q.set(k, $(id).value);
  }
  return q;
}

function centre(bbox) { return [(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2]; }

async function loadPatches() {
  let body;
  try {
    ({ body } = await YZT.call("/api/patches?" + patchQuery().toString()));
  } catch (e) {
    state.patches = { type: "FeatureCollection", features: [] };
    if (state.map.getSource("patches")) state.map.getSource("patches").setData(state.patches);
    document.body.dataset.patchesDrawn = "0";
    $("count").textContent = "";
    $("list").innerHTML = `<p class="muted">${YZT.esc(e.status === 401 ? "请先输入访问令牌登录以查看监测图斑。" : e.message)}</p>`;
    return;
  }
  state.patches = body;
  state.map.getSource("patches").setData(body);
  state.map.getSource("patch-points").setData({ type: "FeatureCollection", features: body.features.map((f) => (
    { type: "Feature", properties: f.properties, geometry: { type: "Point", coordinates: centre(f.properties.bbox) } })) });
  document.body.dataset.patchesDrawn = String(body.features.length);
  $("count").textContent = `共 ${body.numberMatched} 个`;
  $("round-report").disabled = !$("f-round").value;
  if (!state.current) renderList(body.features.map((f) => f.properties));
}

function renderList(items) {
  const rows = items.map((p) => `<tr data-jcbh="${YZT.esc(p.JCBH)}"><td class="code">${YZT.esc(p.JCBH)}</td>
    <td>${YZT.esc(p.township || "")} ${YZT.esc(p.village || "")}</td><td class="num">${YZT.m2(p.area_m2)}</td>
    <td><span class="badge" style="background:${VERDICT_COLOR[p.verdict]}">${YZT.esc(p.verdict_zh)}</span></td>
    <td class="status">${YZT.esc(p.status)}</td></tr>`).join("");
  $("list").innerHTML = `<table class="patches"><thead><tr><th>监测编号</th><th>位置</th><th class="num">面积(m²)</th>
    <th>预判</th><th class="status">状态</th></tr></thead><tbody>${rows}</tbody></table>`;
  $("list").querySelectorAll("tr[data-jcbh]").forEach((tr) => tr.addEventListener("click", () => openPatch(tr.dataset.jcbh, true)));
}

function fit(bbox, maxZoom) {
  state.map.fitBounds([[bbox[0], bbox[1]], [bbox[2], bbox[3]]], { padding: 60, maxZoom: maxZoom || 17, duration: 0 });
}

async function openPatch(jcbh, zoom) {
  try {
    const { body, etag } = await YZT.call(`/api/patches/${encodeURIComponent(jcbh)}`);
    state.current = body;
    state.etag = etag;
    showTab("inbox");
    renderDetail(body);
    state.map.getSource("selected").setData(body.geometry ? { type: "Feature", geometry: body.geometry, properties: {} } :
      { type: "FeatureCollection", features: [] });
    if (zoom) fit(body.bbox, 17);
  } catch (e) {
    message(`图斑 ${jcbh}: ${e.message}`, false);
  }
}

function closeDetail() {
  state.current = null;
  exitSwipe();
  $("detail").hidden = true;
  $("list").hidden = false;
  state.map.getSource("selected").setData({ type: "FeatureCollection", features: [] });
  loadPatches();
}

function kv(rows) {
  return `<table class="kv">${rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("")}</table>`;
}

function evidenceFlags(d) {
  const flags = {};
  for (const h of d.history) {
    const ev = h.after && h.after.evidence;
    if (ev && ev.checks) flags[ev.evidence_id] = ev.checks;
  }
  return flags;
}

function renderDetail(d) {
  const b = d.breakdown, lu = b.land_use_before, cl = b.control_lines, w = d.workflow;
  const canWrite = ["inspector", "admin"].includes(state.me.role);
  const judgements = (state.workflow && Object.keys(state.workflow.judgements)) || ["合法", "违法", "其他"];
  const moves = w.allowed_moves.filter((m) => m.judgement !== "required");
  const hasImages = state.config.rasters.some((r) => r.role === "image_before") && state.config.rasters.some((r) => r.role === "image_after");
  const checks = evidenceFlags(d);
  const html = `
    <p class="row"><button type="button" id="back">← 返回列表</button>
      <button type="button" id="print-report" class="primary">打印核查表 (PDF)</button>
      ${hasImages ? '<button type="button" id="swipe-start">影像对比 (卷帘)</button>' : ""}</p>
    <h2>图斑 ${YZT.esc(d.JCBH)}</h2>
    ${kv([
      ["位置", `${YZT.esc(d.location.township || "")} ${YZT.esc(d.location.village || "")} (${YZT.esc(d.location.XZQDM)})`],
      ["图斑面积", `${YZT.m2(b.area_m2)} m²`],
      ["预判结论", `<span class="badge" style="background:${VERDICT_COLOR[b.verdict]}">${YZT.esc(b.verdict_zh)}</span>`],
      ["状态", `<b id="d-status">${YZT.esc(w.status)}</b>${w.judgement ? ` · 认定 <b id="d-judgement">${YZT.esc(w.judgement)}</b>` : ""} · 版本 ${w.version}`],
    ])}
    <p class="reason">${YZT.esc(b.verdict_reason)}</p>
    <h3>叠加分析</h3>
    ${kv([
      ["原地类", `${YZT.esc(lu.orig_dlbm || "")} ${YZT.esc(lu.orig_dlmc || "")} → 现地类 ${YZT.esc(lu.now_dlbm || "")} ${YZT.esc(lu.now_dlmc || "")}`],
      ["占耕地 (扣田坎)", `${YZT.m2(lu.cultivated)} m²（田坎 ${YZT.m2(lu.tiankan)} m²）`],
      ["其他农用地 / 建设 / 未利用", `${YZT.m2(lu.agri_other)} / ${YZT.m2(lu.construction)} / ${YZT.m2(lu.unused)} m²`],
      ["永久基本农田", `${YZT.m2(cl.yjjbnt.area_m2)} m²`],
      ["生态保护红线内", `${YZT.m2(cl.stbhhx.area_m2)} m²`],
      ["城镇开发边界外", `${YZT.m2(cl.czkfbj.area_outside_m2)} m²`],
      ["批准覆盖", `${YZT.m2(b.approvals.area_approved_m2)} m²（${(100 * (b.approvals.approved_share || 0)).toFixed(1)}%）`],
    ])}
    <h3>批准用地</h3>
    ${d.approvals.length ? `<ul>${d.approvals.map((a) => `<li>${YZT.esc(a.PZWH || a.DZJGH)} · ${YZT.esc(a.PZLX)} · ${YZT.esc(a.PZRQ || "")} · 重叠 ${YZT.m2(a.overlap_m2)} m²</li>`).join("")}</ul>` : '<p class="muted">无</p>'}
    <h3>来源</h3>
    <ul>${d.sources.map((s) => `<li>${YZT.esc(s.id)} · ${YZT.esc(s.SOURCE || "")} ${YZT.esc(s.ROUND || "")} ${s.HSX ? "后时相 " + YZT.esc(s.HSX) : ""} ${YZT.esc(s.note || "")}</li>`).join("")}</ul>
    <h3>核查处置</h3>
    ${canWrite && w.can_judge ? `
    <form id="judge-form" class="act">
      <div class="row">认定:
        ${judgements.map((j) => `<label><input type="radio" name="judgement" value="${YZT.esc(j)}"> ${YZT.esc(j)}</label>`).join("")}
      </div>
      <textarea name="note" placeholder="核查说明（现场情况）"></textarea>
      <div class="row"><button class="primary" type="submit" id="judge-submit">提交认定</button></div>
    </form>` : ""}
    ${canWrite && moves.length ? `
    <form id="move-form" class="act">
      <textarea name="note" placeholder="说明（流转原因）"></textarea>
      <div class="row">${moves.map((m) => `<button type="submit" class="move" data-to="${YZT.esc(m.to)}">${YZT.esc(m.name)} → ${YZT.esc(m.to)}</button>`).join("")}</div>
    </form>` : ""}
    ${canWrite && !w.final ? `
    <h3>上传举证照片</h3>
    <form id="evidence-form" class="act">
      <input type="file" name="file" accept="image/jpeg,image/png,image/webp,application/pdf" required>
      <div class="row">
        <label>拍摄时间 <input name="taken_at" type="datetime-local" required></label>
        <label>方位角 <input name="azimuth" type="number" min="0" max="359.9" step="0.1" style="width:5rem"></label>
      </div>
      <div class="row">
        <label>经度 <input name="lon" type="number" step="0.000001" value="${((d.bbox[0] + d.bbox[2]) / 2).toFixed(6)}" style="width:8rem"></label>
        <label>纬度 <input name="lat" type="number" step="0.000001" value="${((d.bbox[1] + d.bbox[3]) / 2).toFixed(6)}" style="width:8rem"></label>
      </div>
      <div class="row"><button type="submit">上传</button></div>
    </form>` : ""}
    ${!canWrite ? '<p class="muted">以核查员 (inspector) 身份登录后可记录认定、流转和举证。</p>' : ""}
    <h3>举证 (${d.evidence.length})</h3>
    <ul id="evidence-list">${d.evidence.map((e) => {
      const c = checks[e.evidence_id];
      const flags = c && c.flags && c.flags.length ? `<span class="flag">⚠ ${c.flags.map((f) => YZT.esc(f.message)).join("；")}</span>` : "";
      return `<li>${YZT.esc(e.filename)} · 拍摄 ${YZT.esc(e.taken_at)} · (${e.lon}, ${e.lat})${e.azimuth !== null ? " · 方位 " + e.azimuth + "°" : ""} · ${YZT.esc(e.uploaded_by)}${c && c.distance_m !== null ? ` · 距图斑 ${c.distance_m} m` : ""} ${flags}</li>`;
    }).join("")}</ul>
    <h3>操作留痕 (${d.history.length})</h3>
    <ol class="history" id="history">${d.history.map((h) => `<li data-seq="${h.seq}">${YZT.esc(h.at)} · <b>${YZT.esc(h.user)}</b>（${YZT.esc(h.role)}）·
      ${h.action === "evidence" ? "上传举证" : `${YZT.esc(h.from_status)} → ${YZT.esc(h.to_status)}`}
      ${h.to_judgement && h.to_judgement !== h.from_judgement ? " · 认定 " + YZT.esc(h.to_judgement) : ""}
      ${h.note ? " · " + YZT.esc(h.note) : ""}</li>`).join("")}</ol>`;
  $("list").hidden = true;
  const el = $("detail");
  el.innerHTML = html;
  el.hidden = false;
  el.dataset.jcbh = d.JCBH;
  el.dataset.version = String(w.version);
  $("back").addEventListener("click", closeDetail);
  $("print-report").addEventListener("click", () => downloadReport(d.JCBH));
  if ($("swipe-start")) $("swipe-start").addEventListener("click", () => enterSwipe(d));
  const jf = $("judge-form");
  if (jf) jf.addEventListener("submit", (ev) => { ev.preventDefault(); judge(jf); });
  const mf = $("move-form");
  if (mf) mf.querySelectorAll("button[data-to]").forEach((btn) => btn.addEventListener("click", (ev) => {
    ev.preventDefault(); move(btn.dataset.to, mf.note.value);
  }));
  const ef = $("evidence-form");
  if (ef) ef.addEventListener("submit", (ev) => { ev.preventDefault(); uploadEvidence(ef); });
}

async function downloadReport(jcbh) {
  try {
    await YZT.download(`/api/patches/${encodeURIComponent(jcbh)}/report.pdf`, `核查表_${jcbh}.pdf`);
    message(`已生成核查表 ${jcbh}`, true);
  } catch (e) { message(e.message, false); }
}

async function write(url, options, doneText) {
  const d = state.current;
  options.headers = Object.assign({ "If-Match": state.etag || `"${d.workflow.version}"` }, options.headers || {});
  try {
    const { body, etag } = await YZT.call(url, options);
    state.current = body.patch;
    state.etag = etag;
    renderDetail(body.patch);
    const f = state.patches.features.find((x) => x.properties.JCBH === body.patch.JCBH);
    if (f) {
      f.properties.status = body.patch.workflow.status;
      state.map.getSource("patches").setData(state.patches);
    }
    const flags = body.audit.after && body.audit.after.evidence && body.audit.after.evidence.checks
      ? body.audit.after.evidence.checks.flags : [];
    message(`${doneText}（记录 #${body.audit.seq}，版本 ${body.patch.workflow.version}）` +
            (flags.length ? `；照片已标记：${flags.map((x) => x.message).join("；")}` : ""), !flags.length);
  } catch (e) {
    if (e.status === 412) {
      message("该图斑已被他人修改，已重新加载最新内容，请核对后重试。", false);
      await openPatch(d.JCBH, false);
    } else {
      message(e.message, false);
    }
  }
}

function judge(form) {
  const choice = form.querySelector("input[name=judgement]:checked");
  if (!choice) { message("请选择认定结果（合法 / 违法 / 其他）", false); return; }
  return write(`/api/patches/${encodeURIComponent(state.current.JCBH)}/judgement`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ judgement: choice.value, note: form.note.value }),
  }, `已记录认定：${choice.value}`);
}

function move(to, note) {
  return write(`/api/patches/${encodeURIComponent(state.current.JCBH)}/transition`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ to, note }),
  }, `已流转至 ${to}`);
}

function uploadEvidence(form) {
  const data = new FormData(form);
  const local = form.taken_at.value;  // local time of the browser → ISO with its offset
  if (local) {
    const t = new Date(local);
    const off = -t.getTimezoneOffset();
    const sign = off >= 0 ? "+" : "-";
    const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
    data.set("taken_at", `${local.length === 16 ? local + ":00" : local}${sign}${pad(off / 60)}:${pad(off % 60)}`);
  }
  if (!form.azimuth.value) data.delete("azimuth");
  return write(`/api/patches/${encodeURIComponent(state.current.JCBH)}/evidence`, { method: "POST", body: data }, "已上传举证");
}

// --- before / after swipe ---------------------------------------------------------------------------------------------
function setSwipe(pct) {
  const box = $("swipe-box");
  box.style.clipPath = `inset(0 0 0 ${pct}%)`;
  $("swipe-line").style.left = `${pct}%`;
  document.body.dataset.swipe = String(pct);
}

function enterSwipe(d) {
  exitSwipe();
  const map = state.map;
  const before = state.config.rasters.find((r) => r.role === "image_before");
  const after = state.config.rasters.find((r) => r.role === "image_after");
  map.setLayoutProperty("raster-image_before", "visibility", "visible");
  map.moveLayer("raster-image_before", "patches-fill");  // the image above the land-use colours, below the patches
  if ($("toggle-raster-image_before")) $("toggle-raster-image_before").checked = true;
  fit(d.bbox, 18);
  $("swipe-box").hidden = false;
  $("swipe-ui").hidden = false;
  $("swipe-line").hidden = false;
  $("swipe-left").textContent = before.title;
  $("swipe-right").textContent = after.title;
  const other = new maplibregl.Map({
    container: "swipe-map", interactive: false, attributionControl: false, center: map.getCenter(), zoom: map.getZoom(),
    canvasContextAttributes: { preserveDrawingBuffer: true },
    style: { version: 8, sources: {
      after: { type: "raster", tiles: [location.origin + after.tiles], tileSize: 256, bounds: after.bounds, maxzoom: after.maxzoom },
      patch: { type: "geojson", data: d.geometry ? { type: "Feature", geometry: d.geometry, properties: {} } : { type: "FeatureCollection", features: [] } },
    }, layers: [{ id: "bg", type: "background", paint: { "background-color": "#222" } },
                { id: "after", type: "raster", source: "after" },
                { id: "patch", type: "line", source: "patch", paint: { "line-color": "#00e5ff", "line-width": 3 } }] },
  });
  const sync = () => other.jumpTo({ center: map.getCenter(), zoom: map.getZoom(), bearing: map.getBearing(), pitch: map.getPitch() });
  map.on("move", sync);
  other.once("idle", () => { document.body.dataset.swipeReady = "1"; });
  state.swipe = { other, sync };
  window.yztSwipeMap = other;
  setSwipe(Number($("swipe-range").value));
}

function exitSwipe() {
  if (!state.swipe) return;
  state.map.off("move", state.swipe.sync);
  const firstVector = state.map.getStyle().layers.find((l) => l.type !== "background" && l.type !== "raster");
  if (firstVector) state.map.moveLayer("raster-image_before", firstVector.id);
  state.map.setLayoutProperty("raster-image_before", "visibility", "none");
  if ($("toggle-raster-image_before")) $("toggle-raster-image_before").checked = false;
  state.swipe.other.remove();
  state.swipe = null;
  window.yztSwipeMap = null;
  $("swipe-box").hidden = true;
  $("swipe-ui").hidden = true;
  $("swipe-line").hidden = true;
  document.body.dataset.swipeReady = "0";
}

// --- search ----------------------------------------------------------------------------------------------------------
async function runSearch(q) {
  const list = $("search-hits");
  try {
    const { body } = await YZT.call(`/api/search?q=${encodeURIComponent(q)}`);
    list.innerHTML = body.hits.length ? body.hits.map((h, i) => `<li data-i="${i}"><b>${YZT.esc(h.kind)}</b> ${YZT.esc(h.label)}</li>`).join("")
      : `<li class="muted">未找到“${YZT.esc(q)}”</li>`;
    list.hidden = false;
    list.querySelectorAll("li[data-i]").forEach((li) => li.addEventListener("click", () => goTo(body.hits[Number(li.dataset.i)])));
    if (body.hits.length === 1 || (body.hits.length && body.hits[0].id === q)) goTo(body.hits[0]);
    document.body.dataset.searchHits = String(body.hits.length);
  } catch (e) {
    message(e.status === 401 ? "搜索需要先登录" : e.message, false);
  }
}

function goTo(hit) {
  $("search-hits").hidden = true;
  fit(hit.bbox, hit.layer === "xzq" ? 14 : 17);
  if (hit.layer === "flagged_patches") openPatch(hit.id, false);
  else state.map.getSource("selected").setData({ type: "Feature", properties: {}, geometry: { type: "Polygon", coordinates: [[
    [hit.bbox[0], hit.bbox[1]], [hit.bbox[2], hit.bbox[1]], [hit.bbox[2], hit.bbox[3]], [hit.bbox[0], hit.bbox[3]], [hit.bbox[0], hit.bbox[1]]]] } });
  document.body.dataset.found = hit.id;
}

// --- 合规性审查 -------------------------------------------------------------------------------------------------------
function drawSite() {
  const pts = state.drawing || [];
  const feats = pts.map((p) => ({ type: "Feature", properties: {}, geometry: { type: "Point", coordinates: p } }));
  if (pts.length >= 2) feats.push({ type: "Feature", properties: {}, geometry: { type: "LineString", coordinates: pts.length >= 3 ? [...pts, pts[0]] : pts } });
  state.map.getSource("site").setData({ type: "FeatureCollection", features: feats });
}

function startDrawing() {
  state.drawing = [];
  state.map.getCanvas().style.cursor = "crosshair";
  state.map.doubleClickZoom.disable();
  $("draw-hint").hidden = false;
  $("draw-finish").disabled = false;
  state.map.getSource("pieces").setData({ type: "FeatureCollection", features: [] });
  drawSite();
}

function finishDrawing() {
  const pts = state.drawing;
  state.drawing = null;
  state.map.getCanvas().style.cursor = "";
  state.map.doubleClickZoom.enable();
  $("draw-hint").hidden = true;
  $("draw-finish").disabled = true;
  if (!pts || pts.length < 3) { message("至少需要 3 个拐点", false); return; }
  const site = { type: "Polygon", coordinates: [[...pts, pts[0]]] };
  state.site = { json: site };
  submitReview(JSON.stringify(site), { "Content-Type": "application/geo+json" });
}

async function submitReview(body, headers) {
  $("review-result").innerHTML = '<p class="muted">审查中…</p>';
  try {
    const { body: r } = await YZT.call("/api/review/map", { method: "POST", body, headers });
    state.map.getSource("site").setData(r.site_geojson);
    state.map.getSource("pieces").setData(r.pieces);
    renderReview(r);
    document.body.dataset.reviewResult = r.result;
  } catch (e) {
    $("review-result").innerHTML = `<p class="message err">${YZT.esc(e.message)}</p>`;
    document.body.dataset.reviewResult = "error";
  }
}

function renderReview(r) {
  const rules = r.rules.map((x) => `<tr class="${x.passed ? "" : "bad"}"><td>${YZT.esc(x.title)}</td><td class="num">${YZT.m2(x.value_m2)}</td><td class="status">${YZT.esc(x.result)}</td></tr>`).join("");
  const pieces = r.pieces.features.map((f) => `<li>${YZT.esc(f.properties.title)} ${YZT.esc(f.properties.id || "")} · ${YZT.m2(f.properties.area_m2)} m²</li>`).join("");
  $("review-result").innerHTML = `
    <h3>审查结论：<span id="review-verdict" class="${r.passed ? "good" : "bad"}">${YZT.esc(r.result)}</span></h3>
    ${kv([["用地面积", `${YZT.m2(r.site.area_m2)} m²`], ["区域外", `${YZT.m2(r.site.area_outside_region_m2)} m²`],
          ["坐标来源", YZT.esc((r.source && (r.source.filename || r.source.format)) || "")]])}
    <table class="grid small"><thead><tr><th>规则</th><th class="num">面积(m²)</th><th>结果</th></tr></thead><tbody>${rules}</tbody></table>
    <h3>叠加图斑 (${r.pieces.features.length})</h3><ul id="review-pieces">${pieces}</ul>
    <p><button type="button" id="review-pdf" class="primary">下载审查报告 (PDF)</button></p>`;
  $("review-pdf").addEventListener("click", downloadReviewPdf);
  fit(r.input.bbox_crs84, 17);
}

async function downloadReviewPdf() {
  const opts = { method: "POST" };
  if (state.site.json) { opts.body = JSON.stringify(state.site.json); opts.headers = { "Content-Type": "application/geo+json" }; }
  else { const fd = new FormData(); fd.append("file", state.site.file); opts.body = fd; }
  try {
    const { body, res } = await YZT.call("/api/review/report.pdf", opts);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(body);
    a.download = "合规性审查.pdf";
    document.body.appendChild(a); a.click(); a.remove();
    message("已生成审查报告", true);
    return res;
  } catch (e) { message(e.message, false); }
}

// --- tabs, filters, start -----------------------------------------------------------------------------------------------
function showTab(name) {
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.tab === name));
  for (const pane of ["inbox", "review", "layers"]) $(`tab-${pane}`).hidden = pane !== name;
}

async function start() {
  const [{ body: config }, { body: cfg }, { body: wf }] = await Promise.all([
    YZT.call("/api/config"), YZT.call("/api/map"), YZT.call("/api/workflow")]);
  state.config = cfg;
  state.ogcPrefix = config.ogc_prefix;
  state.workflow = wf;
  if (config.region_name) {
    $("region-name").textContent = config.region_name;
    document.title = `${config.region_name} · 图斑核查工作台`;
  }
  for (const s of Object.keys(wf.statuses)) $("f-status").insertAdjacentHTML("beforeend", `<option>${YZT.esc(s)}</option>`);
  for (const def of cfg.layers) TITLE_OF[def.name] = def.title;
  const style = buildStyle(cfg);
  const map = new maplibregl.Map({
    container: "map", style, bounds: cfg.bounds ? [[cfg.bounds[0], cfg.bounds[1]], [cfg.bounds[2], cfg.bounds[3]]] : undefined,
    center: cfg.bounds ? undefined : [105, 35], zoom: cfg.bounds ? undefined : 4, maxZoom: 20,
    localIdeographFontFamily: "'Noto Sans CJK SC', 'Noto Sans SC', sans-serif",
    canvasContextAttributes: { preserveDrawingBuffer: true }, attributionControl: { compact: true, customAttribution: "本库图层 (OGC API Tiles) · 三调地类颜色" },
    transformRequest: (url) => (sameOrigin(url) && YZT.token() ? { url, headers: { Authorization: "Bearer " + YZT.token() } } : { url }),
  });
  state.map = map;
  window.yztMap = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-left");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  map.on("error", (ev) => { if (ev && ev.error && !String(ev.error.message || "").includes("204")) console.warn("map:", ev.error.message); });
  await new Promise((resolve) => map.on("load", resolve));
  map.on("idle", () => { document.body.dataset.mapIdle = String(Number(document.body.dataset.mapIdle || 0) + 1); });
  buildSwitcher(cfg, style);
  map.on("click", (ev) => {
    if (state.drawing) { state.drawing.push([ev.lngLat.lng, ev.lngLat.lat]); drawSite(); return; }
    featureInfo(ev);
  });
  map.on("dblclick", (ev) => { if (state.drawing) { ev.preventDefault(); finishDrawing(); } });
  for (const id of ["patches-fill", "patches-dot"]) {
    map.on("mouseenter", id, () => { map.getCanvas().style.cursor = state.drawing ? "crosshair" : "pointer"; });
    map.on("mouseleave", id, () => { map.getCanvas().style.cursor = state.drawing ? "crosshair" : ""; });
  }

  state.me = await YZT.login($("login"), $("who"), async (me) => { state.me = me; await fillFilters(); loadPatches(); if (state.current) renderDetail(state.current); });
  await fillFilters();
  await loadPatches();
  document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => showTab(t.dataset.tab)));
  ["f-verdict", "f-status", "f-xzq", "f-round"].forEach((id) => $(id).addEventListener("change", () => {
    state.current = null; $("detail").hidden = true; $("list").hidden = false; loadPatches(); }));
  $("round-report").addEventListener("click", async () => {
    const r = $("f-round").value;
    try { await YZT.download(`/api/rounds/${encodeURIComponent(r)}/report.pdf`, `核查表_批次_${r}.pdf`); message(`已生成批次 ${r} 核查表`, true); }
    catch (e) { message(e.message, false); }
  });
  $("exchange-export").addEventListener("click", async () => {
    const q = patchQuery(); q.delete("f"); q.delete("limit");
    try { await YZT.download(`/api/exchange/wpzf?${q.toString()}`, "WPZFTB.zip"); message("已导出卫片执法交换数据", true); }
    catch (e) { message(e.message, false); }
  });
  $("search").addEventListener("submit", (ev) => { ev.preventDefault(); const q = $("search-q").value.trim(); if (q) runSearch(q); });
  $("swipe-range").addEventListener("input", (ev) => setSwipe(Number(ev.target.value)));
  $("swipe-exit").addEventListener("click", exitSwipe);
  $("draw-start").addEventListener("click", startDrawing);
  $("draw-finish").addEventListener("click", finishDrawing);
  $("draw-clear").addEventListener("click", () => {
    state.drawing = null; state.site = null;
    map.getSource("site").setData({ type: "FeatureCollection", features: [] });
    map.getSource("pieces").setData({ type: "FeatureCollection", features: [] });
    $("review-result").innerHTML = "";
  });
  $("review-upload").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const file = $("review-file").files[0];
    if (!file) { message("请选择界址点文件 (.txt) 或 shapefile 压缩包 (.zip)", false); return; }
    state.site = { file };
    const fd = new FormData(); fd.append("file", file);
    submitReview(fd, {});
  });
  document.body.dataset.ready = "1";
}

async function fillFilters() {
  const t = $("f-xzq"), r = $("f-round");
  if (t.options.length <= 1) {
    try {
      const { body } = await YZT.call(`${state.ogcPrefix}/collections/xzq/items?f=json&limit=1000&XZQJB=township&skipGeometry=true`);
      body.features.forEach((f) => t.insertAdjacentHTML("beforeend", `<option value="${YZT.esc(f.properties.XZQDM)}">${YZT.esc(f.properties.XZQMC)}</option>`));
    } catch (e) { /* anonymous OGC access may be off */ }
  }
  if (r.options.length > 1) return;
  try {
    const { body } = await YZT.call("/api/patches?limit=10000");
    const rounds = [...new Set(body.items.flatMap((p) => p.rounds || []))].sort();
    rounds.forEach((x) => r.insertAdjacentHTML("beforeend", `<option>${YZT.esc(x)}</option>`));
  } catch (e) { /* not logged in yet */ }
}

start().catch((e) => { message("页面启动失败: " + e.message, false); document.body.dataset.ready = "error"; console.error(e); });
