// vaelab explorer, "draw or drop": a drawing (or an image file) -> the model's input -> its place on the map,
// its reconstruction and its log-likelihood, through POST /api/encode and POST /api/likelihood.
"use strict";

const draw = { busy: false, pending: false, down: false, last: null, inked: false, encodes: 0, timer: null,
               generation: 0 };  // generation: bumped by Clear, so answers about an erased drawing are dropped
const IW_SAMPLES = 100;  // K of the importance-sampled log p(x): quick, with its standard error shown

function frameColor(v) {
  const g = Math.round(255 * Math.min(1, Math.max(0, v)));
  return `rgb(${g}, ${g}, ${g})`;
}

function clearDrawing() {
  const c = $("draw"), ctx = c.getContext("2d");
  draw.generation += 1; draw.pending = false;
  clearTimeout(draw.timer); draw.timer = null;
  ctx.fillStyle = frameColor(state.info.frame.background);
  ctx.fillRect(0, 0, c.width, c.height);
  draw.inked = false;
  state.drawn = null;
  for (const id of ["draw-input", "draw-recon"]) blankCanvas($(id));
  $("draw-stats").replaceChildren();
  $("draw-status").textContent = "draw with the mouse, or drop an image file here";
  redrawMap();
}

// -- the pen -----------------------------------------------------------------------------------------------
function penPoint(ev) {
  const c = $("draw"), rect = c.getBoundingClientRect();
  return [((ev.clientX - rect.left) / rect.width) * c.width, ((ev.clientY - rect.top) / rect.height) * c.height];
}

function stroke(from, to) {
  const ctx = $("draw").getContext("2d");
  ctx.strokeStyle = frameColor(state.info.frame.ink);
  ctx.lineWidth = $("draw").width / 12; ctx.lineCap = "round"; ctx.lineJoin = "round";
  ctx.beginPath(); ctx.moveTo(...from); ctx.lineTo(...to); ctx.stroke();
  draw.inked = true;
}

function wirePen() {
  const c = $("draw");
  c.addEventListener("pointerdown", (ev) => {
    draw.down = true; draw.last = penPoint(ev); c.setPointerCapture(ev.pointerId);
    stroke(draw.last, draw.last);
  });
  c.addEventListener("pointermove", (ev) => {
    if (!draw.down) return;
    const p = penPoint(ev);
    stroke(draw.last, p);
    draw.last = p;
    if (!draw.timer) draw.timer = setTimeout(() => { draw.timer = null; submitDrawing(); }, 250);  // live
  });
  const end = () => {
    if (!draw.down) return;
    draw.down = false; clearTimeout(draw.timer); draw.timer = null;
    submitDrawing();
  };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", end);
  c.addEventListener("dragover", (ev) => ev.preventDefault());
  c.addEventListener("drop", (ev) => {
    ev.preventDefault();
    if (ev.dataTransfer.files[0]) openFile(ev.dataTransfer.files[0]);
  });
  $("draw-file").addEventListener("change", () => { if ($("draw-file").files[0]) openFile($("draw-file").files[0]); });
  $("draw-clear").addEventListener("click", clearDrawing);
  $("draw-fit").addEventListener("change", submitDrawing);
  $("draw-invert").addEventListener("change", () => { invertDrawing(); submitDrawing(); });
}

