// vaelab explorer: plain JavaScript over the JSON API in vaelab/web/app.py (no libraries, no network).
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const state = {
  info: null, z: [], y: null, bounds: null, layer: null,
  busy: false, pending: false, dragging: false, a: 0, b: 1, path: null, decodes: 0,
};

function color(k, n) {
  return n <= PALETTE.length ? PALETTE[k] : `hsl(${Math.round((360 * k) / n)}, 65%, 45%)`;
}

function showError(err) {
  const box = $("error");
  box.hidden = !err;
  box.textContent = err ? String(err.message || err) : "";
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, opts);
  const data = await response.json();
  if (!response.ok) throw new Error(`${path}: ${data.error || response.statusText}`);
  return data;
}

// -- drawing one decoded example (base64 PNG, or raw values for non-image data) -----------------
function drawEntry(canvas, entry) {
  return new Promise((resolve) => {
    const ctx = canvas.getContext("2d");
    if (!entry.image) {
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      canvas.title = entry.values.map((v) => v.toFixed(3)).join(", ");
      resolve();
      return;
    }
    const img = new Image();
    img.onload = () => {
      ctx.imageSmoothingEnabled = false;
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      resolve();
    };
    img.onerror = () => resolve();
    img.src = "data:image/png;base64," + entry.image;
  });
}

function imageRow(container, entries) {
  container.replaceChildren();
  for (const entry of entries) {
    const c = document.createElement("canvas");
    c.width = 56; c.height = 56; c.className = "pixel";
    container.appendChild(c);
    drawEntry(c, entry);
  }
}

// -- projection between latent space and the 2-D map (mirrors Explorer.to_map / from_map) ----------
function toMap(z) {
  const p = state.info.map.projection;
  return [0, 1].map((r) => z.reduce((s, zi, i) => s + (zi - p.mean[i]) * p.components[r][i], 0));
}

function fromMap(u, v) {
  const p = state.info.map.projection;
  return p.mean.map((m, i) => m + u * p.components[0][i] + v * p.components[1][i]);
}

function computeBounds(points) {
  let [x0, x1, y0, y1] = [-3, 3, -3, 3];
  if (points.length) {
    const us = points.map((p) => p[0]), vs = points.map((p) => p[1]);
    [x0, x1, y0, y1] = [Math.min(...us), Math.max(...us), Math.min(...vs), Math.max(...vs)];
  }
  const half = Math.max(x1 - x0, y1 - y0, 1e-3) * 0.55, cu = (x0 + x1) / 2, cv = (y0 + y1) / 2;
  return { u0: cu - half, u1: cu + half, v0: cv - half, v1: cv + half };
}

function toPx(u, v) {
  const b = state.bounds, w = $("map").width, h = $("map").height;
  return [((u - b.u0) / (b.u1 - b.u0)) * w, (1 - (v - b.v0) / (b.v1 - b.v0)) * h];
}

function fromPx(px, py) {
  const b = state.bounds, w = $("map").width, h = $("map").height;
  return [b.u0 + (px / w) * (b.u1 - b.u0), b.v0 + (1 - py / h) * (b.v1 - b.v0)];
}

function drawPointsLayer() {
  const map = $("map"), layer = document.createElement("canvas");
  layer.width = map.width; layer.height = map.height;
  const ctx = layer.getContext("2d"), { points, labels } = state.info.map, k = state.info.n_classes ||
    (labels ? Math.max(...labels) + 1 : 1);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, layer.width, layer.height);
  ctx.globalAlpha = 0.7;
  points.forEach(([u, v], i) => {
    const [x, y] = toPx(u, v);
    ctx.fillStyle = labels ? color(labels[i], k) : "#555";
    ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
  });
  state.layer = layer;
}

