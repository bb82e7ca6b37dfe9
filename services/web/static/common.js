/* yizhangtu — shared helpers of the pages: the token, JSON calls with clear error messages, formatting. */
"use strict";

const YZT = (() => {
  const KEY = "yzt-token";
  const token = () => localStorage.getItem(KEY) || "";

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const t = token();
    if (t) h["Authorization"] = "Bearer " + t;
    return h;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.description) || ("HTTP " + status));
      this.status = status;
      this.body = body || {};
    }
  }

  async function call(url, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = headers(opts.headers);
    let res = await fetch(url, opts);
    if (res.status === 401 && token() && (opts.method || "GET").toUpperCase() === "GET") {
      // a revoked or expired token is refused everywhere (401): the open resources (config, workflow …) are
      // read again without it, so the page still starts and its login box says the token is not valid
      const bare = Object.assign({}, opts, { headers: Object.assign({}, opts.headers) });
      delete bare.headers["Authorization"];
      const retry = await fetch(url, bare);
      if (retry.ok) res = retry;
    }
    const type = res.headers.get("content-type") || "";
    if (!res.ok) {
      let body = null;
      if (type.includes("json")) body = await res.json();
      throw new ApiError(res.status, body);
    }
    if (type.includes("json")) return { body: await res.json(), etag: res.headers.get("ETag"), res };
    return { body: await res.blob(), etag: res.headers.get("ETag"), res };
  }

  const esc = (v) => String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const m2 = (v) => (v === null || v === undefined) ? "—" :
    Number(v).toLocaleString("zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

  async function login(form, whoEl, onChange) {
    const input = form.querySelector("input");
    input.value = token();
    async function show() {
      try {
        const { body } = await call("/api/me");
        whoEl.textContent = body.role === "anonymous" ? "未登录" : `${body.user}（${body.role}）`;
        whoEl.dataset.role = body.role;
        return body;
      } catch (e) {
        whoEl.textContent = "令牌无效";
        whoEl.dataset.role = "invalid";
        return { role: "invalid" };
      }
    }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      localStorage.setItem(KEY, input.value.trim());
      const me = await show();
      if (onChange) onChange(me);
    });
    return show();
  }

  async function download(url, fallbackName) {
    const { body, res } = await call(url);
    const cd = res.headers.get("content-disposition") || "";
    const m = /filename="([^"]+)"/.exec(cd);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(body);
    a.download = m ? m[1] : fallbackName;
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  return { call, headers, token, esc, m2, login, download, ApiError };
})();
