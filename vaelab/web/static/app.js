// vaelab explorer: plain JavaScript over the JSON API in vaelab/web/app.py (no libraries, no network).
// common.js (API, images, downloads), map.js (the latent map) and draw.js (draw or drop) load first.
"use strict";

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

// -- picking test images A and B; a bad index clears the old thumbnail --------------------------------------
async function pick(which, index) {
  const thumb = $(which === "a" ? "thumb-a" : "thumb-b");
  try {
    const entry = await testImage(index);
    state[which] = index;
    $(which === "a" ? "ia" : "ib").value = index;
    await drawEntry(thumb, entry);
    showError(null);
  } catch (err) {
    state[which] = null;
    blankCanvas(thumb);
    showError(err);
  }
  redrawMap();
}

function onMapPointer(ev) {
  const [u, v] = eventToMap(ev), mode = $("mode").value;
  if (mode === "decode") { setZ(fromMap(u, v), false); return; }
  if (ev.type === "pointerdown" && state.info.n_points) pick(mode, nearest(u, v));
}

// -- interpolation (the two originals at the ends), sampling, metrics ---------------------------------------
async function interpolate() {
  try {
    const body = { i: Number($("ia").value), j: Number($("ib").value), steps: Number($("steps").value),
                   method: $("method").value };
    const out = await api("/api/interpolate", body);
    state.path = out.map;
    const n = out.images.length, ts = out.images.map((_, i) => (i / (n - 1)).toFixed(2));
    await imageRow($("strip"), [out.ends[0], ...out.images, out.ends[1]],
                   [`A (#${body.i})`, ...ts, `B (#${body.j})`], [0, n + 1]);
    redrawMap();
    showError(null);
  } catch (err) {
    $("strip").replaceChildren();
    state.path = null;
    redrawMap();
    showError(err);
  }
}

async function sample() {
  try {
    const body = { n: Number($("n").value), temperature: Number($("temperature").value) };
    if (state.info.n_classes) body.y = state.y;
    await imageRow($("samples"), (await api("/api/sample", body)).images);
    showError(null);
  } catch (err) { showError(err); }
}

function cell(tag, text, cls = "") {
  const c = document.createElement(tag);
  c.textContent = text ?? "";
  if (cls) c.className = cls;
  return c;
}

function showMetrics(table) {
  const groups = table.groups.filter((g) => g.rows.length);
  $("metrics-warning").hidden = !table.warning;
  $("metrics-warning").textContent = table.warning || "";
  if (!groups.length) { $("metrics").replaceChildren(cell("caption", "no metrics recorded for this run")); return; }
  const head = document.createElement("thead"), tr = document.createElement("tr");
  tr.append(cell("th", "quantity"), cell("th", "value"), cell("th", "unit"), cell("th", "scale / note"));
  head.append(tr);
  const bodies = groups.map((g) => {
    const tb = document.createElement("tbody"), title = document.createElement("tr"), th = cell("th", g.title, "group");
    th.colSpan = 4; title.append(th); tb.append(title);
    for (const r of g.rows) {
      const row = document.createElement("tr");
      row.append(cell("td", r.label), cell("td", r.text, "num"), cell("td", r.unit),
                 cell("td", [r.scale, r.note].filter(Boolean).join("; ")));
      tb.append(row);
    }
    return tb;
  });
  $("metrics").replaceChildren(head, ...bodies);
}

// -- start ---------------------------------------------------------------------------------------------
function describeMap(info) {
  const evr = info.map.projection.explained_variance_ratio;
  $("map-axes").textContent = info.map.projection.kind === "pca"
    ? `(PC1, PC2 of the means: ${(100 * (evr[0] + evr[1])).toFixed(0)}% of their variance)`
    : info.latent_dim === 1 ? "(z[0]; 1-D latent)" : "(z[0], z[1])";
  $("prior-note").textContent = info.prior.text;
  const k = info.n_classes || (info.map.labels ? Math.max(...info.map.labels) + 1 : 0);
  $("legend").replaceChildren(...info.class_names.slice(0, k).map((name, i) => {
    const s = document.createElement("span"); s.textContent = name; s.style.setProperty("--c", color(i, k)); return s;
  }));
}

function wireMap() {
  const map = $("map");
  map.addEventListener("pointerdown", (ev) => {
    state.dragging = true; hideHover(); map.setPointerCapture(ev.pointerId); onMapPointer(ev);
  });
  map.addEventListener("pointermove", (ev) => {
    if (state.dragging) { if ($("mode").value === "decode") onMapPointer(ev); return; }
    onMapHover(ev);
  });
  map.addEventListener("pointerup", () => { state.dragging = false; });
  map.addEventListener("pointerleave", () => { if (!state.dragging) hideHover(); });
}

async function main() {
  const info = await api("/api/info");
  state.info = info;
  $("title").textContent = `${info.model} · run ${info.run} · latent_dim ${info.latent_dim} · ` +
    `${info.n_points} test images`;
  describeMap(info);
  if (info.n_classes) {
    $("class-row").hidden = false;
    $("class").replaceChildren(...info.class_names.slice(0, info.n_classes).map((name, i) => new Option(name, i)));
    state.y = 0;
    $("class").addEventListener("change", () => {
      state.y = Number($("class").value); requestDecode(); submitDrawing();
    });
    $("sample-class").hidden = false;
    $("sample-class").textContent = "conditional model: samples and drawings use the class chosen under Decoded";
  }
  state.b = Math.min(1, Math.max(0, info.n_points - 1));
  state.bounds = computeBounds(info.map.points);
  drawPointsLayer();
  state.z = fromMap(...(info.prior.kind === "standard_normal" ? priorCentre() : [0, 0]));
  buildSliders();
  showMetrics(info.metric_table);
  wireMap();
  wireDownloads(info.run);
  $("interp-go").addEventListener("click", interpolate);
  $("sample-go").addEventListener("click", sample);
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
  });
  for (const [id, which] of [["ia", "a"], ["ib", "b"]]) {
    $(id).max = info.n_points - 1;
    $(id).addEventListener("change", () => pick(which, Number($(id).value)));
  }
  if (info.frame) {
    $("draw-panel").hidden = false;
    $("draw-fit").checked = info.input_shape[0] === 1;  // digits are drawn anywhere; photos keep their framing
    wirePen();
    clearDrawing();
  }
  setZ(state.z, false);
  if (info.n_points) { await pick("a", state.a); await pick("b", state.b); }
  document.body.dataset.ready = "1";
}

main().catch(showError);