// -- an image file: drawn onto the pad (contained, centred), inverted when its background is the opposite --
function openFile(file) {
  const reader = new FileReader();
  reader.onload = () => {
    const img = new Image();
    img.onload = () => {
      const c = $("draw"), ctx = c.getContext("2d"), s = Math.min(c.width / img.width, c.height / img.height);
      const w = Math.max(1, Math.round(s * img.width)), h = Math.max(1, Math.round(s * img.height));
      const flip = Math.abs(borderGrey(img) - state.info.frame.background) > 0.5;
      const scaled = document.createElement("canvas");  // the image alone, inverted if need be
      scaled.width = w; scaled.height = h;
      scaled.getContext("2d").drawImage(img, 0, 0, w, h);
      if (flip) invertCanvas(scaled);
      ctx.fillStyle = frameColor(state.info.frame.background);  // the margins are the data's background
      ctx.fillRect(0, 0, c.width, c.height);
      ctx.drawImage(scaled, Math.round((c.width - w) / 2), Math.round((c.height - h) / 2));
      $("draw-invert").checked = flip;
      draw.inked = true;
      submitDrawing();
    };
    img.onerror = () => showError(`${file.name}: not an image this browser can read`);
    img.src = reader.result;  // a data: URL (the page's CSP allows images from data: only)
  };
  reader.readAsDataURL(file);
}

function borderGrey(img) {
  const c = document.createElement("canvas");
  c.width = 32; c.height = 32;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0, 32, 32);
  const d = ctx.getImageData(0, 0, 32, 32).data;
  let sum = 0, n = 0;
  for (let i = 0; i < 32; i++) for (const [x, y] of [[i, 0], [i, 31], [0, i], [31, i]]) {
    const o = 4 * (y * 32 + x); sum += (d[o] + d[o + 1] + d[o + 2]) / 765; n += 1;
  }
  return sum / n;
}

function invertCanvas(c) {
  const ctx = c.getContext("2d"), im = ctx.getImageData(0, 0, c.width, c.height);
  for (let i = 0; i < im.data.length; i += 4) for (let k = 0; k < 3; k++) im.data[i + k] = 255 - im.data[i + k];
  ctx.putImageData(im, 0, 0);
}

const invertDrawing = () => invertCanvas($("draw"));

// -- the pad -> the model's input: crop to the ink, scale like the test images, area-average, quantize -------
function inkBox(im, bg) {
  let [x0, y0, x1, y1] = [im.width, im.height, -1, -1];
  for (let y = 0; y < im.height; y++) for (let x = 0; x < im.width; x++) {
    const o = 4 * (y * im.width + x), g = (im.data[o] + im.data[o + 1] + im.data[o + 2]) / 765;
    if (Math.abs(g - bg) > 0.2) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  }
  return x1 < 0 ? null : [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
}

function modelInput() {
  const [C, H, W] = state.info.input_shape, f = state.info.frame, src = $("draw");
  const pad = src.getContext("2d").getImageData(0, 0, src.width, src.height);
  const k = Math.ceil(src.width / Math.min(H, W)), big = document.createElement("canvas");
  big.width = W * k; big.height = H * k;
  const ctx = big.getContext("2d");
  ctx.fillStyle = frameColor(f.background);
  ctx.fillRect(0, 0, big.width, big.height);
  ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "high";
  const box = $("draw-fit").checked ? inkBox(pad, f.background) : null;
  if (box) {  // the ink's longer side becomes ``extent`` of the frame (as in the test images), centred
    const [bx, by, bw, bh] = box, s = (f.extent * Math.min(big.width, big.height)) / Math.max(bw, bh);
    ctx.drawImage(src, bx, by, bw, bh, (big.width - s * bw) / 2, (big.height - s * bh) / 2, s * bw, s * bh);
  } else {
    ctx.drawImage(src, 0, 0, big.width, big.height);
  }
  const d = ctx.getImageData(0, 0, big.width, big.height).data, L = state.info.likelihood.levels || 256;
  const x = new Array(C * H * W).fill(0);
  for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) {
    const sums = [0, 0, 0];
    for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) {
      const o = 4 * ((i * k + a) * big.width + j * k + b);
      for (let ch = 0; ch < 3; ch++) sums[ch] += d[o + ch] / 255;
    }
    const rgb = sums.map((s) => s / (k * k)), grey = (rgb[0] + rgb[1] + rgb[2]) / 3;
    for (let c = 0; c < C; c++) {  // on the data's grid of L levels: the drawing is a possible data point
      const v = C === 1 ? grey : rgb[c];
      x[c * H * W + i * W + j] = Math.round(v * (L - 1)) / (L - 1);
    }
  }
  return x;
}

