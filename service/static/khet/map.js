/* Flight page: a Leaflet map of the service's own tiles (no base map from the internet), a layer
   switch, an opacity slider, a legend and click-to-inspect; or, while the analysis runs, a
   progress bar that reloads the page when the map is ready. */
"use strict";
(function () {
  var cfgEl = document.getElementById("map-config");
  if (!cfgEl) return;
  var cfg = JSON.parse(cfgEl.textContent);

  var waiting = document.getElementById("waiting");
  if (waiting) {
    var bar = document.getElementById("job-bar");
    var poll = function () {
      fetch("/api/v1/flights/" + cfg.flight, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (f) {
          if (f.status === "done" || f.status === "failed") { window.location.reload(); return; }
          bar.value = Math.round((f.progress || 0) * 100);
          var stage = document.getElementById("job-stage");
          if (stage) stage.textContent = (f.job && f.job.stage) || "";
          setTimeout(poll, 1500);
        }, function () { setTimeout(poll, 4000); });
    };
    setTimeout(poll, 1000);
    return;
  }
  if (!cfg.georeferenced || !window.L) return;

  var T = cfg.text;
  var map = L.map("map", { attributionControl: false });
  window.KhetMap = { map: map };  /* zones.js draws the management zones on it */
  var legend = document.getElementById("legend");
  var inspect = document.getElementById("inspect");
  var opacity = document.getElementById("opacity");
  var opacityOut = document.getElementById("opacity-out");
  var overlay = null, bounds = null, tj = null, native = 18;
  var layers = {};
  cfg.layers.forEach(function (l) { layers[l.id] = l; });

  function tileUrl(layer) { return "/api/v1/flights/" + cfg.flight + "/tiles/" + layer + "/{z}/{x}/{y}"; }
  function tileLayer(layer, op) {
    /* The server renders any zoom (nearest-neighbour for class maps), so every layer is asked
       for tiles up to the imagery's full resolution: crisp cell edges, aligned layers. */
    return L.tileLayer(tileUrl(layer), {
      bounds: bounds, minZoom: Math.max(0, tj.minzoom), maxZoom: native + 1,
      maxNativeZoom: native, opacity: op, className: "khet-" + layer, keepBuffer: 1
    });
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function drawLegend(id) {
    legend.textContent = "";
    var l = layers[id];
    if (!l) return;
    if (l.legend) {
      l.legend.forEach(function (item) {
        var row = el("div");
        var sw = el("span", "swatch"); sw.style.background = item.color;
        row.appendChild(sw); row.appendChild(document.createTextNode(item.label));
        legend.appendChild(row);
      });
    } else if (l.gradient) {
      var g = el("div", "gradient");
      g.style.background = "linear-gradient(to right, " + l.gradient.colors.join(", ") + ")";
      g.setAttribute("role", "img");
      g.setAttribute("aria-label", l.label + " " + l.gradient.lo + " – " + l.gradient.hi);
      var labels = el("div", "gradient-labels");
      labels.setAttribute("dir", "ltr");
      labels.appendChild(el("span", "", Number(l.gradient.lo).toFixed(2)));
      labels.appendChild(el("span", "", Number(l.gradient.hi).toFixed(2)));
      legend.appendChild(g); legend.appendChild(labels);
    }
    if (l.note) legend.appendChild(el("p", "muted small", l.note));
  }
  function show(id) {
    if (overlay) { map.removeLayer(overlay); overlay = null; }
    if (id) { overlay = tileLayer(id, opacity.value / 100).addTo(map); }
    drawLegend(id);
  }

  function tilejson(layer) {
    return fetch("/api/v1/flights/" + cfg.flight + "/tilejson.json?layer=" + layer,
                 { credentials: "same-origin" }).then(function (r) { return r.json(); });
  }
  Promise.all([tilejson("classes"), cfg.imagery ? tilejson("imagery") : null])
    .then(function (js) {
      var j = js[0];
      tj = j;
      native = Math.min(22, Math.max(j.maxzoom, js[1] && js[1].tiles.length ? js[1].maxzoom : 0));
      var b = j.bounds;
      bounds = L.latLngBounds([b[1], b[0]], [b[3], b[2]]);
      map.fitBounds(bounds, { padding: [12, 12] });
      map.setMaxBounds(bounds.pad(1.5));
      if (cfg.imagery) tileLayer("imagery", 1).addTo(map);
      L.rectangle(bounds, { color: "#1f6f3a", weight: 1.5, fill: false, interactive: false }).addTo(map);
      var checked = document.querySelector("input[name=layer]:checked");
      show(checked ? checked.value : "classes");
    });

  Array.prototype.forEach.call(document.querySelectorAll("input[name=layer]"), function (r) {
    r.addEventListener("change", function () { if (r.checked) show(r.value); });
  });
  opacity.addEventListener("input", function () {
    opacityOut.textContent = opacity.value + "%";
    if (overlay) overlay.setOpacity(opacity.value / 100);
  });

  function row(dl, k, v) { dl.appendChild(el("dt", "", k)); dl.appendChild(el("dd", "", v)); }
  map.on("click", function (e) {
    var url = "/api/v1/flights/" + cfg.flight + "/point?lon=" + e.latlng.lng.toFixed(7) + "&lat=" + e.latlng.lat.toFixed(7);
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (p) {
      var box = el("div");
      if (!p.inside) {
        box.appendChild(el("p", "", T.point_outside));
      } else {
        var dl = el("dl");
        if (p["class"] !== null) row(dl, T.point_class, cfg.names[p["class"]] || p["class"]);
        if (p.confidence !== undefined && p.confidence !== null) row(dl, T.point_confidence, Math.round(p.confidence) + "%");
        if (p.vigour) row(dl, T.point_vigour, cfg.levels[p.vigour] || p.vigour);
        Object.keys(p.indices || {}).forEach(function (k) {
          if (p.indices[k] !== null) row(dl, (layers[k] && layers[k].label) || k.toUpperCase(), Number(p.indices[k]).toFixed(3));
        });
        box.appendChild(dl);
      }
      inspect.textContent = "";
      inspect.appendChild(box.cloneNode(true));
      box.className = "inspect";
      L.popup({ maxWidth: 260 }).setLatLng(e.latlng).setContent(box).openOn(map);
    });
  });
})();
