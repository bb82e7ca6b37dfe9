/* yizhangtu — the map workbench: store layers from the OGC API, flagged patches from /api/patches, a patch's
   detail, judgement, moves and evidence. No tiles: the store's own layers are the map. */
"use strict";

const VERDICT_COLOR = { legal: "#1a9850", partly_approved: "#fdae61", suspected_illegal: "#d73027", other: "#74add1" };
const VERDICT_ZH = { legal: "合法", partly_approved: "少批多占", suspected_illegal: "未批先建", other: "其他" };
const STATUS_STYLE = {
  "待核查": { color: "#222222", dashArray: "5 4", weight: 2.5 },
  "已核查": { color: "#6a3d9a", dashArray: null, weight: 2.5 },
  "立案": { color: "#b2182b", dashArray: null, weight: 3.5 },
  "整改中": { color: "#ff7f00", dashArray: null, weight: 3 },
  "已整改": { color: "#33a02c", dashArray: null, weight: 3 },
  "销号": { color: "#888888", dashArray: null, weight: 1.5 },
};

const state = { config: null, me: { role: "anonymous" }, layers: {}, patchLayer: null, patchIndex: {},
                markerLayer: L.layerGroup(), current: null, etag: null, workflow: null };
const map = L.map("map", { zoomControl: true, attributionControl: true, preferCanvas: false });
map.attributionControl.setPrefix(false);
map.attributionControl.addAttribution("数据: 本库图层 (OGC API)");
const $ = (id) => document.getElementById(id);

function message(text, ok) {
  const el = $("message");
  el.textContent = text;
  el.className = "message " + (ok ? "ok" : "err");
}

function patchStyle(p) {
  const s = STATUS_STYLE[p.status] || { color: "#000", weight: 2 };
  return Object.assign({ fillColor: VERDICT_COLOR[p.verdict] || "#999", fillOpacity: 0.55, opacity: 1 }, s);
}

// --- store layers (OGC API items, bbox-limited) ---------------------------------------------------------------
async function loadLayer(def) {
  const entry = state.layers[def.name];
  if (!map.hasLayer(entry.group)) return;
  if (def.min_zoom && map.getZoom() < def.min_zoom) { entry.group.clearLayers(); return; }
  const b = map.getBounds();
  const bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => v.toFixed(6)).join(",");
  const url = `${state.config.ogc_prefix}/collections/${def.name}/items?f=json&limit=5000&bbox=${bbox}`;
  try {
    const { body } = await YZT.call(url, { headers: { Accept: "application/geo+json" } });
    entry.group.clearLayers();
    entry.group.addData(body);
    entry.group.eachLayer((l) => { const el = l.getElement && l.getElement(); if (el) el.classList.add("yzt-layer-" + def.name); });
  } catch (e) {
    message(`图层 ${def.title} 加载失败: ${e.message}`, false);
  }
}

function makeLayer(def) {
  const style = def.style || {};
  const group = L.geoJSON(null, {
    style: () => style,
    pointToLayer: (f, latlng) => L.circleMarker(latlng, Object.assign({ radius: 4 }, style)),
    onEachFeature: (f, layer) => {
      const props = f.properties || {};
      const label = props.XZQMC || props.GHFQMC || props.PZWH || props.DLMC || props.JCBH || props.BSM || f.id;
      if (label) layer.bindTooltip(`${def.title}: ${YZT.esc(label)}`, { sticky: true });
    },
    interactive: def.name !== "xzq",
  });
  state.layers[def.name] = { def, group };
  return group;
}

// --- flagged patches --------------------------------------------------------------------------------------------
function patchQuery() {
  const q = new URLSearchParams({ f: "geojson", limit: "10000" });
  if ($("f-verdict").value) q.set("verdict", $("f-verdict").value);
  if ($("f-status").value) q.set("status", $("f-status").value);
  if ($("f-xzq").value) q.set("xzq", $("f-xzq").value);
  return q;
}

