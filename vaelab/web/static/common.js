// vaelab explorer, shared helpers: the JSON API, drawing API images onto canvases, PNG downloads.
"use strict";

const $ = (id) => document.getElementById(id);
// the page's state, shared by map.js, draw.js and app.js
const state = {
  info: null, z: [], y: null, bounds: null, layer: null, busy: false, pending: false, dragging: false,
  a: 0, b: 1, path: null, decodes: 0, drawn: null, hover: null, thumbs: new Map(),
};
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];  // matplotlib's tab10, as the plots

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

// -- one example from the API (base64 PNG, or raw values for non-image data) onto a canvas ---------------
function blankCanvas(canvas) {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  canvas.title = "";
  delete canvas.dataset.filled;
}

function drawEntry(canvas, entry) {
  return new Promise((resolve) => {
    const ctx = canvas.getContext("2d");
    if (!entry.image) {
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      canvas.title = entry.values.map((v) => (v === null ? "nan" : v.toFixed(3))).join(", ");
      canvas.dataset.filled = "1";
      resolve();
      return;
    }
    const img = new Image();
    img.onload = () => {
      ctx.imageSmoothingEnabled = false;
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      canvas.dataset.filled = "1";
      resolve();
    };
    img.onerror = () => resolve();
    img.src = "data:image/png;base64," + entry.image;
  });
}

// A row of images; ``captions`` (optional) puts a caption under each, ``marked`` (indices) outlines some.
function imageRow(container, entries, captions = null, marked = []) {
  container.replaceChildren();
  const done = entries.map((entry, i) => {
    const c = document.createElement("canvas");
    c.width = 56; c.height = 56; c.className = "pixel";
    if (!captions) { container.appendChild(c); return drawEntry(c, entry); }
    const fig = document.createElement("figure"), cap = document.createElement("figcaption");
    if (marked.includes(i)) fig.className = "original";
    cap.textContent = captions[i];
    fig.append(c, cap);
    container.appendChild(fig);
    return drawEntry(c, entry);
  });
  return Promise.all(done);
}

// -- PNG downloads -------------------------------------------------------------------------------------
function savePNG(canvas, name) {
  const a = document.createElement("a");
  a.href = canvas.toDataURL("image/png");
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
}

// All canvases inside ``container`` side by side (2 px apart) on one white canvas.
function joinCanvases(container) {
  const parts = [...container.querySelectorAll("canvas")];
  const out = document.createElement("canvas"), gap = 2;
  out.width = Math.max(1, parts.reduce((w, c) => w + c.width + gap, -gap));
  out.height = Math.max(1, ...parts.map((c) => c.height));
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, out.width, out.height);
  parts.reduce((x, c) => { ctx.drawImage(c, x, 0); return x + c.width + gap; }, 0);
  return out;
}

// Buttons with data-canvas="id" (one canvas) or data-row="id" (a row of images) save a PNG.
function wireDownloads(runName) {
  for (const button of document.querySelectorAll("button.download")) {
    button.addEventListener("click", () => {
      const id = button.dataset.canvas || button.dataset.row;
      const canvas = button.dataset.canvas ? $(id) : joinCanvases($(id));
      savePNG(canvas, `vaelab-${runName}-${id}.png`);
    });
  }
}