function redrawMap() {
  const ctx = $("map").getContext("2d");
  ctx.drawImage(state.layer, 0, 0);
  const ring = (idx, label) => {
    const [x, y] = toPx(...state.info.map.points[idx]);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.stroke();
    ctx.fillStyle = "#000"; ctx.font = "bold 12px sans-serif"; ctx.fillText(label, x + 7, y - 7);
  };
  if (state.info.n_points > 0) { ring(state.a, "A"); ring(state.b, "B"); }
  if (state.path) {
    ctx.strokeStyle = "#333"; ctx.lineWidth = 1.5; ctx.beginPath();
    state.path.forEach(([u, v], i) => { const [x, y] = toPx(u, v); i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
    ctx.stroke();
  }
  const [mx, my] = toPx(...toMap(state.z));
  ctx.strokeStyle = "#d00"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.moveTo(mx - 8, my); ctx.lineTo(mx + 8, my); ctx.moveTo(mx, my - 8); ctx.lineTo(mx, my + 8);
  ctx.stroke();
}

// -- live decoding: at most one request in flight, the latest z wins ----------------------------------
async function requestDecode() {
  if (state.busy) { state.pending = true; return; }
  state.busy = true;
  try {
    do {
      state.pending = false;
      const body = { z: state.z.slice() };
      if (state.info.n_classes) body.y = state.y;
      const t0 = performance.now();
      const out = await api("/api/decode", body);
      await drawEntry($("decoded"), out);
      if (!out.image) { $("decoded-values").hidden = false; $("decoded-values").textContent = out.values.join("\n"); }
      state.decodes += 1;
      document.body.dataset.decodes = String(state.decodes);
      $("decode-status").textContent = `decoded in ${(performance.now() - t0).toFixed(0)} ms (round trip)`;
      showError(null);
    } while (state.pending);
  } catch (err) {
    showError(err);
  } finally {
    state.busy = false;
  }
}

function setZ(z, fromSlider) {
  state.z = z.map((v) => Math.round(v * 1000) / 1000);
  if (!fromSlider) syncSliders();
  redrawMap();
  requestDecode();
}

function buildSliders() {
  const box = $("sliders"), [lo, hi] = state.info.latent_range;
  const r = Math.max(3, Math.ceil(Math.max(Math.abs(lo), Math.abs(hi))));
  box.replaceChildren();
  state.z.forEach((_, i) => {
    const label = document.createElement("label"), input = document.createElement("input");
    const out = document.createElement("output");
    label.textContent = `z[${i}]`; label.htmlFor = `z${i}`;
    Object.assign(input, { type: "range", id: `z${i}`, min: -r, max: r, step: 0.01 });
    input.addEventListener("input", () => {
      const z = state.z.slice(); z[i] = Number(input.value); out.textContent = z[i].toFixed(2); setZ(z, true);
    });
    box.append(label, input, out);
  });
  syncSliders();
}

function syncSliders() {
  state.z.forEach((v, i) => {
    const input = $(`z${i}`);
    if (input) { input.value = v; input.nextElementSibling.textContent = v.toFixed(2); }
  });
}

// -- map interaction ----------------------------------------------------------------------------------
function eventToMap(ev) {
  const rect = $("map").getBoundingClientRect();
  return fromPx(((ev.clientX - rect.left) / rect.width) * $("map").width,
                ((ev.clientY - rect.top) / rect.height) * $("map").height);
}

function nearest(u, v) {
  let best = 0, bestD = Infinity;
  state.info.map.points.forEach(([pu, pv], i) => {
    const d = (pu - u) ** 2 + (pv - v) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  });
  return best;
}

async function pick(which, index) {
  try {
    const out = await api("/api/encode", { index });
    state[which] = index;
    $(which === "a" ? "ia" : "ib").value = index;
    await drawEntry($(which === "a" ? "thumb-a" : "thumb-b"), out.original);
    redrawMap();
  } catch (err) { showError(err); }
}

function onMapPointer(ev) {
  const [u, v] = eventToMap(ev), mode = $("mode").value;
  if (mode === "decode") { setZ(fromMap(u, v), false); return; }
  if (ev.type === "pointerdown" && state.info.n_points) pick(mode, nearest(u, v));
}

// -- interpolation, sampling, metrics ------------------------------------------------------------------
async function interpolate() {
  try {
    const body = { i: Number($("ia").value), j: Number($("ib").value), steps: Number($("steps").value),
                   method: $("method").value };
    const out = await api("/api/interpolate", body);
    state.path = out.map;
    imageRow($("strip"), out.images);
    redrawMap();
    showError(null);
  } catch (err) { showError(err); }
}

async function sample() {
  try {
    const body = { n: Number($("n").value), temperature: Number($("temperature").value) };
    if (state.info.n_classes) body.y = state.y;
    imageRow($("samples"), (await api("/api/sample", body)).images);
    showError(null);
  } catch (err) { showError(err); }
}

function showMetrics(metrics) {
  $("metrics-source").textContent = `(${metrics.source})`;
  const rows = Object.entries(metrics.values || {}).filter(([, v]) => v === null || typeof v !== "object");
  $("metrics").replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr"), a = document.createElement("td"), b = document.createElement("td");
    a.textContent = k;
    b.textContent = typeof v === "number" ? Number(v.toPrecision(5)).toString() : String(v);
    tr.append(a, b);
    return tr;
  }));
  if (!rows.length) $("metrics").textContent = "no metrics recorded for this run";
}

