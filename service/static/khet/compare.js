/* Compare page: two Leaflet maps of the class layer over the imagery, framed on both flights and
   moved together (pan or zoom one, the other follows). */
"use strict";
(function () {
  var cfgEl = document.getElementById("compare-config");
  if (!cfgEl || !window.L) return;
  var cfg = JSON.parse(cfgEl.textContent);
  var sides = cfg.sides.map(function (s, i) { s.index = i; return s; })
    .filter(function (s) { return s.georeferenced; });
  function tilejson(flight, layer) {
    return fetch("/api/v1/flights/" + flight + "/tilejson.json?layer=" + layer,
                 { credentials: "same-origin" }).then(function (r) { return r.json(); });
  }
  Promise.all(sides.map(function (s) {
    return Promise.all([tilejson(s.flight, "classes"), s.imagery ? tilejson(s.flight, "imagery") : null])
      .then(function (js) {
        var tj = js[0];
        tj.native = Math.min(22, Math.max(tj.maxzoom, js[1] && js[1].tiles.length ? js[1].maxzoom : 0));
        return tj;
      });
  })).then(function (tjs) {
    var all = null, maps = [], syncing = false;
    tjs.forEach(function (tj, k) {
      var b = tj.bounds, bounds = L.latLngBounds([b[1], b[0]], [b[3], b[2]]);
      all = all ? all.extend(bounds) : L.latLngBounds(bounds.getSouthWest(), bounds.getNorthEast());
      var s = sides[k];
      var m = L.map("map-" + s.index, { attributionControl: false });
      var opts = { bounds: bounds, maxZoom: tj.native + 1, maxNativeZoom: tj.native };
      if (s.imagery) L.tileLayer("/api/v1/flights/" + s.flight + "/tiles/imagery/{z}/{x}/{y}", opts).addTo(m);
      L.tileLayer("/api/v1/flights/" + s.flight + "/tiles/classes/{z}/{x}/{y}",
                  Object.assign({ opacity: 0.75 }, opts)).addTo(m);
      maps.push(m);
    });
    maps.forEach(function (m) { m.fitBounds(all, { padding: [10, 10] }); });
    maps.forEach(function (m) {
      m.on("move", function () {
        if (syncing) return;
        syncing = true;
        maps.forEach(function (o) { if (o !== m) o.setView(m.getCenter(), m.getZoom(), { animate: false }); });
        syncing = false;
      });
    });
  });
})();
