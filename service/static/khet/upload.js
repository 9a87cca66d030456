/* Upload page: hash, then send each file in chunks through the resumable upload API
   (POST /api/v1/uploads, PUT chunks with Content-Range), surviving dropped connections by
   asking the server where the upload stands and continuing from there; then create the flight
   and follow its analysis until the map is ready. */
"use strict";
(function () {
  var form = document.getElementById("upload-form");
  if (!form) return;
  var T = JSON.parse(document.getElementById("upload-text").textContent);
  var fieldId = form.getAttribute("data-field");
  var CHUNK = 1024 * 1024;
  var barUp = document.getElementById("bar-upload"), txtUp = document.getElementById("txt-upload");
  var lblUp = document.getElementById("lbl-upload");
  var barAn = document.getElementById("bar-analyse"), txtAn = document.getElementById("txt-analyse");
  var statusEl = document.getElementById("upload-status");
  var startBtn = document.getElementById("start");

  function mb(n) { return (n / 1048576).toFixed(n < 10485760 ? 2 : 1) + " MB"; }
  function say(msg, kind) {
    statusEl.hidden = !msg;
    statusEl.textContent = msg || "";
    statusEl.className = "alert" + (kind ? " alert-" + kind : "");
  }
  function fmt(s, k, v) { return s.replace("{" + k + "}", v); }
  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  function UploadError(message) { this.message = message; }
  function Retry() {}

  function api(method, url, body) {
    return fetch(url, {
      method: method, credentials: "same-origin",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (r.status >= 500 || r.status === 429) throw new Retry();
        if (!r.ok) throw new UploadError(j.detail || ("HTTP " + r.status));
        return j;
      });
    }, function () { throw new Retry(); });
  }

  /* Tell the user the connection is away and wait (cut short when the browser comes online). */
  async function countdown(ms) {
    for (var s = Math.max(1, Math.round(ms / 1000)); s > 0; s--) {
      say(fmt(T.offline_retry, "s", s), "info");
      await Promise.race([sleep(1000), new Promise(function (r) {
        window.addEventListener("online", r, { once: true }); })]);
      if (navigator.onLine === false) s = Math.max(s, 2);
    }
  }

  /* Retry a request while the network (or the server) is away. */
  async function patiently(fn, delay) {
    delay = delay || 1000;
    for (;;) {
      try { var v = await fn(); say(""); return v; }
      catch (e) {
        if (!(e instanceof Retry)) throw e;
        await countdown(delay);
        delay = Math.min(delay * 2, 16000);
      }
    }
  }

  function putChunk(id, blob, start, total, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", "/api/v1/uploads/" + id);
      xhr.setRequestHeader("Content-Range", "bytes " + start + "-" + (start + blob.size - 1) + "/" + total);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.timeout = 120000;
      xhr.upload.onprogress = function (e) { onProgress(e.loaded); };
      xhr.onload = function () {
        var j = {};
        try { j = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
        resolve({ status: xhr.status, json: j });
      };
      xhr.onerror = xhr.ontimeout = xhr.onabort = function () { reject(new Retry()); };
      xhr.send(blob);
    });
  }

  async function hashFile(file, onProgress) {
    var h = new window.KhetSha256(), step = 4 * 1048576;
    for (var o = 0; o < file.size; o += step) {
      var buf = new Uint8Array(await file.slice(o, o + step).arrayBuffer());
      h.update(buf);
      onProgress(o + buf.length);
    }
    return h.hex();
  }

  async function sendFile(file, sha, onProgress) {
    var up = await patiently(function () {
      return api("POST", "/api/v1/uploads", { filename: file.name, size: file.size, sha256: sha });
    });
    var offset = up.offset, complete = up.complete;
    onProgress(offset);
    while (!complete && offset < file.size) {
      var end = Math.min(offset + CHUNK, file.size), from = offset;
      try {
        var r = await putChunk(up.id, file.slice(from, end), from, file.size,
                               function (n) { onProgress(from + n); });
        if (r.status === 200) { offset = r.json.offset; complete = r.json.complete; say(""); continue; }
        if (r.status === 409 && typeof r.json.offset === "number") { offset = r.json.offset; continue; }
        if (r.status >= 500 || r.status === 429 || r.status === 0) throw new Retry();
        throw new UploadError(r.json.detail || ("HTTP " + r.status));
      } catch (e) {
        if (!(e instanceof Retry)) throw e;
        /* The connection dropped: wait, ask where the upload stands and go on from there. */
        await countdown(1000);
        var s = await patiently(function () { return api("GET", "/api/v1/uploads/" + up.id); }, 2000);
        offset = s.offset; complete = s.complete;
        onProgress(offset);
      }
    }
    onProgress(file.size);
    return up.id;
  }

  async function follow(flightId) {
    for (;;) {
      var f = await patiently(function () { return api("GET", "/api/v1/flights/" + flightId); });
      var p = Math.round((f.progress || 0) * 100);
      barAn.value = f.status === "done" ? 100 : p;
      var stage = f.job && f.job.stage ? " · " + f.job.stage : "";  /* a flight: "placing frame 37 of 167" */
      txtAn.textContent = (T["status_" + f.status] || f.status) + (f.status === "running" ? " · " + p + "%" + stage : "");
      if (f.status === "done") { say(T.upload_done, "ok"); window.location.assign("/flights/" + flightId); return; }
      if (f.status === "failed") { throw new UploadError(f.error || T.status_failed); }
      await sleep(1000);
    }
  }

  form.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var files = Array.prototype.slice.call(document.getElementById("files").files);
    if (!files.length) { say(T.choose_files, "error"); document.getElementById("files").focus(); return; }
    var gsdIn = document.getElementById("gsd_cm");
    var cm = parseFloat(gsdIn.value);
    /* A value the browser cannot read as a number reads as "" (badInput): refused, not ignored. */
    if ((gsdIn.value.trim() || gsdIn.validity.badInput) && !(cm >= 0.001 && cm <= 100000)) {
      say(T.gsd_invalid, "error"); gsdIn.focus(); return;
    }
    startBtn.disabled = true;
    document.getElementById("progress").hidden = false;
    var total = files.reduce(function (a, f) { return a + f.size; }, 0), done = 0, ids = [];
    try {
      lblUp.textContent = T.step_hash;
      var shas = [], hashed = 0;
      for (var i = 0; i < files.length; i++) {
        shas.push(await hashFile(files[i], function (n) {
          barUp.value = Math.floor(100 * (hashed + n) / total);
          txtUp.textContent = T.step_hash + " · " + mb(hashed + n) + " / " + mb(total);
        }));
        hashed += files[i].size;
      }
      lblUp.textContent = T.step_upload;
      for (i = 0; i < files.length; i++) {
        ids.push(await sendFile(files[i], shas[i], function (n) {
          var sent = done + n;
          barUp.value = Math.floor(100 * sent / total);
          txtUp.textContent = mb(sent) + " / " + mb(total) + " · " + Math.floor(100 * sent / total) + "%";
        }));
        done += files[i].size;
      }
      barUp.value = 100;
      /* The field's crop, saved with the field before its flight is made: the analysis takes a
         learned model only on a crop it learned (an extension worker's box is read-only). */
      var cropIn = document.getElementById("crop");
      var crop = cropIn.value.trim();
      if (!cropIn.readOnly && crop !== cropIn.dataset.saved) {
        await patiently(function () {
          return api("PATCH", "/api/v1/fields/" + fieldId, { crop: crop || null });
        });
        cropIn.dataset.saved = crop;
      }
      var body = { uploads: ids };
      var date = document.getElementById("captured_at").value;
      if (date) body.captured_at = date + "T12:00:00";
      var bands = document.getElementById("bands").value.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
      if (bands.length) body.bands = bands;
      if (cm > 0) body.gsd = cm / 100;  /* the API takes metres per pixel */
      /* The flight's idempotency key: every file's name and hash, the bands, the ground
         resolution and the crop. Sent again (a lost answer, a second click) it finds this
         flight; the same files with other settings are another flight. */
      var key = new window.KhetSha256();
      key.update(new TextEncoder().encode(JSON.stringify(
        [files.map(function (f, k) { return [f.name, shas[k]]; }), bands, body.gsd || null, crop])));
      body.client_id = "web-" + key.hex();
      var flight = await patiently(function () { return api("POST", "/api/v1/fields/" + fieldId + "/flights", body); });
      await follow(flight.id);
    } catch (e) {
      say(e && e.message ? e.message : String(e), "error");
      startBtn.disabled = false;
    }
  });
})();