async function loadPatches() {
  if (!state.patchLayer) return;  // not started yet: start() loads them
  let body;
  try {
    ({ body } = await YZT.call("/api/patches?" + patchQuery().toString()));
  } catch (e) {
    state.patchLayer.clearLayers();
    document.body.dataset.patchesDrawn = "0";
    $("count").textContent = "";
    $("list").innerHTML = `<p class="muted">${YZT.esc(e.status === 401 ? "请先输入访问令牌登录以查看监测图斑。" : e.message)}</p>`;
    return;
  }
  state.patchLayer.clearLayers();
  state.patchIndex = {};
  state.patchLayer.addData(body);
  let drawn = 0;
  state.patchLayer.eachLayer((layer) => {
    const p = layer.feature.properties;
    state.patchIndex[p.JCBH] = layer;
    const el = layer.getElement();
    if (el) {
      el.classList.add("yzt-patch");
      el.dataset.jcbh = p.JCBH;
      el.dataset.verdict = p.verdict;
      el.dataset.status = p.status;
      drawn += 1;
    }
  });
  document.body.dataset.patchesDrawn = String(drawn);
  // patches are small at county scale: a dot in the verdict's colour marks each one until it is big enough
  state.markerLayer.clearLayers();
  body.features.forEach((f) => {
    const layer = state.patchIndex[f.properties.JCBH];
    if (!layer) return;
    const m = L.circleMarker(layer.getBounds().getCenter(), { radius: 6, weight: 1.5, color: "#fff",
      fillColor: VERDICT_COLOR[f.properties.verdict] || "#999", fillOpacity: 0.95, className: "yzt-patch-marker" });
    m.bindTooltip(`${f.properties.JCBH} · ${f.properties.verdict_zh} · ${f.properties.status}`);
    m.on("click", () => { openPatch(f.properties.JCBH, true); });
    state.markerLayer.addLayer(m);
  });
  toggleMarkers();
  $("count").textContent = `共 ${body.numberMatched} 个`;
  renderList(body.features.map((f) => f.properties));
}

function renderList(items) {
  if (state.current) return;
  const rows = items.map((p) => `<tr data-jcbh="${YZT.esc(p.JCBH)}"><td>${YZT.esc(p.JCBH)}</td>
    <td>${YZT.esc(p.township || "")}${YZT.esc(p.village || "")}</td><td class="num">${YZT.m2(p.area_m2)}</td>
    <td><span class="badge" style="background:${VERDICT_COLOR[p.verdict]}">${YZT.esc(p.verdict_zh)}</span></td>
    <td>${YZT.esc(p.status)}</td></tr>`).join("");
  $("list").innerHTML = `<table><thead><tr><th>监测编号</th><th>位置</th><th class="num">面积(m²)</th><th>预判</th>
    <th>状态</th></tr></thead><tbody>${rows}</tbody></table>`;
  $("list").querySelectorAll("tr[data-jcbh]").forEach((tr) =>
    tr.addEventListener("click", () => openPatch(tr.dataset.jcbh, true)));
}

function toggleMarkers() {
  const show = map.getZoom() < 15 && map.hasLayer(state.patchLayer);
  if (show && !map.hasLayer(state.markerLayer)) state.markerLayer.addTo(map);
  if (!show && map.hasLayer(state.markerLayer)) map.removeLayer(state.markerLayer);
}

// --- one patch --------------------------------------------------------------------------------------------------
async function openPatch(jcbh, zoom) {
  try {
    const { body, etag } = await YZT.call(`/api/patches/${encodeURIComponent(jcbh)}`);
    state.current = body;
    state.etag = etag;
    renderDetail(body);
    const layer = state.patchIndex[body.JCBH];
    if (zoom && layer) map.fitBounds(layer.getBounds(), { maxZoom: 17, padding: [40, 40] });
  } catch (e) {
    message(`图斑 ${jcbh}: ${e.message}`, false);
  }
}

function closeDetail() {
  state.current = null;
  $("detail").hidden = true;
  $("list").hidden = false;
  loadPatches();
}

function kv(rows) {
  return `<table class="kv">${rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("")}</table>`;
}

function renderDetail(d) {
  const b = d.breakdown, lu = b.land_use_before, cl = b.control_lines, w = d.workflow;
  const canWrite = ["inspector", "admin"].includes(state.me.role);
  const judgements = (state.workflow && Object.keys(state.workflow.judgements)) || ["合法", "违法", "其他"];
  const moves = w.allowed_moves.filter((m) => m.judgement !== "required");
  const html = `
    <p><button type="button" id="back">← 返回列表</button></p>
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
    <ul>${d.evidence.map((e) => `<li>${YZT.esc(e.filename)} · 拍摄 ${YZT.esc(e.taken_at)} · (${e.lon}, ${e.lat})${e.azimuth !== null ? " · 方位 " + e.azimuth + "°" : ""} · ${YZT.esc(e.uploaded_by)}</li>`).join("")}</ul>
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
  const jf = $("judge-form");
  if (jf) jf.addEventListener("submit", (ev) => { ev.preventDefault(); judge(jf); });
  const mf = $("move-form");
  if (mf) mf.querySelectorAll("button[data-to]").forEach((btn) => btn.addEventListener("click", (ev) => {
    ev.preventDefault(); move(btn.dataset.to, mf.note.value);
  }));
  const ef = $("evidence-form");
  if (ef) ef.addEventListener("submit", (ev) => { ev.preventDefault(); uploadEvidence(ef); });
}

async function write(url, options, doneText) {
  const d = state.current;
  options.headers = Object.assign({ "If-Match": state.etag || `"${d.workflow.version}"` }, options.headers || {});
  try {
    const { body, etag } = await YZT.call(url, options);
    state.current = body.patch;
    state.etag = etag;
    renderDetail(body.patch);
    const layer = state.patchIndex[body.patch.JCBH];
    if (layer) {
      layer.feature.properties.status = body.patch.workflow.status;
      layer.setStyle(patchStyle(layer.feature.properties));
      const el = layer.getElement();
      if (el) el.dataset.status = body.patch.workflow.status;
    }
    message(`${doneText}（记录 #${body.audit.seq}，版本 ${body.patch.workflow.version}）`, true);
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
  return write(`/api/patches/${encodeURIComponent(state.current.JCBH)}/evidence`, { method: "POST", body: data },
    "已上传举证");
}

