/* The small map on a stall's page. The page is complete without it (no Leaflet, no tiles). */
(function () {
  "use strict";
  // Leaflet reads a string tooltip as HTML: names are user text, so give it a text node.
  function text(s) { var e = document.createElement("span"); e.textContent = s; return e; }
  var el = document.getElementById("map"), data = document.getElementById("map-data");
  if (!el || !data || !window.L) return;
  var d = JSON.parse(data.textContent);
  var here = [d.stall.gcj[1], d.stall.gcj[0]];  // GCJ-02, as Amap tiles are drawn
  var map = L.map(el, { scrollWheelZoom: false }).setView(here, 16);
  map.attributionControl.setPrefix("Leaflet");
  L.tileLayer(d.tiles, { subdomains: "1234", maxZoom: 18, attribution: "© 高德地图" }).addTo(map);
  var pts = [here];
  d.others.forEach(function (o) {
    var p = [o.gcj[1], o.gcj[0]];
    pts.push(p);
    L.circleMarker(p, { radius: 6, color: "#667", weight: 2, fillOpacity: 0.6 })
      .bindTooltip(text(o.name)).addTo(map);
  });
  if (d.moved_to) {
    // Relocated: the old spot grey, the new place as the main marker, both in view.
    var there = [d.moved_to.gcj[1], d.moved_to.gcj[0]];
    pts.push(there);
    L.circleMarker(here, { radius: 7, color: "#888", weight: 2, dashArray: "3", fillOpacity: 0.3 })
      .bindTooltip(text(d.stall.name + "（原址）")).addTo(map);
    L.circleMarker(there, { radius: 9, color: "#1565c0", weight: 3, fillColor: "#42a5f5", fillOpacity: 0.9 })
      .bindTooltip(text(d.moved_to.name)).addTo(map);
  } else {
    L.circleMarker(here, { radius: 9, color: "#1565c0", weight: 3, fillColor: "#42a5f5", fillOpacity: 0.9 })
      .bindTooltip(text(d.stall.name), { permanent: false }).addTo(map);
  }
  if (pts.length > 1) map.fitBounds(pts, { padding: [24, 24], maxZoom: 16 });
})();
