/* Flight page: management zones and prescriptions. Makes zones (POST /zones), shows them on the
   map with a legend, lets the user enter a rate per zone with the field's total updating as they
   type, makes the rate prescription and the spot-spray map, and lists the downloads. */
"use strict";
(function () {
  var cfgEl = document.getElementById("map-config");
  var card = document.getElementById("mgmt");
  if (!cfgEl || !card) return;
  var cfg = JSON.parse(cfgEl.textContent);
  var T = cfg.text;
  var api = "/api/v1/flights/" + cfg.flight;
  var errBox = document.getElementById("mgmt-error");
  var zonesOut = document.getElementById("zones-out");
  var rateForm = document.getElementById("rate-form");
  var rateBody = document.querySelector("#rate-zones tbody");
  var rateTotal = document.getElementById("rate-total");
  var rateUnit = document.getElementById("rate-unit");
  var rateHead = document.getElementById("rate-head");
  var zones = null, zoneLayer = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fail(msg) { errBox.textContent = msg; errBox.hidden = !msg; }
  function post(path, body, button) {
    fail("");
    if (button) button.disabled = true;
    return fetch(api + path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (button) button.disabled = false;
        if (!r.ok) { fail(j.detail || ("HTTP " + r.status)); throw new Error(j.detail); }
        return j;
      });
    }, function (e) { if (button) button.disabled = false; fail(String(e)); throw e; });
  }
  function shown() { /* the reason is already in the alert box */ }
  // As the report writes areas (service/report.py fmt_area): square metres below 100 m²,
  // one decimal below 10 m², never a positive area as 0; `scale` (a column's largest area)
  // picks the unit, so a column reads in one unit.
  function area(ha, scale) {
    var ref = scale === undefined ? ha : scale;
    if (ref < 0.01) {
      var m2 = ha * 1e4;
      if (m2 === 0) return "0 m²";
      if (m2 < 0.1) return "<0.1 m²";
      return (m2 < 10 ? m2.toFixed(1) : Math.round(m2).toLocaleString("en")) + " m²";
    }
    if (ha === 0) return "0 ha";
    if (ha >= 10) return ha.toLocaleString("en", { maximumFractionDigits: 1, minimumFractionDigits: 1 }) + " ha";
    if (ha >= 0.1) return ha.toFixed(2) + " ha";
    return ha >= 0.001 ? ha.toFixed(3) + " ha" : "<0.001 ha";
  }
  function largest(rows, key) {
    return rows.reduce(function (m, r) { return Math.max(m, Number(r[key]) || 0); }, 0);
  }
  function downloads(box, res) {
    var d = res.downloads || {};
    var ul = el("ul", "downloads");
    ul.setAttribute("aria-label", T.downloads);
    [["shapefile", "Shapefile (.zip)"], ["taskdata", "ISO-XML TaskData (.zip)"],
     ["geojson", "GeoJSON"], ["cog", "GeoTIFF (COG)"]].forEach(function (k) {
      if (!d[k[0]]) return;
      var li = el("li"), a = el("a", "", k[1]);
      a.href = d[k[0]]; a.setAttribute("download", ""); a.className = "dl-" + k[0];
      li.appendChild(a); ul.appendChild(li);
    });
    box.appendChild(ul);
  }

  function showZones(z) {
    zones = z;
    var scale = largest(z.zones, "area_ha");
    zonesOut.textContent = "";
    var legend = el("div", "legend", undefined);
    legend.id = "zones-legend";
    z.zones.forEach(function (row) {
      var r = el("div");
      var sw = el("span", "swatch"); sw.style.background = row.color;
      r.appendChild(sw);
      r.appendChild(document.createTextNode(
        T.zone + " " + row.zone + " · " + z.index_title + " " + Number(row.index_mean).toFixed(2) +
        " · " + area(row.area_ha, scale)));
      legend.appendChild(r);
    });
    zonesOut.appendChild(legend);
    if (z.placement === "approximate") zonesOut.appendChild(el("p", "muted small", z.placement_note));
    downloads(zonesOut, z);
    // The rate table: one input per zone, the total recomputed as the user types.
    rateBody.textContent = "";
    z.zones.forEach(function (row) {
      var tr = el("tr");
      var th = el("th", "", String(row.zone)); th.scope = "row";
      var sw = el("span", "swatch"); sw.style.background = row.color; th.prepend(sw);
      tr.appendChild(th);
      tr.appendChild(el("td", "num", area(row.area_ha, scale)));
      var td = el("td", "num"), inp = el("input");
      inp.type = "number"; inp.min = "0"; inp.step = "any"; inp.value = "100";
      inp.id = "rate-" + row.zone; inp.dataset.area = row.area_ha;
      inp.setAttribute("aria-label", T.zone + " " + row.zone);
      inp.addEventListener("input", total);
      td.appendChild(inp); tr.appendChild(td); rateBody.appendChild(tr);
    });
    rateForm.hidden = false;
    total();
    drawOnMap();
  }
  function total() {
    var sum = 0, ok = true;
    Array.prototype.forEach.call(rateBody.querySelectorAll("input"), function (i) {
      var v = parseFloat(i.value);
      if (!(v >= 0)) ok = false; else sum += v * parseFloat(i.dataset.area);
    });
    var unit = rateUnit.value === "L/ha" ? "L" : "kg";
    rateTotal.value = ok ? sum.toFixed(2) + " " + unit : "–";
    rateTotal.textContent = rateTotal.value;
  }
  rateUnit.addEventListener("change", function () {
    rateHead.textContent = rateHead.textContent.replace(/\(.*\)/, "(" + rateUnit.value + ")");
    total();
  });

  function drawOnMap() {
    var K = window.KhetMap;
    if (!K || !window.L || !zones) return;
    if (zoneLayer) K.map.removeLayer(zoneLayer);
    var colors = {};
    zones.zones.forEach(function (r) { colors[r.zone] = r.color; });
    fetch(zones.downloads.geojson, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (fc) {
        zoneLayer = L.geoJSON(fc, {
          style: function (f) {
            return { color: "#222", weight: 1, fillColor: colors[f.properties.zone] || "#888",
                     fillOpacity: 0.55, className: "khet-zone" };
          }
        }).addTo(K.map);
        var box = document.getElementById("zones-layer");
        if (box) box.checked = true;
      });
  }
  var toggle = document.getElementById("zones-layer");
  if (toggle) toggle.addEventListener("change", function () {
    if (!zoneLayer || !window.KhetMap) return;
    if (toggle.checked) zoneLayer.addTo(window.KhetMap.map); else window.KhetMap.map.removeLayer(zoneLayer);
  });

  document.getElementById("zones-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var n = document.getElementById("zone-count").value;
    post("/zones", n ? { zones: parseInt(n, 10) } : {}, document.getElementById("zones-btn"))
      .then(function (z) { document.getElementById("rate-out").textContent = ""; showZones(z); })
      .catch(shown);
  });
  rateForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var rates = Array.prototype.map.call(rateBody.querySelectorAll("input"),
                                         function (i) { return parseFloat(i.value); });
    if (rates.some(function (r) { return isNaN(r); })) { fail("Enter a number for every zone."); return; }
    post("/prescriptions/rate", {
      rates: rates, unit: rateUnit.value, product: document.getElementById("rate-product").value
    }, document.getElementById("rate-btn")).then(function (res) {
      var out = document.getElementById("rate-out");
      out.textContent = "";
      out.appendChild(el("p", "", res.product + ": " + res.total.toFixed(2) + " " + res.total_unit +
        " · " + area(res.area_ha)));
      downloads(out, res);
    }).catch(shown);
  });
  document.getElementById("spot-form").addEventListener("submit", function (e) {
    e.preventDefault();
    post("/prescriptions/spot", {
      margin_m: parseFloat(document.getElementById("spot-margin").value),
      min_patch_m2: parseFloat(document.getElementById("spot-patch").value),
      rate: parseFloat(document.getElementById("spot-rate").value)
    }, document.getElementById("spot-btn")).then(function (res) {
      var out = document.getElementById("spot-out");
      out.textContent = "";
      var p = el("p", "", (res.sprayed_share * 100).toFixed(1) + "% · " + area(res.sprayed_ha, res.field_ha) +
        " / " + area(res.field_ha, res.field_ha) + " · −" + (res.saving_share * 100).toFixed(1) + "% " +
        res.product + " (" + res.total.toFixed(2) + " / " + res.blanket_total.toFixed(2) + " " +
        res.total_unit + ")");
      p.id = "spot-share";
      out.appendChild(p);
      downloads(out, res);
    }).catch(shown);
  });

  var made = cfg.management || {};
  if (made.zones) showZones(made.zones);
})();
