/* /officer: an officer's queue of 随手拍 cases and the steps of handling.
   The API key is kept in this phone's localStorage (退出 clears it) and sent as X-API-Key to
   GET /api/v1/cases/queue (overdue first, then by deadline: shown in that order) and
   POST /api/v1/cases/{id}/actions. Every text from the API goes into the page as text
   (textContent), never as HTML. No dialogs: reasons, grid codes and dates are asked in a small
   form under the case. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var root = $("officer"), cfg = root.dataset;
  var STORE = "geo_service.officer.key";
  var busy = false;
  // What each status allows: [action, button text, what it asks for].
  var STEPS = {
    reported: [["register", "立案"]],
    registered: [["dispatch", "派遣"]],
    dispatched: [["handle", "处置"]],
    handled: [["verify", "核查通过"], ["reject", "核查未通过", "reason"]],
    verified: [["close", "结案"]]
  };
  var AWAITING = { reported: 1, registered: 1, dispatched: 1 };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function getKey() { try { return localStorage.getItem(STORE) || ""; } catch (e) { return ""; } }
  function setKey(k) { try { localStorage.setItem(STORE, k); } catch (e) { /* private mode */ } }
  function clearKey() { try { localStorage.removeItem(STORE); } catch (e) { /* private mode */ } }

  // An ISO time (any offset) as Beijing wall-clock text, whatever the phone's own zone.
  function beijing(iso) {
    var t = Date.parse(iso || "");
    if (!isFinite(t)) return iso || "";
    return new Date(t + 8 * 3600 * 1000).toISOString().slice(0, 16).replace("T", " ");
  }
  function readJson(r) {
    return r.text().then(function (t) {
      var body = null;
      try { body = t ? JSON.parse(t) : null; } catch (e) { body = null; }
      return { ok: r.ok, status: r.status, body: body };
    });
  }
  function errorText(res) {
    if (res.status === 401) return "密钥无效";
    if (res.status === 403) return "无权处理此案件";
    if (res.status === 409) return "案件状态已变化，请刷新";
    var body = res.body || {};
    if (typeof body.detail === "string" && body.detail) return "操作失败：" + body.detail;
    if (res.status === 429) return "操作太频繁，请稍后再试";
    if (res.status >= 500) return "服务暂时不可用，请稍后重试";
    return "操作失败（" + res.status + "）";
  }
  function showError(text) { var e = $("error"); e.textContent = text; e.hidden = false; }
  function clearError() { $("error").hidden = true; $("error").textContent = ""; }
  function api(url, init) {
    init = init || {};
    init.headers = init.headers || {};
    init.headers.Accept = "application/json";
    init.headers["X-API-Key"] = getKey();
    init.cache = "no-store";
    return fetch(url, init).then(readJson, function () {
      return { ok: false, status: 0, body: { detail: "网络不稳定，请稍后重试" } };
    });
  }

  // ---- key -------------------------------------------------------------------------------
  function showLogin(message) {
    $("login").hidden = false;
    $("desk").hidden = true;
    $("queue").hidden = true;
    $("empty").hidden = true;
    $("queue").textContent = "";
    if (message) showError(message); else clearError();
    $("key").focus();
  }
  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var k = $("key").value.trim();
    if (!k) { showError("请输入密钥"); return; }
    setKey(k);
    $("key").value = "";
    load();
  });
  $("logout").addEventListener("click", function () { clearKey(); showLogin(""); });
  $("refresh").addEventListener("click", function () { load(); });

  // ---- queue -----------------------------------------------------------------------------
  function load() {
    if (!getKey()) { showLogin(""); return; }
    $("summary").textContent = "正在加载…";
    return api(cfg.queue + "?limit=200").then(function (res) {
      if (res.status === 401) { clearKey(); showLogin("密钥无效"); return; }
      $("login").hidden = true;
      $("desk").hidden = false;
      if (!res.ok || !res.body || !Array.isArray(res.body.cases)) {
        $("summary").textContent = "";
        showError(errorText(res));
        return;
      }
      clearError();
      render(res.body);
    });
  }
  function render(body) {
    var list = $("queue"), cases = body.cases, late = 0;
    list.textContent = "";
    cases.forEach(function (c) { if (c.overdue) late += 1; list.appendChild(item(c)); });
    var total = typeof body.numberMatched === "number" ? body.numberMatched : cases.length;
    $("summary").textContent = "共 " + total + " 件待办" + (late ? "，其中 " + late + " 件已超时" : "");
    list.hidden = cases.length === 0;
    $("empty").hidden = cases.length !== 0;
  }
  function fact(dl, term, value) {
    dl.appendChild(el("dt", "", term));
    var dd = el("dd");
    if (value && value.nodeType) dd.appendChild(value); else dd.textContent = value;
    dl.appendChild(dd);
    return dd;
  }
  function item(c) {
    var li = el("li", "card case");
    li.dataset.id = c.service_request_id;
    var head = el("div", "row");
    var link = el("a", "name", c.service_name || c.service_code);
    link.href = cfg.page + encodeURIComponent(c.service_request_id) + "/page";
    head.appendChild(link);
    var badges = el("span");
    badges.appendChild(el("span", "badge open status", c.status_text));
    if (c.overdue) badges.appendChild(el("span", "badge overdue", "已超时"));
    head.appendChild(badges);
    li.appendChild(head);
    li.appendChild(el("div", "code num", "案件编号 " + c.service_request_id));
    if (c.address) li.appendChild(el("p", "text addr", c.address));
    li.appendChild(el("p", "text desc", c.description));
    var dl = el("dl", "facts");
    fact(dl, "负责层级", c.level_text + (c.unit_code ? " " + c.unit_code : ""));
    if (c.deadline) {
      var dd = fact(dl, "处置时限", beijing(c.deadline) + " 前");
      dd.className = "deadline";
    }
    fact(dl, "反映人数", (c.reporters || 1) + " 人");
    if (c.phone) {
      var tel = el("a", "tel", c.phone);
      tel.href = "tel:" + String(c.phone).replace(/[^0-9+]/g, "");
      fact(dl, "联系电话", tel);
    }
    li.appendChild(dl);
    li.appendChild(actions(c));
    return li;
  }

  // ---- steps -----------------------------------------------------------------------------
  function actions(c) {
    var box = el("div"), row = el("div", "nav acts"), form = el("form", "ask");
    form.hidden = true;
    (STEPS[c.stage] || []).forEach(function (s) { row.appendChild(button(c, s[0], s[1], s[2], form)); });
    if (AWAITING[c.stage]) {
      row.appendChild(button(c, "return", "退回", "grid", form));
      row.appendChild(button(c, "extend", "延期", "until", form));
    }
    box.appendChild(row);
    box.appendChild(form);
    return box;
  }
  function button(c, action, text, asks, form) {
    var b = el("button", action === "reject" || action === "return" ? "btn" : "btn primary", text);
    b.type = "button";
    b.dataset.action = action;
    b.addEventListener("click", function () {
      if (!asks) { send(c, { action: action }); return; }
      ask(c, action, text, asks, form);
    });
    return b;
  }
  function input(form, label, type, name, hint) {
    var l = el("label", "field", label);
    var i = el("input");
    i.type = type;
    i.name = name;
    if (hint) i.placeholder = hint;
    l.appendChild(i);
    form.appendChild(l);
    return i;
  }
  function ask(c, action, text, asks, form) {
    form.textContent = "";
    form.hidden = false;
    form.appendChild(el("p", "hint", text + "：请填写以下内容"));
    var grid = null, until = null;
    if (asks === "grid") grid = input(form, "应转派的网格编码（15 位）", "text", "grid_code", "如 370705002008001");
    if (asks === "until") until = input(form, "新的处置时限（北京时间）", "datetime-local", "until");
    var reason = input(form, "原因", "text", "reason", "必填");
    var row = el("div", "nav");
    var ok = el("button", "btn primary", "确定 " + text);
    ok.type = "submit";
    var cancel = el("button", "btn", "取消");
    cancel.type = "button";
    cancel.addEventListener("click", function () { form.hidden = true; form.textContent = ""; });
    row.appendChild(ok);
    row.appendChild(cancel);
    form.appendChild(row);
    form.onsubmit = function (ev) {
      ev.preventDefault();
      var body = { action: action, reason: reason.value.trim() };
      if (!body.reason) { showError("请填写原因"); return; }
      if (grid) {
        body.grid_code = grid.value.trim();
        if (!/^\d{15}$/.test(body.grid_code)) { showError("网格编码应为 15 位数字"); return; }
      }
      if (until) {
        if (!until.value) { showError("请选择新的处置时限"); return; }
        body.until = until.value.length === 16 ? until.value + ":00+08:00" : until.value + "+08:00";
      }
      send(c, body);
    };
    reason.focus();
  }
  function send(c, body) {
    if (busy) return;
    busy = true;
    clearError();
    var url = cfg.cases + encodeURIComponent(c.service_request_id) + "/actions";
    api(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (res) {
      busy = false;
      if (!res.ok) {
        var text = errorText(res);
        return Promise.resolve(load()).then(function () { showError(text); });
      }
      return load();
    });
  }

  load();
})();
