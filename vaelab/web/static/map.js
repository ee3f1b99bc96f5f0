// vaelab explorer, the latent map: projection, axes, the prior's sigma circles, points, markers, hover.
"use strict";

// -- projection between latent space and the 2-D map (mirrors Explorer.to_map / from_map) ----------
function toMap(z) {
  const p = state.info.map.projection;
  return [0, 1].map((r) => z.reduce((s, zi, i) => s + (zi - p.mean[i]) * p.components[r][i], 0));
}

function fromMap(u, v) {
  const p = state.info.map.projection;
  return p.mean.map((m, i) => m + u * p.components[0][i] + v * p.components[1][i]);
}

// z = 0 on the map: the prior's centre (the projection's axes are orthonormal, so N(0, I) stays N(0, I_2))
function priorCentre() {
  return toMap(state.info.map.projection.mean.map(() => 0));
}

const SIGMAS = [1, 2, 3];
const oneDim = () => state.info.latent_dim === 1;
const hasPrior = () => state.info.prior.kind === "standard_normal";

function computeBounds(points) {
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  const grow = (u, v) => { x0 = Math.min(x0, u); x1 = Math.max(x1, u); y0 = Math.min(y0, v); y1 = Math.max(y1, v); };
  points.forEach(([u, v]) => grow(u, v));
  if (hasPrior()) {  // the 3-sigma circle stays in view: where the codes sit against the prior is the point
    const [cu, cv] = priorCentre(), r = SIGMAS[SIGMAS.length - 1];
    grow(cu - r, oneDim() ? cv : cv - r); grow(cu + r, oneDim() ? cv : cv + r);
  }
  if (!Number.isFinite(x0)) [x0, x1, y0, y1] = [-3, 3, -3, 3];
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

// -- the static layer: axes with tick values, the points, the prior ----------------------------------------
function niceStep(span) {
  const raw = span / 6, p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
}

const tickText = (t) => String(Number(t.toFixed(6)));

function drawAxes(ctx, w, h) {
  const b = state.bounds, step = niceStep(b.u1 - b.u0);
  ctx.font = "13px sans-serif"; ctx.lineWidth = 1;
  for (let t = Math.ceil(b.u0 / step) * step; t <= b.u1; t += step) {
    const [x] = toPx(t, 0);
    ctx.strokeStyle = Math.abs(t) < step / 1e6 ? "#999" : "#e6e6e6";
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, h); ctx.stroke();
    ctx.fillStyle = "#555"; ctx.fillText(tickText(t), x + 2, h - 4);
  }
  for (let t = Math.ceil(b.v0 / step) * step; t <= b.v1; t += step) {
    const [, y] = toPx(0, t);
    ctx.strokeStyle = Math.abs(t) < step / 1e6 ? "#999" : "#e6e6e6";
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillStyle = "#555"; ctx.fillText(tickText(t), 3, y - 3);
  }
  const [nu, nv] = axisNames();
  ctx.font = "bold 12px sans-serif"; ctx.fillStyle = "#333";
  ctx.fillText(nu, w - ctx.measureText(nu).width - 6, h - 18);
  if (!oneDim()) ctx.fillText(nv, 6, 14);
}

function axisNames() {
  if (state.info.map.projection.kind === "pca") return ["PC1", "PC2"];
  return oneDim() ? ["z[0]", ""] : ["z[0]", "z[1]"];
}

function drawPrior(ctx, h) {
  const [cx, cy] = toPx(...priorCentre()), unit = $("map").width / (state.bounds.u1 - state.bounds.u0);
  ctx.save();
  ctx.strokeStyle = "#333"; ctx.fillStyle = "#333"; ctx.lineWidth = 1.5; ctx.setLineDash([6, 4]);
  ctx.font = "12px sans-serif";
  for (const s of SIGMAS) {
    ctx.beginPath();
    if (oneDim()) {  // a 1-D prior: the intervals +-1, 2, 3 sd on the line
      for (const sign of [-1, 1]) { ctx.moveTo(cx + sign * s * unit, 0); ctx.lineTo(cx + sign * s * unit, h); }
      ctx.stroke();
      ctx.fillText(`${s}σ`, cx + s * unit + 3, 28);
    } else {
      ctx.arc(cx, cy, s * unit, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.fillText(`${s}σ`, cx + s * unit * 0.71 + 2, cy - s * unit * 0.71 - 2);
    }
  }
  ctx.restore();
}

function drawPointsLayer() {
  const map = $("map"), layer = document.createElement("canvas");
  layer.width = map.width; layer.height = map.height;
  const ctx = layer.getContext("2d"), { points, labels } = state.info.map, k = state.info.n_classes ||
    (labels ? Math.max(...labels) + 1 : 1);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, layer.width, layer.height);
  drawAxes(ctx, layer.width, layer.height);
  ctx.globalAlpha = 0.7;
  points.forEach(([u, v], i) => {
    const [x, y] = toPx(u, v);
    ctx.fillStyle = labels ? color(labels[i], k) : "#555";
    ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
  });
  ctx.globalAlpha = 1;
  if (hasPrior()) drawPrior(ctx, layer.height);
  state.layer = layer;
}

