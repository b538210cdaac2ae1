/* A 随手拍 case's page: everything is in the HTML; this adds the small map (the case's point is
   WGS84, drawn in GCJ-02 on Amap tiles; the page is complete without Leaflet or tiles) and the
   look-up of another case number. */
(function () {
  "use strict";
  var root = document.getElementById("case");
  var lookup = document.getElementById("lookup");
  lookup.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var id = document.getElementById("lookup-id").value.trim();
    if (id) location.assign(root.dataset.page + encodeURIComponent(id) + "/page");
  });

  var el = document.getElementById("map");
  if (!el || !window.L) return;
  var lon = parseFloat(el.dataset.lon), lat = parseFloat(el.dataset.lat);
  if (!isFinite(lon) || !isFinite(lat)) return;
  var g = window.wgs84ToGcj02(lon, lat), here = [g[1], g[0]];
  var map = L.map(el, { scrollWheelZoom: false }).setView(here, 16);
  map.attributionControl.setPrefix("Leaflet");
  L.tileLayer(el.dataset.tiles, { subdomains: "1234", maxZoom: 18, attribution: "© 高德地图" }).addTo(map);
  var tip = document.createElement("span");
  tip.textContent = "问题位置";
  L.circleMarker(here, { radius: 9, color: "#d32f2f", weight: 3, fillOpacity: 0.8 }).bindTooltip(tip).addTo(map);
})();