function showInput(x) {
  const [C, H, W] = state.info.input_shape, c = $("draw-input"), small = document.createElement("canvas");
  small.width = W; small.height = H;
  const sctx = small.getContext("2d"), im = sctx.createImageData(W, H);
  for (let p = 0; p < H * W; p++) {
    for (let ch = 0; ch < 3; ch++) im.data[4 * p + ch] = Math.round(255 * x[(C === 1 ? 0 : ch) * H * W + p]);
    im.data[4 * p + 3] = 255;
  }
  sctx.putImageData(im, 0, 0);
  const ctx = c.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, c.width, c.height);
  c.dataset.filled = "1";
}

// -- requests: at most one in flight, the latest drawing wins --------------------------------------------
async function submitDrawing() {
  if (!draw.inked) return;
  if (draw.busy) { draw.pending = true; return; }
  draw.busy = true;
  try {
    do {
      draw.pending = false;
      const generation = draw.generation, x = modelInput();
      showInput(x);
      const body = { x };
      if (state.info.n_classes) body.y = state.y;
      const enc = await api("/api/encode", body);
      const lik = state.info.likelihood.available ? await api("/api/likelihood", { ...body, k: IW_SAMPLES }) : null;
      if (generation !== draw.generation) break;  // cleared meanwhile
      state.drawn = enc.map;
      redrawMap();
      await drawEntry($("draw-recon"), enc.reconstruction);
      showDrawStats(enc, lik);
      draw.encodes += 1;
      document.body.dataset.drawEncodes = String(draw.encodes);
      showError(null);
    } while (draw.pending);
  } catch (err) {
    showError(err);
  } finally {
    draw.busy = false;
  }
}

function statRow(label, value, title = "") {
  const dt = document.createElement("dt"), dd = document.createElement("dd");
  dt.textContent = label; dd.textContent = value; if (title) dd.title = title;
  return [dt, dd];
}

function showDrawStats(enc, lik) {
  const [u, v] = enc.map, rows = [];
  rows.push(statRow("map point", `(${u.toFixed(2)}, ${v.toFixed(2)})`));
  if (state.info.n_classes) rows.push(statRow("encoded as class", state.info.class_names[state.y]));
  if (!lik) {
    rows.push(statRow("log p(x)", `not defined: ${state.info.model} has no likelihood`));
  } else {
    const se = lik.se > 0 ? ` ± ${lik.se.toPrecision(2)}` : "";
    rows.push(statRow("log p(x)", `${lik.log_px.toFixed(2)}${se} ${lik.unit}`, "± its Monte Carlo standard error"));
    rows.push(statRow("scale", lik.scale.label, SCALE_HELP[lik.scale.kind] || ""));
    if (lik.bits_per_dim !== null) rows.push(statRow("bits / dim", lik.bits_per_dim.toFixed(3)));
    rows.push(statRow("estimate", lik.method));
    if (lik.ess !== null) rows.push(statRow("effective samples", `${lik.ess.toFixed(1)} of K = ${lik.k}`));
    if (lik.test_nll !== null) {
      rows.push(statRow("test-set mean", `${(-lik.test_nll).toFixed(2)} ${lik.unit} (eval.json, same scale)`));
    }
  }
  $("draw-stats").replaceChildren(...rows.flat());
  $("draw-status").textContent = "the diamond on the map is this drawing's posterior mean";
}

const SCALE_HELP = {
  discrete: "a log-probability of the image among all images with this many values per pixel (<= 0)",
  density: "a log-density of continuous pixels: not a probability, any sign; compare only with densities",
  "cross-entropy": "a Bernoulli likelihood of grey pixels: no normalised distribution; compare only alike",
};