// --- start --------------------------------------------------------------------------------------------------------
async function start() {
  const { body: config } = await YZT.call("/api/config");
  state.config = config;
  if (config.region_name) {
    $("region-name").textContent = config.region_name;
    document.title = `${config.region_name} · 图斑核查工作台`;
  }
  const { body: wf } = await YZT.call("/api/workflow");
  state.workflow = wf;
  for (const s of Object.keys(wf.statuses)) $("f-status").insertAdjacentHTML("beforeend", `<option>${YZT.esc(s)}</option>`);
  state.me = await YZT.login($("login"), $("who"), (me) => { state.me = me; loadPatches(); if (state.current) renderDetail(state.current); });

  const overlays = {};
  for (const def of config.layers) {
    const group = makeLayer(def);
    overlays[def.title] = group;
    if (def.on) group.addTo(map);
  }
  state.patchLayer = L.geoJSON(null, {
    style: (f) => patchStyle(f.properties),
    onEachFeature: (f, layer) => {
      layer.bindTooltip(`${f.properties.JCBH} · ${f.properties.verdict_zh} · ${f.properties.status}`, { sticky: true });
      layer.on("click", () => openPatch(f.properties.JCBH, false));
    },
  }).addTo(map);
  overlays["监测图斑 (核查)"] = state.patchLayer;
  map.on("zoomend", toggleMarkers);
  L.control.layers(null, overlays, { collapsed: false }).addTo(map);
  L.control.scale({ imperial: false }).addTo(map);
  const legend = L.control({ position: "bottomleft" });
  legend.onAdd = () => {
    const div = L.DomUtil.create("div", "legend");
    div.innerHTML = "<b>预判</b><br>" + Object.entries(VERDICT_ZH).map(([k, v]) => `<i style="background:${VERDICT_COLOR[k]}"></i>${v}`).join("<br>") +
      "<br><b>状态 (边框)</b><br>" + Object.entries(STATUS_STYLE).map(([k, s]) => `<i style="border:2px ${s.dashArray ? "dashed" : "solid"} ${s.color}"></i>${k}`).join("<br>");
    return div;
  };
  legend.addTo(map);

  // the region's extent from the 行政区 layer (county row), else the patches
  let fitted = false;
  if (state.layers.xzq) {
    try {
      const { body } = await YZT.call(`${config.ogc_prefix}/collections/xzq/items?f=json&limit=1000`);
      const towns = body.features.filter((f) => f.properties.XZQJB === "township");
      towns.forEach((f) => $("f-xzq").insertAdjacentHTML("beforeend", `<option value="${YZT.esc(f.properties.XZQDM)}">${YZT.esc(f.properties.XZQMC)}</option>`));
      const county = L.geoJSON(body.features.filter((f) => f.properties.XZQJB === "county"));
      if (county.getLayers().length) { map.fitBounds(county.getBounds()); fitted = true; }
    } catch (e) { /* anonymous OGC access may be off: the patches give the extent */ }
  }
  await loadPatches();
  if (!fitted) {
    const b = state.patchLayer.getBounds();
    if (b.isValid()) map.fitBounds(b); else map.setView([35, 105], 4);
  }
  map.on("moveend", () => config.layers.forEach((def) => loadLayer(def)));
  map.on("overlayadd overlayremove", toggleMarkers);
  map.on("overlayadd", (ev) => { const e = Object.values(state.layers).find((x) => x.group === ev.layer); if (e) loadLayer(e.def); });
  config.layers.forEach((def) => loadLayer(def));
  ["f-verdict", "f-status", "f-xzq"].forEach((id) => $(id).addEventListener("change", () => { state.current = null; $("detail").hidden = true; $("list").hidden = false; loadPatches(); }));
  document.body.dataset.ready = "1";
}

start().catch((e) => { message("页面启动失败: " + e.message, false); document.body.dataset.ready = "error"; });
