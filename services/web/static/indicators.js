/* yizhangtu — indicator tables and charts, drill-down to records, the 绩效自评表. */
"use strict";

const $ = (id) => document.getElementById(id);
const st = { data: null, chart: null, me: null };
Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;

function message(text, ok) {
  const el = $("message");
  el.textContent = text;
  el.className = "message " + (ok ? "ok" : "err");
}

function fmt(v, d) {
  if (v === null || v === undefined) return "—";
  return Number(v).toLocaleString("zh-CN", { minimumFractionDigits: d, maximumFractionDigits: d });
}

async function load() {
  const level = $("level").value, unit = $("area-unit").value;
  try {
    const { body } = await YZT.call(`/api/indicators?level=${level}&area_unit=${unit}`);
    st.data = body;
    $("run").textContent = `指标运行 ${body.run.run_id.slice(0, 12)}… (${body.run.finished_at})`;
    renderTables(body);
    renderChartOptions(body);
    renderChart();
    message("", true);
  } catch (e) {
    $("tables").innerHTML = "";
    message(e.status === 401 ? "请先输入访问令牌登录。" : e.message, false);
  }
}

function renderTables(body) {
  const html = body.tables.map((t) => `<h3>${YZT.esc(t.level_zh)}级 · ${YZT.esc(t.group)}</h3>
    <table class="grid"><thead><tr>${t.columns.map((c) => `<th>${YZT.esc(c)}</th>`).join("")}</tr></thead>
    <tbody>${t.rows.map((r) => `<tr>${r.map((v, i) => i < 2 ? `<td>${YZT.esc(v)}</td>` :
      `<td class="num" data-unit="${YZT.esc(r[0])}" data-col="${i}" data-table="${body.tables.indexOf(t)}">${fmt(v, t.decimals[i - 2])}</td>`).join("")}</tr>`).join("")}</tbody></table>`).join("");
  $("tables").innerHTML = html;
  $("tables").querySelectorAll("td.num").forEach((td) => td.addEventListener("click", () => {
    const t = body.tables[Number(td.dataset.table)];
    const name = t.columns[Number(td.dataset.col)];
    const code = indicatorCode(name);
    if (code) drill(code, td.dataset.unit);
  }));
}

function indicatorCode(column) {
  const v = st.data.values.find((x) => column.startsWith(x.name + "("));
  return v ? v.indicator : null;
}

function renderChartOptions(body) {
  const sel = $("chart-indicator");
  const keep = sel.value;
  const seen = new Map();
  body.values.forEach((v) => seen.set(v.indicator, v.name));
  sel.innerHTML = [...seen].map(([k, n]) => `<option value="${YZT.esc(k)}">${YZT.esc(n)}</option>`).join("");
  sel.value = seen.has(keep) ? keep : (seen.has("cultivated_area") ? "cultivated_area" : sel.options[0]?.value);
}

function renderChart() {
  const code = $("chart-indicator").value, unit = $("area-unit").value;
  const rows = st.data.values.filter((v) => v.indicator === code);
  if (!rows.length) return;
  const area = rows[0].unit === "m2";
  const values = rows.map((r) => area ? r["value_" + unit] : r.value_rounded);
  const label = `${rows[0].name}${area ? "（" + ({ ha: "公顷", mu: "亩", m2: "平方米" })[unit] + "）" : rows[0].unit === "percent" ? "（%）" : ""}`;
  if (st.chart) st.chart.destroy();
  st.chart = new Chart($("chart"), {
    type: "bar",
    data: { labels: rows.map((r) => r.unit_name), datasets: [{ label, data: values, backgroundColor: "#4a7fb5" }] },
    options: { responsive: true, maintainAspectRatio: false, animation: false,
               plugins: { title: { display: true, text: label } } },
  });
}

async function drill(code, unit) {
  try {
    const { body } = await YZT.call(`/api/indicators/${encodeURIComponent(code)}/drilldown?unit=${unit}&limit=50`);
    const parts = Object.entries(body.layers).map(([layer, l]) => {
      const keys = l.records.length ? Object.keys(l.records[0]) : [];  // the record id first (JCBH, conflict_id …)
      const cols = [l.id_field, ...keys.filter((k) => k !== l.id_field)].filter((k) => keys.includes(k)).slice(0, 8);
      return `<h3>${YZT.esc(layer)} · ${l.total} 条（按 ${YZT.esc(l.id_field)}）</h3>
        <table class="grid"><thead><tr>${cols.map((c) => `<th>${YZT.esc(c)}</th>`).join("")}</tr></thead>
        <tbody>${l.records.map((r) => `<tr>${cols.map((c) => `<td>${YZT.esc(r[c])}</td>`).join("")}</tr>`).join("")}</tbody></table>
        ${l.total > l.records.length ? `<p class="muted">仅显示前 ${l.records.length} 条</p>` : ""}`;
    }).join("");
    $("drilldown").className = "";
    $("drilldown").innerHTML = `<p><b>${YZT.esc(code)}</b> · ${YZT.esc(unit)} = ${fmt(body.value, 2)} ${YZT.esc(body.unit)}</p>
      <p class="reason">${YZT.esc(body.rule)}</p>${parts || '<p class="muted">没有记录</p>'}`;
  } catch (e) { message(e.message, false); }
}

async function selfeval() {
  try {
    const { body } = await YZT.call("/api/selfeval?targets=sample");
    $("selfeval").innerHTML = `<p>${YZT.esc(body.title)} · 总得分 <b>${fmt(body.total, 2)}</b> / ${fmt(body.total_weight, 0)}</p>
      <table class="grid"><thead><tr><th>三级指标</th><th>分值</th><th>A</th><th>B</th><th>得分</th></tr></thead><tbody>
      ${body.rows.map((r) => `<tr><td>${YZT.esc(r["三级指标"])}</td><td class="n">${fmt(r["分值"], 0)}</td>
        <td>${YZT.esc(r["符号"])} ${fmt(r["年度指标值"], 2)} ${YZT.esc(r["单位"])}</td><td>${fmt(r["实际完成值"], 2)}</td>
        <td>${fmt(r["得分"], 2)}</td></tr>`).join("")}</tbody></table>`;
  } catch (e) { $("selfeval").innerHTML = `<p class="muted">${YZT.esc(e.message)}</p>`; }
}

async function start() {
  const { body: config } = await YZT.call("/api/config");
  if (config.region_name) $("region-name").textContent = config.region_name;
  st.me = await YZT.login($("login"), $("who"), (me) => { st.me = me; $("new-run").hidden = me.role !== "admin"; load(); selfeval(); });
  $("new-run").hidden = st.me.role !== "admin";
  $("level").addEventListener("change", load);
  $("area-unit").addEventListener("change", load);
  $("chart-indicator").addEventListener("change", renderChart);
  $("selfeval-download").addEventListener("click", () => YZT.download("/api/selfeval.xlsx?targets=sample", "selfeval.xlsx")
    .catch((e) => message(e.message, false)));
  $("new-run").addEventListener("click", async () => {
    try { await YZT.call("/api/indicators/runs", { method: "POST" }); message("指标已重新计算", true); load(); selfeval(); }
    catch (e) { message(e.message, false); }
  });
  await load();
  await selfeval();
  document.body.dataset.ready = "1";
}

start().catch((e) => message("页面启动失败: " + e.message, false));