// -- the live layer: A / B, the interpolation path, the decoded point, the drawing, the hovered point ------
const DRAWN_COLOR = "#e0109b";

function redrawMap() {
  const ctx = $("map").getContext("2d");
  ctx.drawImage(state.layer, 0, 0);
  const ring = (idx, label, r = 6) => {
    const [x, y] = toPx(...state.info.map.points[idx]);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.stroke();
    if (label) { ctx.fillStyle = "#000"; ctx.font = "bold 12px sans-serif"; ctx.fillText(label, x + 7, y - 7); }
  };
  if (state.a !== null && state.info.n_points > state.a) ring(state.a, "A");
  if (state.b !== null && state.info.n_points > state.b) ring(state.b, "B");
  if (state.hover !== null) ring(state.hover, "", 4);
  if (state.path) {
    ctx.strokeStyle = "#333"; ctx.lineWidth = 1.5; ctx.beginPath();
    state.path.forEach(([u, v], i) => { const [x, y] = toPx(u, v); i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
    ctx.stroke();
  }
  const [mx, my] = toPx(...toMap(state.z));
  ctx.strokeStyle = "#d00"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.moveTo(mx - 8, my); ctx.lineTo(mx + 8, my); ctx.moveTo(mx, my - 8); ctx.lineTo(mx, my + 8);
  ctx.stroke();
  if (state.drawn) {  // the drawing's posterior mean: a filled diamond
    const [x, y] = toPx(...state.drawn);
    ctx.fillStyle = DRAWN_COLOR; ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(x, y - 9); ctx.lineTo(x + 9, y); ctx.lineTo(x, y + 9); ctx.lineTo(x - 9, y);
    ctx.closePath(); ctx.fill(); ctx.stroke();
    ctx.fillStyle = "#000"; ctx.font = "bold 12px sans-serif"; ctx.fillText("drawing", x + 11, y + 4);
  }
}

// -- pointer helpers -----------------------------------------------------------------------------------
function eventToCanvas(ev) {
  const rect = $("map").getBoundingClientRect();
  return [((ev.clientX - rect.left) / rect.width) * $("map").width,
          ((ev.clientY - rect.top) / rect.height) * $("map").height];
}

function eventToMap(ev) {
  return fromPx(...eventToCanvas(ev));
}

function nearest(u, v) {
  let best = 0, bestD = Infinity;
  state.info.map.points.forEach(([pu, pv], i) => {
    const d = (pu - u) ** 2 + (pv - v) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  });
  return best;
}

// The test point under the pointer (within ``radius`` canvas pixels), or null.
function pointUnder(ev, radius = 6) {
  if (!state.info.n_points) return null;
  const [px, py] = eventToCanvas(ev), i = nearest(...fromPx(px, py));
  const [x, y] = toPx(...state.info.map.points[i]);
  return (x - px) ** 2 + (y - py) ** 2 <= radius ** 2 ? i : null;
}

async function testImage(index) {
  if (!state.thumbs.has(index)) state.thumbs.set(index, (await api("/api/encode", { index })).original);
  return state.thumbs.get(index);
}

async function onMapHover(ev) {
  const index = pointUnder(ev), box = $("hover");
  if (index === state.hover) return;
  state.hover = index;
  redrawMap();
  if (index === null) { box.hidden = true; delete box.dataset.index; return; }
  const wrap = $("map-wrap").getBoundingClientRect();
  box.style.left = `${Math.min(ev.clientX - wrap.left + 14, wrap.width - 110)}px`;
  box.style.top = `${ev.clientY - wrap.top + 14}px`;
  const { labels } = state.info.map;
  $("hover-text").textContent = `test image ${index}` +
    (labels ? ` · class ${state.info.class_names[labels[index]] ?? labels[index]}` : "");
  try {
    const entry = await testImage(index);
    if (state.hover !== index) return;  // the pointer moved on meanwhile
    await drawEntry($("hover-img"), entry);
    box.hidden = false;
    box.dataset.index = String(index);
  } catch (err) { showError(err); }
}

function hideHover() {
  state.hover = null;
  $("hover").hidden = true;
  delete $("hover").dataset.index;
  if (state.layer) redrawMap();
}
