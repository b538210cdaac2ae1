/* /find: nearest stalls to the phone's location (browser geolocation is WGS84), a tapped map
   point (GCJ-02, as Amap tiles are drawn), a picked community, a place found by name or pinyin
   (the service's /api/v1/search: communities, grids, streets, stalls, vendor clusters; WGS84
   points) or the point a link starts from (a stall page's 查找更多). The list is the page; the
   map is an extra that may lack tiles, so it also draws every active stall as a grey dot. Only
   stalls within cfg.max_distance_m are listed: beyond that a walk is no longer "nearby". */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("find-config").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var where = $("where"), results = $("results"), summary = $("summary");
  var state = { point: null, label: "" }, map = null, marks = null, seq = 0;

  function say(text, bad) { where.textContent = text; where.className = bad ? "where bad" : "where"; }
  function gcj(lon, lat, crs) { return crs === "gcj02" ? [lon, lat] : window.wgs84ToGcj02(lon, lat); }
  function distText(m) { return m < 1000 ? Math.round(m) + " 米" : (m / 1000).toFixed(1) + " 公里"; }
  // Every user-provided string goes in as text (textContent / a text element), never as HTML:
  // Leaflet reads a string tooltip as HTML, so tooltips get an element too.
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function initMap() {
    if (!window.L) return;
    map = L.map("map", { scrollWheelZoom: false }).setView([cfg.center[1], cfg.center[0]], 13);
    if (cfg.bounds) map.fitBounds([[cfg.bounds[0][1], cfg.bounds[0][0]], [cfg.bounds[1][1], cfg.bounds[1][0]]]);
    map.attributionControl.setPrefix("Leaflet");
    L.tileLayer(cfg.tiles, { subdomains: "1234", maxZoom: 18, attribution: "© 高德地图" }).addTo(map);
    // Where the stalls are, even before a location and without tiles (not clickable: a tap
    // anywhere picks a point).
    var dots = L.layerGroup().addTo(map);
    (cfg.stalls || []).forEach(function (s) {
      L.circleMarker([s[1], s[0]], { radius: 3, color: "#8a94a6", weight: 1, fillOpacity: 0.6, interactive: false })
        .addTo(dots);
    });
    marks = L.layerGroup().addTo(map);
    map.on("click", function (e) {
      $("community").value = "";
      say("已在地图上选择位置");
      setPoint(e.latlng.lng, e.latlng.lat, "gcj02", "地图上选择的位置");
    });
  }

  function filters() {
    var f = $("filters"), svc = "";
    var radios = f.querySelectorAll("input[name=service]");
    for (var i = 0; i < radios.length; i++) if (radios[i].checked) svc = radios[i].value;
    return { service: svc, open: $("open-only").checked };
  }

  function setPoint(lon, lat, crs, label) {
    $("place-hits").hidden = true;  // a tap or a community replaces a search left open
    state.point = { lon: lon, lat: lat, crs: crs };
    state.label = label;
    search();
  }

  function search() {
    if (!state.point) return;
    var p = state.point, f = filters(), my = ++seq;
    var q = "lon=" + p.lon.toFixed(7) + "&lat=" + p.lat.toFixed(7) + "&crs=" + p.crs + "&k=" + cfg.k +
      "&max_distance_m=" + cfg.max_distance_m;
    if (f.service) q += "&service=" + encodeURIComponent(f.service);
    if (f.open) q += "&open_now=true";
    summary.textContent = "正在查找…";
    fetch(cfg.api + "?" + q, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
      .then(function (res) {
        if (my !== seq) return;  // a newer search has started
        if (!res.ok) throw new Error(res.body.detail || "查询失败");
        render(res.body);
      })
      .catch(function (e) { if (my === seq) summary.textContent = "查询失败：" + e.message; });
  }

  function render(body) {
    var rows = body.results;
    results.textContent = "";
    summary.className = rows.length ? "where" : "where bad";
    summary.textContent = rows.length
      ? "离" + state.label + "最近的 " + rows.length + " 个修理点（" + cfg.radius_text + "内，直线距离）："
      : cfg.radius_text + "内没有符合条件的修理点（再远步行要一小时左右）。可以换个筛选条件，或在地图上换个位置。";
    rows.forEach(function (r) {
      var s = r.stall, li = el("li", "item");
      li.setAttribute("data-code", s.code);
      li.setAttribute("data-distance", r.distance_m);
      var row = el("div", "row"), a = el("a", "name", s.name);
      a.href = cfg.page + encodeURIComponent(s.code);
      row.appendChild(a);
      row.appendChild(el("span", "badge " + (s.open_now ? "open" : "closed"), s.open_now ? "营业中" : "休息中"));
      li.appendChild(row);
      li.appendChild(el("div", "meta", s.code + " · " + s.services.join(" ")));
      var d = el("div", "dist");
      d.appendChild(el("b", "km", distText(r.distance_m)));
      d.appendChild(document.createTextNode(" · 步行约 " + Math.round(r.walk_minutes) + " 分钟"));
      li.appendChild(d);
      li.appendChild(el("div", "meta", s.hours_text));
      results.appendChild(li);
    });
    drawMap(body);
  }

  function drawMap(body) {
    if (!map) return;
    marks.clearLayers();
    var p = state.point, you = gcj(p.lon, p.lat, p.crs), pts = [[you[1], you[0]]];
    L.circleMarker(pts[0], { radius: 8, color: "#d32f2f", weight: 3, fillOpacity: 0.8 })
      .bindTooltip("您的位置").addTo(marks);
    body.results.forEach(function (r, i) {
      var g = gcj(r.stall.lon, r.stall.lat, "wgs84"), ll = [g[1], g[0]];
      pts.push(ll);
      L.circleMarker(ll, { radius: i === 0 ? 9 : 6, color: "#1565c0", weight: 2, fillOpacity: 0.7 })
        .bindTooltip(el("span", "", r.stall.name)).addTo(marks);
    });
    if (pts.length > 1) map.fitBounds(pts, { padding: [20, 20], maxZoom: 16 });
    else map.setView(pts[0], 14);
  }

  function locate(asked) {
    if (!navigator.geolocation) { say("此浏览器不能定位：请在地图上点选您的位置，或搜索地点、选择社区。", true); return; }
    say("正在获取您的位置…");
    navigator.geolocation.getCurrentPosition(
      function (pos) {
        $("community").value = "";
        say("已定位（精度约 " + Math.round(pos.coords.accuracy) + " 米）");
        setPoint(pos.coords.longitude, pos.coords.latitude, "wgs84", "您");
      },
      function (err) {
        if (state.point && asked !== true) return;  // a tap or a community came first: keep it
        say((err.code === 1 ? "您未允许获取位置" : "暂时无法定位") +
            "：请在地图上点选您的位置，或搜索地点、选择社区。", true);
        summary.className = "where";
        summary.textContent = "还没有位置：点一下地图上您所在的地方（灰点是各修理点），或在上方搜索地点、选择社区，" +
          "这里就会列出" + cfg.radius_text + "内最近的修理点。";
      },
      { enableHighAccuracy: true, timeout: 10000, maximumAge: 60000 }
    );
  }

  // --- a place by name or pinyin ----------------------------------------------------------
  var KIND = { street: "街道", community: "社区", grid: "网格", stall: "修理点", vendor_cluster: "便民摊点群" };
  var placeSeq = 0;

  function placeMessage(text) {
    var m = $("place-msg");
    m.textContent = text;
    m.hidden = !text;
  }

  function pickPlace(hit) {
    $("place-hits").hidden = true;
    $("place-hits").textContent = "";
    $("community").value = "";
    var label = hit.kind === "stall" ? hit.name + "（" + hit.code + "）" : hit.name;
    say("已选择地点：" + label);
    setPoint(hit.lon, hit.lat, "wgs84", label);
  }

  function showPlaces(q, body) {
    var list = $("place-hits");
    list.textContent = "";
    var hits = body.results || [];
    if (!hits.length) {
      list.hidden = true;
      placeMessage("没有找到“" + q + "”：可以换个名称，或用拼音首字母（如 blxc）。");
      return;
    }
    placeMessage(body.total > hits.length ? "找到 " + body.total + " 处，列出最相关的 " + hits.length + " 处：" : "");
    hits.forEach(function (hit) {
      var li = el("li"), b = el("button", "hit");
      b.type = "button";
      b.setAttribute("data-kind", hit.kind);
      b.setAttribute("data-code", hit.code);
      b.appendChild(el("span", "name", hit.name));
      b.appendChild(el("span", "meta", (KIND[hit.kind] || "") + " · " + hit.code));
      b.addEventListener("click", function () { pickPlace(hit); });
      li.appendChild(b);
      list.appendChild(li);
    });
    list.hidden = false;
  }

  $("place-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var q = $("place-q").value.trim().slice(0, 50), my = ++placeSeq;
    if (!q) { placeMessage("请输入地点名称、拼音或编号。"); return; }
    placeMessage("正在搜索…");
    fetch(cfg.search + "?limit=8&q=" + encodeURIComponent(q), { headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (body) { if (my === placeSeq) showPlaces(q, body); })
      .catch(function () { if (my === placeSeq) placeMessage("搜索暂时不可用：请在地图上点选位置，或选择社区。"); });
  });

  $("community").addEventListener("change", function () {
    var o = this.options[this.selectedIndex];
    if (!o.value) return;
    say("已选择社区：" + o.textContent);
    setPoint(parseFloat(o.getAttribute("data-lon")), parseFloat(o.getAttribute("data-lat")), "wgs84", o.textContent);
  });
  $("filters").addEventListener("change", search);
  $("locate").addEventListener("click", function () { locate(true); });

  var start = cfg.start, pick = (cfg.community || "").replace(/\D/g, "");
  if (start) {  // a link's point, checked by the server (a stall page's 查找更多 names its stall)
    say("从" + start.label + "出发查找" + (start.code ? "（修理点所在位置）" : ""));
    setPoint(start.lon, start.lat, start.crs, start.label);
  } else if (pick && document.querySelector("#community option[value='" + pick + "']")) {
    $("community").value = pick;
    $("community").dispatchEvent(new Event("change"));
  } else {
    locate();  // ask first: the answer comes back while the map is being set up
  }
  initMap();
})();
