// gradientflow lab: the page. One WebSocket to the server; the controls are the URL's query.
"use strict";

const MAX_POINTS = 2000;   // per curve; past it the older half is thinned
const HEAT_COLUMNS = 120;  // windows shown per layer in the heat maps
const lab = window.lab = {connected: false, frames: 0, fps: 0, step: 0, setups: 0, errors: [], layers: []};
const form = document.getElementById("controls");
let options = null, ws = null;
let state = null;  // everything drawn for the current set-up

function $(id) { return document.getElementById(id); }

function showMessage(text) {
  const box = $("message");
  box.textContent = text || "";
  box.hidden = !text;
  if (text) lab.errors.push(text);
}

// --- controls and the URL ---

function readConfig() {
  const cfg = {};
  for (const [key, def] of Object.entries(options.defaults)) {
    const el = form.elements[key];
    if (!el) continue;
    if (typeof def === "number") {
      const v = el.value.trim() === "" ? NaN : Number(el.value);
      cfg[key] = Number.isFinite(v) ? v : el.value;  // not a number: the server names it
    } else {
      cfg[key] = el.value;
    }
  }
  return cfg;
}

function writeUrl(cfg) {  // the whole set-up, defaults included: a link means the same net in a later version
  history.replaceState(null, "", "?" + new URLSearchParams(cfg).toString());
  $("share").href = location.href;
}