async function main() {
  const info = await api("/api/info");
  state.info = info;
  const evr = info.map.projection.explained_variance_ratio;
  $("title").textContent = `${info.model} · run ${info.run} · latent_dim ${info.latent_dim} · ` +
    `${info.n_points} test images`;
  $("map-axes").textContent = info.map.projection.kind === "pca"
    ? `(PC1, PC2 of the means: ${(100 * (evr[0] + evr[1])).toFixed(0)}% of their variance)`
    : info.latent_dim === 1 ? "(z[0]; 1-D latent)" : "(z[0], z[1])";
  const k = info.n_classes || (info.map.labels ? Math.max(...info.map.labels) + 1 : 0);
  $("legend").replaceChildren(...info.class_names.slice(0, k).map((name, i) => {
    const s = document.createElement("span"); s.textContent = name; s.style.setProperty("--c", color(i, k)); return s;
  }));
  if (info.n_classes) {
    $("class-row").hidden = false;
    $("class").replaceChildren(...info.class_names.slice(0, info.n_classes).map((name, i) => new Option(name, i)));
    state.y = 0;
    $("class").addEventListener("change", () => { state.y = Number($("class").value); requestDecode(); });
    $("sample-class").hidden = false;
    $("sample-class").textContent = "conditional model: samples use the class chosen under Decoded";
  }
  state.b = Math.min(1, Math.max(0, info.n_points - 1));
  state.bounds = computeBounds(info.map.points);
  drawPointsLayer();
  state.z = fromMap(0, 0);
  buildSliders();
  showMetrics(info.metrics);
  const map = $("map");
  map.addEventListener("pointerdown", (ev) => { state.dragging = true; map.setPointerCapture(ev.pointerId); onMapPointer(ev); });
  map.addEventListener("pointermove", (ev) => { if (state.dragging && $("mode").value === "decode") onMapPointer(ev); });
  map.addEventListener("pointerup", () => { state.dragging = false; });
  $("interp-go").addEventListener("click", interpolate);
  $("sample-go").addEventListener("click", sample);
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
  });
  for (const [id, which] of [["ia", "a"], ["ib", "b"]]) {
    $(id).max = info.n_points - 1;
    $(id).addEventListener("change", () => pick(which, Number($(id).value)));
  }
  setZ(state.z, false);
  if (info.n_points) { await pick("a", state.a); await pick("b", state.b); }
  document.body.dataset.ready = "1";
}

main().catch(showError);
