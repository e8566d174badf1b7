// vae explore: the page. Everything it shows comes from the server's /api routes; no library.
"use strict";

const state = { info: null, z: [], chosen: [], recon: [], colourBy: "label", seed: 1, pending: null, busy: false };
const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, init);
  if (!response.ok) {
    const text = await response.text();
    throw new Error(`${path}: ${response.status} ${text}`);
  }
  return response;
}

function status(text) { $("status").textContent = text; }

// -- decoding the sliders' code, one request at a time (the latest wins) --------------------

function currentLabel() {
  return state.info.conditional ? Number($("label").value) : null;
}

async function decode() {
  if (state.busy) { state.pending = true; return; }
  state.busy = true;
  try {
    do {
      state.pending = false;
      const response = await api("/api/decode", { z: state.z, label: currentLabel() });
      const url = URL.createObjectURL(await response.blob());
      const img = $("decoded");
      if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
      img.dataset.url = url;
      img.src = url;
      img.dataset.decodes = String(Number(img.dataset.decodes || 0) + 1);
    } while (state.pending);
  } catch (error) {
    status(String(error));
  } finally {
    state.busy = false;
  }
}

function setCode(z) {
  state.z = z.map(Number);
  for (const input of document.querySelectorAll("input.dim")) {
    const d = Number(input.dataset.dim);
    input.value = String(state.z[d]);
    $(`value-${d}`).textContent = state.z[d].toFixed(2);
  }
  decode();
}

function buildSliders(info) {
  state.z = new Array(info.latent_dim).fill(0);
  let inactive = 0;
  for (const dim of info.dims) {
    const box = dim.active ? $("sliders") : $("inactive");
    inactive += dim.active ? 0 : 1;
    const name = document.createElement("span");
    name.className = "dim-name";
    name.textContent = `z${dim.index}`;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: "-4", max: "4", step: "0.05", value: "0", className: "dim" });
    input.dataset.dim = String(dim.index);
    input.setAttribute("aria-label", `latent dimension ${dim.index}`);
    const value = document.createElement("output");
    value.id = `value-${dim.index}`;
    value.textContent = "0.00";
    const kl = document.createElement("span");
    kl.className = "dim-kl";
    kl.textContent = `${info.spread_name.split(" ")[0]} ${dim.spread.toFixed(2)}`;
    input.addEventListener("input", () => {
      state.z[dim.index] = Number(input.value);
      value.textContent = state.z[dim.index].toFixed(2);
      decode();
    });
    box.append(name, input, value, kl);
  }
  $("inactive-count").textContent = String(inactive);
  $("inactive-box").hidden = inactive === 0;
  $("inactive-box").open = inactive === info.dims.length; // nothing active: show them all
}

async function draw() {
  const body = { temperature: Number($("temperature").value), sampler: $("sampler").value, seed: state.seed++ };
  const response = await api("/api/draw", body);
  setCode((await response.json()).z);
}

// -- the scatter of encoded inputs ------------------------------------------------------------

function colourOf(i) {
  const points = state.info.points;
  if (state.colourBy === "label" && points.labels) return PALETTE[points.labels[i] % PALETTE.length];
  const values = points.factors[state.colourBy];
  if (!values) return "#1f77b4";
  const lo = state.range[0], hi = state.range[1];
  const t = hi > lo ? (values[i] - lo) / (hi - lo) : 0.5;
  return `hsl(${Math.round(240 - 240 * t)}, 70%, 45%)`;
}

function layout() {
  const xy = state.info.points.xy;
  const xs = xy.map((p) => p[0]), ys = xy.map((p) => p[1]);
  const pad = 12, canvas = $("scatter");
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (canvas.width - 2 * pad) / (x1 - x0 || 1), sy = (canvas.height - 2 * pad) / (y1 - y0 || 1);
  state.screen = xy.map(([x, y]) => [pad + (x - x0) * sx, canvas.height - pad - (y - y0) * sy]);
}

