/* Compare page: two Leaflet maps of the class layer, moved together. */
"use strict";
(function () {
  var cfgEl = document.getElementById("compare-config");
  if (!cfgEl || !window.L) return;
  var cfg = JSON.parse(cfgEl.textContent);
  var maps = [], syncing = false;
  cfg.sides.forEach(function (s, i) {
    if (!s.georeferenced) return;
    var m = L.map("map-" + i, { attributionControl: false, zoomSnap: 0.25 });
    maps.push(m);
    fetch("/api/v1/flights/" + s.flight + "/tilejson.json?layer=classes", { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (tj) {
        var b = tj.bounds, bounds = L.latLngBounds([b[1], b[0]], [b[3], b[2]]);
        var opts = { bounds: bounds, maxZoom: tj.maxzoom + 2, maxNativeZoom: tj.maxzoom };
        if (s.imagery) L.tileLayer("/api/v1/flights/" + s.flight + "/tiles/imagery/{z}/{x}/{y}.png", opts).addTo(m);
        L.tileLayer("/api/v1/flights/" + s.flight + "/tiles/classes/{z}/{x}/{y}.png",
                    Object.assign({ opacity: 0.75 }, opts)).addTo(m);
        if (!m._loaded) m.fitBounds(bounds, { padding: [10, 10] });
      });
  });
  maps.forEach(function (m) {
    m.on("move", function () {
      if (syncing) return;
      syncing = true;
      maps.forEach(function (o) { if (o !== m) o.setView(m.getCenter(), m.getZoom(), { animate: false }); });
      syncing = false;
    });
  });
})();