function sendConfig() {
  const cfg = readConfig();
  writeUrl(cfg);
  send({type: "config", config: cfg});
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

// --- charts ---

function colour(i, n) { return `hsl(${Math.round(360 * i / Math.max(n, 1))}, 65%, 45%)`; }

function lineChart(el, names, {log = false, x = "step", width = 360, height = 170, points = false, emphasise = -1,
                                share = false} = {}) {
  el.innerHTML = "";
  const series = [{label: x}];
  names.forEach((name, i) => series.push({label: name, stroke: colour(i, names.length), width: i === emphasise ? 2.5 : 1.5,
                                         points: {show: points || i === emphasise}, spanGaps: true}));
  const opts = {width, height, series, legend: {show: names.length <= 12},
                scales: {x: {time: false}, y: log ? {distr: 3} : share ? {range: [0, 1]} : {}},
                axes: [{size: 30}, {size: 50, values: log ? (u, vals) => vals.map(v => v == null ? "" : v.toExponential(0)) : undefined}]};
  const data = [[], ...names.map(() => [])];
  return {plot: new uPlot(opts, data, el), data, log};
}

function push(chart, x, values) {
  const d = chart.data;
  d[0].push(x);
  values.forEach((v, i) => d[i + 1].push(chart.log && !(v > 0) ? null : v));
  if (d[0].length > MAX_POINTS) {  // the whole span kept, at a coarser grain
    const half = d[0].length >> 1;
    for (let k = 0; k < d.length; k++) d[k] = d[k].slice(0, half).filter((_, i) => i % 2 === 0).concat(d[k].slice(half));
  }
}

function newState(setup) {
  const s = {setup, charts: {}, layerNames: null, heat: {}, stdMeasured: []};
  s.charts.loss = lineChart($("loss"), ["train loss (smoothed)", "test loss"], {emphasise: 1});
  s.charts.accuracy = lineChart($("accuracy"), ["train accuracy (epoch mean)", "test accuracy"], {emphasise: 1});
  for (const id of ["grad", "update", "dead", "saturated"]) $(id).innerHTML = "";
  $("heat").innerHTML = "";
  $("findings").innerHTML = "<li>none yet</li>";
  const depth = setup.layers;
  const names = setup.theory_std ? ["measured", "theory (mean field)"] : ["measured"];
  s.charts.std = lineChart($("std"), names, {x: "layer", points: true, width: 360});
  s.charts.std.data[0] = Array.from({length: depth}, (_, i) => i + 1);
  s.charts.std.data[1] = Array(depth).fill(null);
  if (setup.theory_std) s.charts.std.data[2] = setup.theory_std;
  s.charts.std.plot.setData(s.charts.std.data);
  drawPhase(setup);
  $("boundary-panel").hidden = !setup.two_d;
  return s;
}

function layerCharts(names) {
  state.layerNames = names;
  lab.layers = names;
  state.charts.grad = lineChart($("grad"), names, {log: true});
  state.charts.update = lineChart($("update"), names, {log: true});
  state.charts.dead = lineChart($("dead"), names, {share: true});
  state.charts.saturated = lineChart($("saturated"), names, {share: true});
  const heat = $("heat");
  heat.innerHTML = "";
  for (const name of names) {
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("span");
    label.textContent = name;
    const canvas = document.createElement("canvas");
    canvas.width = HEAT_COLUMNS * 3;
    canvas.height = 50;
    canvas.dataset.layer = name;
    row.append(label, canvas);
    heat.append(row);
    state.heat[name] = {canvas, columns: [], lo: null, hi: null};
  }
}

// --- drawing a frame ---

function onFrame(f) {
  lab.frames++;
  lab.step = f.step;
  $("status").textContent = `step ${f.step} · epoch ${f.epoch} · ${f.playing ? "playing" : "paused"}` +
    (f.diverged ? ` · diverged: ${f.diverged}` : "");
  if (f.error) showMessage(f.error);
  if (!state) return;
  for (const p of f.curves) {  // the batches' noise smoothed (an exponential moving average), as a reader sees a trend
    state.ema = state.ema ?? p.loss;
    state.ema = 0.9 * state.ema + 0.1 * p.loss;
    push(state.charts.loss, p.step, [state.ema, null]);
  }
  for (const t of f.tests) {  // each epoch's end: its mean training accuracy and the test split's numbers
    push(state.charts.loss, t.step, [null, t.test_loss]);
    push(state.charts.accuracy, t.step, [t.train_accuracy, t.test_accuracy]);
  }
  if (f.curves.length || f.tests.length) {
    state.charts.loss.plot.setData(state.charts.loss.data);
    state.charts.accuracy.plot.setData(state.charts.accuracy.data);
  }
  if (f.layers.length) drawLayers(f.layers);
  if (f.boundary) drawBoundary(f.boundary);
  if (f.findings) drawFindings(f.findings);
}

function drawLayers(rows) {
  const names = [...new Set(rows.map(r => r.layer))];
  if (!state.layerNames || names.join() !== state.layerNames.join()) layerCharts(names);
  const step = rows[0].step;
  const by = Object.fromEntries(rows.map(r => [r.layer, r]));
  const column = key => names.map(n => by[n] ? by[n][key] : null);
  push(state.charts.grad, step, column("act_grad_norm"));
  push(state.charts.update, step, column("update_ratio"));
  push(state.charts.dead, step, column("dead"));
  push(state.charts.saturated, step, column("saturated"));
  for (const key of ["grad", "update", "dead", "saturated"]) state.charts[key].plot.setData(state.charts[key].data);
  const hidden = names.filter(n => by[n].hist).slice(0, state.setup.layers);
  const std = state.charts.std;
  std.data[1] = std.data[0].map((_, i) => hidden[i] ? by[hidden[i]].act_std : null);
  std.plot.setData(std.data);
  for (const r of rows) {
    const h = state.heat[r.layer];
    if (!h || !r.hist) continue;
    h.columns.push(r.hist);
    if (h.columns.length > HEAT_COLUMNS) h.columns.shift();
    h.lo = r.lo; h.hi = r.hi;
    drawHeat(h);
  }
}

function drawHeat(h) {
  const ctx = h.canvas.getContext("2d");
  const bins = h.columns[0].length, w = h.canvas.width, ht = h.canvas.height;
  const img = ctx.createImageData(w, ht);
  const colW = w / HEAT_COLUMNS;
  h.columns.forEach((col, c) => {
    const peak = Math.max(...col) || 1;
    for (let b = 0; b < bins; b++) {
      const v = Math.sqrt(col[b] / peak);
      const y0 = Math.floor((bins - 1 - b) * ht / bins), y1 = Math.floor((bins - b) * ht / bins);
      for (let y = y0; y < y1; y++) {
        for (let x = Math.floor(c * colW); x < Math.floor((c + 1) * colW); x++) {
          const i = 4 * (y * w + x);
          img.data[i] = 255 * (1 - v * 0.85); img.data[i + 1] = 255 * (1 - v * 0.6); img.data[i + 2] = 255 * (1 - v * 0.2);
          img.data[i + 3] = 255;
        }
      }
    }
  });
  ctx.putImageData(img, 0, 0);
  h.canvas.title = `range ${h.lo} … ${h.hi}`;
}

function drawBoundary(b) {
  const canvas = $("boundary"), ctx = canvas.getContext("2d");
  const off = document.createElement("canvas");
  off.width = off.height = b.size;
  const octx = off.getContext("2d"), img = octx.createImageData(b.size, b.size);
  b.label.forEach((k, i) => {
    const x = i % b.size, y = b.size - 1 - Math.floor(i / b.size);
    const rgb = hsl(k / b.classes), a = 0.25 + 0.55 * (b.confidence[i] - 1 / b.classes) / (1 - 1 / b.classes);
    const j = 4 * (y * b.size + x);
    img.data[j] = rgb[0]; img.data[j + 1] = rgb[1]; img.data[j + 2] = rgb[2]; img.data[j + 3] = 255 * a;
  });
  octx.putImageData(img, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
  const [x0, x1, y0, y1] = b.extent;
  for (const [x, y, k] of b.points) {
    ctx.fillStyle = `rgb(${hsl(k / b.classes).join(",")})`;
    ctx.strokeStyle = "white";
    ctx.beginPath();
    ctx.arc((x - x0) / (x1 - x0) * canvas.width, (1 - (y - y0) / (y1 - y0)) * canvas.height, 2.5, 0, 7);
    ctx.fill(); ctx.stroke();
  }
}

function hsl(t) {  // a class colour as rgb
  const h = t * 6, c = 200, x = c * (1 - Math.abs(h % 2 - 1));
  const table = [[c, x, 0], [x, c, 0], [0, c, x], [0, x, c], [x, 0, c], [c, 0, x]];
  return table[Math.floor(h) % 6].map(v => Math.round(v + 30));
}

function drawPhase(setup) {
  const canvas = $("phase"), ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 30, wMax = 4, bMax = 0.5;
  const X = w => pad + (W - pad - 8) * w / wMax, Y = b => H - pad - (H - pad - 8) * b / bMax;
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = "#999"; ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
  ctx.beginPath(); ctx.moveTo(X(0), Y(0)); ctx.lineTo(X(wMax), Y(0)); ctx.moveTo(X(0), Y(0)); ctx.lineTo(X(0), Y(bMax)); ctx.stroke();
  for (const w of [1, 2, 3, 4]) ctx.fillText(String(w), X(w) - 3, H - pad + 14);
  for (const b of [0.25, 0.5]) ctx.fillText(String(b), 2, Y(b) + 4);
  ctx.fillText("σw²", W - 30, H - 4); ctx.fillText("σb²", 4, 12);
  const line = setup.critical_line || [];
  if (line.length) {
    ctx.strokeStyle = "#dc2626"; ctx.lineWidth = 2; ctx.beginPath();
    line.forEach(([w, b], i) => i ? ctx.lineTo(X(w), Y(b)) : ctx.moveTo(X(w), Y(b)));
    ctx.stroke(); ctx.lineWidth = 1;
    ctx.fillStyle = "#dc2626"; ctx.fillText("critical line χ₁ = 1", X(line[line.length - 1][0]) - 40, 14);
    ctx.fillStyle = "#555"; ctx.fillText("ordered", X(0.3), Y(0.05)); ctx.fillText("chaotic", X(3), Y(0.05));
  }
  const p = setup.point, note = $("phase-note");
  if (p) {
    ctx.fillStyle = "#2563eb";
    ctx.beginPath(); ctx.arc(X(Math.min(p.sigma_w2, wMax)), Y(Math.min(p.sigma_b2, bMax)), 5, 0, 7); ctx.fill();
    const depth = p.max_trainable_depth ? `; trainable to depth ≈ 6ξc = ${p.max_trainable_depth.toFixed(0)}` : "";
    note.textContent = `this net: σw² = ${p.sigma_w2.toFixed(3)}, σb² = ${p.sigma_b2.toFixed(3)}, ${p.phase}${depth} (depth ${setup.layers})`;
  } else {
    note.textContent = "mean-field theory does not describe this set-up (per-layer activations or init)";
  }
}

function drawFindings(found) {
  const list = $("findings");
  list.innerHTML = "";
  if (!found.length) { list.innerHTML = "<li>none: every rule within its threshold</li>"; return; }
  for (const f of found) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="kind"></span> <span class="text"></span><br><span class="try"></span>`;
    li.querySelector(".kind").textContent = f.kind;
    li.querySelector(".text").textContent = f.message;
    li.querySelector(".try").textContent = "try: " + f.recommendation;
    list.append(li);
  }
}

// --- the connection ---

function connect() {
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => { lab.connected = true; sendConfig(); };
  ws.onclose = () => { lab.connected = false; $("status").textContent = "disconnected: reload the page"; };
  ws.onmessage = event => {
    const m = JSON.parse(event.data);
    if (m.type === "frame") onFrame(m);
    else if (m.type === "setup") { showMessage(""); lab.setups++; state = newState(m); }
    else if (m.type === "error") showMessage(m.message);
    else if (m.type === "kept") $("kept").textContent = `kept as ${m.run}`;
  };
}

setInterval(() => { $("fps").textContent = `${lab.frames - (lab._last || 0)} frames/s`; lab.fps = lab.frames - (lab._last || 0); lab._last = lab.frames; }, 1000);

async function start() {
  options = await (await fetch("/options")).json();
  for (const [name, values] of Object.entries(options)) {
    const el = form.elements[name];
    if (name !== "defaults" && el && el.tagName === "SELECT") for (const v of values) el.add(new Option(v, v));
  }
  const params = new URLSearchParams(location.search);
  for (const [key, def] of Object.entries(options.defaults)) {
    const el = form.elements[key];
    if (el) el.value = params.has(key) ? params.get(key) : def;
  }
  form.addEventListener("change", sendConfig);
  form.addEventListener("submit", e => e.preventDefault());
  $("play").onclick = () => send({type: "play"});
  $("pause").onclick = () => send({type: "pause"});
  $("step").onclick = () => send({type: "step"});
  $("reset").onclick = () => send({type: "reset"});
  $("keep").onclick = () => send({type: "keep"});
  connect();
}

start();
