/* /report (随手拍): photo, point, category, description -> POST /open311/v2/requests.json.
   The point is the phone's GPS (WGS84, sent as crs=wgs84) or a tap on the Amap-tiled map
   (GCJ-02, sent as crs=gcj02). Before filing, open cases of the same category nearby are offered
   ("我也遇到了" joins one instead of filing a duplicate). The form works without Leaflet or tiles.
   Every text from the API or the user goes into the page as text (textContent), never as HTML. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var root = $("report"), cfg = root.dataset;
  var MAX_PHOTO = 8 * 1024 * 1024, MAX_SIDE = 2048, MAX_TEXT = 4000;
  var CRS_OK = { wgs84: 1, gcj02: 1 };
  var state = { point: null, photo: null, photoUrl: null, busy: false, key: newKey(), services: {} };
  var map = null, youMark = null, nearbyMarks = null, nearbySeq = 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  // One key per form fill: a double tap or a retry after a lost answer files one case.
  function newKey() {
    if (window.crypto && crypto.randomUUID) {
      try { return crypto.randomUUID(); } catch (e) { /* not a secure context */ }
    }
    var b = new Uint8Array(16), h = [];
    if (window.crypto && crypto.getRandomValues) crypto.getRandomValues(b);
    else for (var j = 0; j < 16; j++) b[j] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    for (var i = 0; i < 16; i++) h.push((b[i] + 0x100).toString(16).slice(1));
    return h.slice(0, 4).join("") + "-" + h.slice(4, 6).join("") + "-" + h.slice(6, 8).join("") +
      "-" + h.slice(8, 10).join("") + "-" + h.slice(10).join("");
  }
  function gcj(p) { return p.crs === "gcj02" ? [p.lon, p.lat] : window.wgs84ToGcj02(p.lon, p.lat); }
  function distText(m) { return m < 1000 ? Math.round(m) + " 米" : (m / 1000).toFixed(1) + " 公里"; }
  function mb(n) { return (n / 1024 / 1024).toFixed(1) + " MB"; }
  function showError(text, detail) {
    var e = $("error");
    e.textContent = "";
    e.appendChild(el("span", "", text));
    if (detail) e.appendChild(el("span", "detail", "（" + detail + "）"));
    e.hidden = false;
    e.scrollIntoView({ block: "center" });
  }
  function clearError() { $("error").hidden = true; $("error").textContent = ""; }
  function readJson(r) {
    return r.text().then(function (t) {
      var body = null;
      try { body = t ? JSON.parse(t) : null; } catch (e) { body = null; }
      return { ok: r.ok, status: r.status, body: body };
    });
  }
  function pagePath(id) { return cfg.page + encodeURIComponent(id) + "/page"; }

  // ---- categories ----------------------------------------------------------------------
  function loadServices() {
    fetch(cfg.services, { headers: { Accept: "application/json" } })
      .then(readJson)
      .then(function (res) {
        if (!res.ok || !Array.isArray(res.body)) throw new Error("status " + res.status);
        fillServices(res.body);
      })
      .catch(function () {
        var s = $("service");
        s.textContent = "";
        s.appendChild(el("option", "", "类别加载失败，请刷新页面重试")).value = "";
        $("service-info").textContent = "无法加载问题类别，请检查网络后刷新页面。";
      });
  }
  function fillServices(list) {
    var s = $("service"), groups = {}, order = [];
    s.textContent = "";
    s.appendChild(el("option", "", "请选择问题类别…")).value = "";
    list.forEach(function (svc) {
      var g = svc.group || "其他";
      if (!groups[g]) { groups[g] = el("optgroup"); groups[g].label = g; order.push(g); }
      var text = svc.service_name + (svc.limit_text ? "（" + svc.limit_text + "内处理）" : "");
      var o = el("option", "", text);
      o.value = svc.service_code;
      groups[g].appendChild(o);
      state.services[svc.service_code] = svc;
    });
    order.forEach(function (g) { s.appendChild(groups[g]); });
    var want = new URLSearchParams(location.search).get("service_code");
    if (want && state.services[want]) s.value = want;
    serviceChanged();
  }
  function serviceChanged() {
    var svc = state.services[$("service").value], info = $("service-info");
    info.textContent = svc
      ? (svc.description || "") + (svc.limit_text ? " · 处置时限：" + svc.limit_text : "")
      : "";
    findNearby();
  }

  // ---- point -----------------------------------------------------------------------------
  function setPoint(lon, lat, crs, label) {
    state.point = { lon: lon, lat: lat, crs: crs, label: label };
    var w = $("where");
    w.className = "where ok";
    w.textContent = "已选择：" + label + "（" + lat.toFixed(5) + ", " + lon.toFixed(5) + "，" +
      (crs === "gcj02" ? "地图坐标 GCJ-02" : "GPS 坐标 WGS84") + "）";
    drawYou();
    findNearby();
  }
  function drawYou() {
    if (!map || !state.point) return;
    var g = gcj(state.point), ll = [g[1], g[0]];
    if (youMark) youMark.setLatLng(ll);
    else youMark = L.circleMarker(ll, { radius: 9, color: "#d32f2f", weight: 3, fillOpacity: 0.8 })
      .bindTooltip(el("span", "", "问题位置")).addTo(map);
    map.setView(ll, Math.max(map.getZoom(), 16));
  }
  function locate() {
    var w = $("where");
    if (!navigator.geolocation) { w.className = "where bad"; w.textContent = "此浏览器不能定位，请在地图上点选问题位置。"; return; }
    w.className = "where";
    w.textContent = "正在获取您的位置…";
    navigator.geolocation.getCurrentPosition(
      function (pos) {
        setPoint(pos.coords.longitude, pos.coords.latitude, "wgs84",
          "当前位置（GPS 定位，精度约 " + Math.round(pos.coords.accuracy) + " 米）");
      },
      function (err) {
        w.className = "where bad";
        w.textContent = (err.code === 1 ? "您未允许获取位置" : "暂时无法定位") + "，请在地图上点选问题位置。";
      },
      { enableHighAccuracy: true, timeout: 10000, maximumAge: 30000 }
    );
  }
  function initMap() {
    if (!window.L) return;
    var c = [parseFloat(cfg.centerLat), parseFloat(cfg.centerLon)];
    map = L.map("map", { scrollWheelZoom: false }).setView(c, 13);
    map.attributionControl.setPrefix("Leaflet");
    L.tileLayer(cfg.tiles, { subdomains: "1234", maxZoom: 18, attribution: "© 高德地图" }).addTo(map);
    nearbyMarks = L.layerGroup().addTo(map);
    map.on("click", function (e) { setPoint(e.latlng.lng, e.latlng.lat, "gcj02", "地图上点选的位置"); });
    drawYou();
  }

  // ---- nearby open cases of the same category ----------------------------------------------
  function findNearby() {
    var p = state.point, code = $("service").value, my = ++nearbySeq;
    if (!p || !code) { hideNearby(); return; }
    var q = "lon=" + p.lon.toFixed(7) + "&lat=" + p.lat.toFixed(7) + "&crs=" + p.crs +
      "&service_code=" + encodeURIComponent(code);
    fetch(cfg.nearby + "?" + q, { headers: { Accept: "application/json" } })
      .then(readJson)
      .then(function (res) {
        if (my !== nearbySeq) return;  // the point or category changed meanwhile
        if (!res.ok || !res.body || !Array.isArray(res.body.cases)) { hideNearby(); return; }
        showNearby(res.body.cases);
      })
      .catch(function () { if (my === nearbySeq) hideNearby(); });  // an extra: filing still works
  }
  function hideNearby() {
    $("nearby").hidden = true;
    $("nearby-list").textContent = "";
    if (nearbyMarks) nearbyMarks.clearLayers();
  }
  function showNearby(cases) {
    if (!cases.length) { hideNearby(); return; }
    var list = $("nearby-list");
    list.textContent = "";
    if (nearbyMarks) nearbyMarks.clearLayers();
    $("nearby-title").textContent = "附近已有相同问题 " + cases.length + " 条";
    cases.forEach(function (c) {
      var li = el("li", "item");
      li.setAttribute("data-id", c.service_request_id);
      var row = el("div", "row"), a = el("a", "name", c.service_name || "案件");
      a.href = pagePath(c.service_request_id);
      row.appendChild(a);
      row.appendChild(el("span", "badge open", c.status_text || ""));
      li.appendChild(row);
      if (c.description) li.appendChild(el("div", "desc", c.description));
      li.appendChild(el("div", "meta", "编号 " + c.service_request_id +
        (typeof c.distance_m === "number" ? " · 相距 " + distText(c.distance_m) : "")));
      var b = el("button", "btn join", "我也遇到了");
      b.type = "button";
      b.addEventListener("click", function () { join(c.service_request_id, b); });
      li.appendChild(b);
      list.appendChild(li);
      if (nearbyMarks && typeof c.lat === "number" && typeof c.long === "number") {
        var g = window.wgs84ToGcj02(c.long, c.lat);
        L.circleMarker([g[1], g[0]], { radius: 6, color: "#8a4b00", weight: 2, fillOpacity: 0.6 })
          .bindTooltip(el("span", "", (c.service_name || "") + " " + c.service_request_id)).addTo(nearbyMarks);
      }
    });
    $("nearby").hidden = false;
  }
  function join(id, button) {
    if (state.busy) return;
    state.busy = true;
    button.disabled = true;
    button.textContent = "正在提交…";
    clearError();
    fetch(cfg.cases + encodeURIComponent(id) + "/join", {
      method: "POST", headers: { Accept: "application/json" }
    })
      .then(readJson)
      .then(function (res) {
        if (!res.ok) throw apiError(res);
        location.assign(pagePath(id));
      })
      .catch(function (e) {
        state.busy = false;
        button.disabled = false;
        button.textContent = "我也遇到了";
        showError("操作失败：" + (e.zh || "网络不稳定，请稍后重试。"), e.detail);
      });
  }

  // ---- photo -----------------------------------------------------------------------------
  function photoChanged() {
    var f = $("photo").files && $("photo").files[0];
    if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
    state.photo = null; state.photoUrl = null;
    if (!f) { $("photo-box").hidden = true; return; }
    if (!/^image\/(jpeg|png|webp|heic|heif|gif)$/i.test(f.type || "image/jpeg")) {
      showError("请选择照片文件（JPEG、PNG 或 WebP）。");
      $("photo").value = "";
      $("photo-box").hidden = true;
      return;
    }
    clearError();
    state.photoUrl = URL.createObjectURL(f);
    $("preview").src = state.photoUrl;
    $("photo-box").hidden = false;
    $("photo-info").textContent = "原图 " + mb(f.size);
    state.photo = shrink(f, state.photoUrl).then(function (blob) {
      if (blob !== f) $("photo-info").textContent = "原图 " + mb(f.size) + "，上传时压缩为 " + mb(blob.size);
      return blob;
    });
  }
  // A big photo is redrawn at most 2048 px on its long side as JPEG (saves mobile data);
  // small ones, and anything the canvas cannot handle, go as they are.
  function shrink(file, url) {
    return new Promise(function (resolve) {
      var img = new Image();
      img.onload = function () {
        var w = img.naturalWidth, h = img.naturalHeight, s = Math.min(1, MAX_SIDE / Math.max(w, h));
        if (s === 1 && file.size <= 1.5 * 1024 * 1024) { resolve(file); return; }
        try {
          var c = document.createElement("canvas");
          c.width = Math.round(w * s); c.height = Math.round(h * s);
          c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
          c.toBlob(function (b) { resolve(b && b.size < file.size ? b : file); }, "image/jpeg", 0.85);
        } catch (e) { resolve(file); }
      };
      img.onerror = function () { resolve(file); };
      img.src = url;
    });
  }
  function clearPhoto() {
    $("photo").value = "";
    photoChanged();
  }

  // ---- submit ----------------------------------------------------------------------------
  var FIELD_TEXT = {
    service_code: "请选择正确的问题类别。",
    description: "请填写问题描述（不超过 4000 字）。",
    phone: "联系电话格式不正确（只能包含数字、空格、+、-）。",
    address_string: "位置说明太长（不超过 200 字）。",
    media: "照片无法使用：请上传 JPEG、PNG 或 WebP 格式、不超过 8 MB 的照片。",
    lat: "问题位置无效或不在服务范围内，请重新选择。",
    long: "问题位置无效或不在服务范围内，请重新选择。",
    lon: "问题位置无效或不在服务范围内，请重新选择。",
    crs: "问题位置无效，请重新选择。"
  };
  function apiError(res) {
    var body = res.body || {}, detail = typeof body.detail === "string" ? body.detail : "", zh = "";
    (body.errors || []).forEach(function (er) { if (!zh && er && FIELD_TEXT[er.field]) zh = FIELD_TEXT[er.field]; });
    if (!zh) {
      if (res.status === 413) zh = "照片太大（超过 8 MB），请换一张或重新拍摄。";
      else if (res.status === 404) zh = "没有找到该案件或类别。";
      else if (res.status === 409) zh = "该案件当前状态不能进行此操作。";
      else if (res.status === 429) zh = "提交太频繁，请稍后再试。";
      else if (res.status >= 500) zh = "服务暂时不可用，请稍后重试。";
      else zh = "提交的内容有误，请检查后重试。";
    }
    var e = new Error(zh);
    e.zh = zh; e.detail = detail; e.status = res.status;
    return e;
  }
  function check() {
    var d = $("description").value, phone = $("phone").value.trim();
    if (!state.point) return "请选择问题位置：点“使用当前位置”或在地图上点选。";
    if (!$("service").value) return "请选择问题类别。";
    if (!d.trim()) return "请填写问题描述。";
    if (d.length > MAX_TEXT) return "问题描述不能超过 4000 字。";
    if (phone) {
      var digits = phone.replace(/\D/g, "").length;
      if (!/^[0-9+\- ()]+$/.test(phone) || digits < 5 || digits > 20) return FIELD_TEXT.phone;
    }
    return "";
  }
  function submit(ev) {
    ev.preventDefault();
    if (state.busy) return;
    var bad = check();
    if (bad) { showError(bad); return; }
    clearError();
    state.busy = true;
    var btn = $("submit");
    btn.disabled = true;
    btn.textContent = "正在提交…";
    Promise.resolve(state.photo).then(function (blob) {
      if (blob && blob.size > MAX_PHOTO) {
        throw { zh: "照片太大（" + mb(blob.size) + "，最大 8 MB），请换一张或重新拍摄。" };
      }
      var p = state.point, fd = new FormData();
      fd.append("service_code", $("service").value);
      fd.append("lat", p.lat.toFixed(7));
      fd.append("long", p.lon.toFixed(7));
      fd.append("crs", p.crs);
      fd.append("description", $("description").value);
      if ($("phone").value.trim()) fd.append("phone", $("phone").value.trim());
      if ($("address").value.trim()) fd.append("address_string", $("address").value.trim());
      if (blob) fd.append("media", blob, blob === $("photo").files[0] ? blob.name : "photo.jpg");
      return fetch(cfg.requests, {
        method: "POST", body: fd,
        headers: { Accept: "application/json", "Idempotency-Key": state.key }
      }).then(readJson, function () {
        throw { zh: "网络不稳定，提交未完成，请稍后再点提交（不会重复上报）。" };
      });
    }).then(function (res) {
      if (!res.ok) {
        // A refused form created nothing: the corrected form is a new fill with a new key.
        if (res.status >= 400 && res.status < 500 && res.status !== 429) state.key = newKey();
        throw apiError(res);
      }
      var made = Array.isArray(res.body) ? res.body[0] : res.body;
      if (!made || !made.service_request_id) throw { zh: "服务器的回答无法识别，请稍后查看。" };
      location.assign(pagePath(made.service_request_id));
    }).catch(function (e) {
      state.busy = false;
      btn.disabled = false;
      btn.textContent = "提交";
      showError("提交失败：" + ((e && e.zh) || "请稍后重试。"), e && e.detail);
    });
  }

  // ---- wiring ----------------------------------------------------------------------------
  $("description").addEventListener("input", function () {
    var n = this.value.length, c = $("count");
    c.textContent = n;
    c.parentNode.className = n > MAX_TEXT - 200 ? "hint count near" : "hint count";
  });
  $("service").addEventListener("change", serviceChanged);
  $("locate").addEventListener("click", locate);
  $("photo").addEventListener("change", photoChanged);
  $("photo-clear").addEventListener("click", clearPhoto);
  $("report-form").addEventListener("submit", submit);
  $("lookup").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var id = $("lookup-id").value.trim();
    if (id) location.assign(pagePath(id));
  });

  var params = new URLSearchParams(location.search);
  var lon = parseFloat(params.get("lon")), lat = parseFloat(params.get("lat"));
  var crs = (params.get("crs") || "wgs84").toLowerCase();
  initMap();
  if (isFinite(lon) && isFinite(lat) && Math.abs(lat) <= 90 && Math.abs(lon) <= 180 && CRS_OK[crs]) {
    setPoint(lon, lat, crs, "链接带入的位置");
  }
  loadServices();
})();