function drawScatter() {
  const canvas = $("scatter"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const values = state.info.points.factors[state.colourBy];
  state.range = values ? [Math.min(...values), Math.max(...values)] : [0, 1];
  state.screen.forEach(([x, y], i) => {
    ctx.fillStyle = colourOf(i);
    ctx.globalAlpha = 0.7;
    ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
  });
  ctx.globalAlpha = 1;
  drawLegend(values);
  for (const i of state.chosen) {
    const [x, y] = state.screen[i];
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(x, y, 6, 0, 2 * Math.PI);
    ctx.stroke();
  }
}

function drawLegend(values) {
  const legend = $("scatter-legend"), points = state.info.points;
  legend.textContent = "";
  const item = (text, colour) => {
    const span = document.createElement("span");
    span.style.color = colour;
    span.textContent = `\u25a0 ${text}`;
    legend.append(span);
  };
  if (values) {
    item(`${state.colourBy} ${state.range[0].toFixed(2)}`, "hsl(240, 70%, 45%)");
    item(`${state.range[1].toFixed(2)}`, "hsl(0, 70%, 45%)");
  } else if (points.labels) {
    const names = state.info.class_names;
    const seen = [...new Set(points.labels)].sort((a, b) => a - b).slice(0, 20);
    for (const k of seen) item(names ? names[k] : String(k), PALETTE[k % PALETTE.length]);
  }
}

function nearest(event) {
  const canvas = $("scatter"), box = canvas.getBoundingClientRect();
  const x = (event.clientX - box.left) * (canvas.width / box.width), y = (event.clientY - box.top) * (canvas.height / box.height);
  let best = -1, bestD = 64; // within 8 canvas pixels
  state.screen.forEach(([px, py], i) => {
    const d = (px - x) ** 2 + (py - y) ** 2;
    if (d < bestD) { best = i; bestD = d; }
  });
  return best;
}

function hover(event) {
  const i = nearest(event), img = $("hover");
  if (i < 0) { img.hidden = true; return; }
  const [x, y] = state.screen[i];
  img.src = `/api/input/${i}`;
  img.style.left = `${Math.min(x + 10, $("scatter").width - 90)}px`;
  img.style.top = `${Math.max(y - 94, 0)}px`;
  img.hidden = false;
  img.dataset.index = String(i);
}

function choose(event) {
  const i = nearest(event);
  if (i < 0) return;
  setCode(state.info.points.codes[i]);
  state.chosen = [...state.chosen, i].slice(-2);
  if (!state.recon.includes(i)) state.recon = [...state.recon, i].slice(-12);
  drawScatter();
  showRecon();
  if (state.chosen.length === 2) {
    const [a, b] = state.chosen;
    $("path").src = `/api/interpolate?a=${a}&b=${b}&steps=10`;
    $("path").hidden = false;
    $("path-hint").textContent = `From input ${a} to input ${b}.`;
  } else {
    $("path-hint").textContent = `Input ${i} chosen; choose another.`;
  }
}

function showRecon() {
  $("recon").src = `/api/reconstruct?i=${state.recon.join(",")}`;
}

// -- training curves ----------------------------------------------------------------------------

function drawCurves(metrics) {
  const svg = $("curves"), W = svg.width.baseVal.value, H = svg.height.baseVal.value, pad = 36;
  const keys = ["train_nelbo", "test_nelbo", "test_recon", "test_kl"].filter((k) => metrics.some((m) => typeof m[k] === "number"));
  if (!metrics.length || !keys.length) { $("curves-legend").textContent = "No metrics recorded."; return; }
  const xs = metrics.map((m) => m.epoch), all = keys.flatMap((k) => metrics.map((m) => m[k]).filter((v) => typeof v === "number"));
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(0, ...all), Math.max(...all)];
  const X = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (W - 2 * pad), Y = (y) => H - pad - ((y - y0) / (y1 - y0 || 1)) * (H - 2 * pad);
  const ns = "http://www.w3.org/2000/svg";
  const axis = document.createElementNS(ns, "path");
  axis.setAttribute("d", `M${pad},${pad} V${H - pad} H${W - pad}`);
  axis.setAttribute("stroke", "#999");
  axis.setAttribute("fill", "none");
  svg.append(axis);
  for (const [text, x, y] of [[`epoch ${x0}`, pad, H - 8], [`epoch ${x1}`, W - pad - 40, H - 8], [`${y1.toFixed(1)} nats`, 2, pad - 6], [`${y0.toFixed(1)}`, 2, H - pad]]) {
    const label = document.createElementNS(ns, "text");
    Object.entries({ x, y, "font-size": 11, fill: "#555" }).forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = text;
    svg.append(label);
  }
  keys.forEach((k, j) => {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", metrics.filter((m) => typeof m[k] === "number").map((m) => `${X(m.epoch)},${Y(m[k])}`).join(" "));
    line.setAttribute("stroke", PALETTE[j]);
    line.setAttribute("fill", "none");
    line.setAttribute("stroke-width", "2");
    svg.append(line);
    for (const m of metrics.filter((r) => typeof r[k] === "number")) {
      const dot = document.createElementNS(ns, "circle");
      Object.entries({ cx: X(m.epoch), cy: Y(m[k]), r: 2.5, fill: PALETTE[j] }).forEach(([a, v]) => dot.setAttribute(a, v));
      svg.append(dot);
    }
    const item = document.createElement("span");
    item.style.color = PALETTE[j];
    item.textContent = `— ${k.replace("_nelbo", " -ELBO").replace("_", " ")}`;
    $("curves-legend").append(item);
  });
}

// -- start ---------------------------------------------------------------------------------------

async function start() {
  const info = await (await api("/api/info")).json();
  state.info = info;
  $("title").textContent = `${info.checkpoint}: ${info.family}, ${info.latent_dim} latent dimensions`;
  buildSliders(info);
  for (const name of info.samplers) $("sampler").append(new Option(name, name));
  if (info.conditional) {
    $("label-box").hidden = false;
    for (let k = 0; k < info.num_classes; k++) $("label").append(new Option(info.class_names ? info.class_names[k] : String(k), String(k)));
    $("label").addEventListener("change", decode);
  }
  const choices = [...(info.points.labels ? ["label"] : []), ...Object.keys(info.points.factors)];
  for (const name of choices) $("colour-by").append(new Option(name, name));
  state.colourBy = choices[0] || "label";
  $("colour-by").addEventListener("change", () => { state.colourBy = $("colour-by").value; drawScatter(); });
  $("axes").textContent = `Axes: ${info.points.axes}; ${info.points.xy.length} inputs of ${info.points.source}.`;
  layout();
  drawScatter();
  $("scatter").addEventListener("mousemove", hover);
  $("scatter").addEventListener("mouseleave", () => { $("hover").hidden = true; });
  $("scatter").addEventListener("click", choose);
  $("temperature").addEventListener("input", () => { $("temperature-value").textContent = Number($("temperature").value).toFixed(2); });
  $("draw").addEventListener("click", () => draw().catch((e) => status(String(e))));
  $("zero").addEventListener("click", () => setCode(new Array(info.latent_dim).fill(0)));
  $("recon-clear").addEventListener("click", () => { state.recon = [...Array(Math.min(8, info.points.xy.length)).keys()]; showRecon(); });
  state.recon = [...Array(Math.min(8, info.points.xy.length)).keys()];
  showRecon();
  drawCurves(info.metrics);
  await decode();
  status("ready: move a slider, draw from the prior, or click a point");
  document.body.dataset.ready = "true";
}

start().catch((error) => status(`could not start: ${error}`));
