// gradientflow lab: the page. One WebSocket to the server; the controls are the URL's query.
"use strict";

const MAX_POINTS = 2000;   // per curve; past it every second point goes (the whole span at one grain)
const HEAT_COLUMNS = 120;  // windows shown per layer in the heat maps
const lab = window.lab = {connected: false, frames: 0, fps: 0, step: 0, setups: 0, errors: [], layers: [],
                          reconnects: 0, diverged: "", raw: {}};
const form = document.getElementById("controls");
let options = null, ws = null, retry = 500;
let state = null;  // everything drawn for the current set-up
let ghost = null;  // the previous set-up's curves and profiles, drawn faintly under the current ones

function $(id) { return document.getElementById(id); }

function showMessage(text, lines = []) {
  const box = $("message");
  box.textContent = "";
  box.hidden = !text;
  if (!text) return;
  const all = lines.length > 1 ? lines : [text];
  if (all.length > 1) {
    const list = document.createElement("ul");
    for (const line of all) { const li = document.createElement("li"); li.textContent = line; list.append(li); }
    box.append(list);
  } else box.textContent = text;
  lab.errors.push(...all);
}

function markInvalid(fields) {  // the controls the server named, highlighted until the next accepted set-up
  for (const el of form.querySelectorAll(".invalid")) el.classList.remove("invalid");
  for (const name of fields) if (name && form.elements[name]) form.elements[name].classList.add("invalid");
}

function showBanner(text) {
  const b = $("banner");
  b.textContent = text || "";
  b.hidden = !text;
}

// --- controls and the URL ---

function readConfig() {
  const cfg = {};
  for (const [key, def] of Object.entries(options.defaults)) {
    const el = form.elements[key];
    if (!el) continue;
    if (typeof def === "boolean") {
      cfg[key] = el.checked;
    } else if (typeof def === "number") {  // a number field empties itself on text it cannot read: the link's text is sent
      const text = el.value.trim() === "" && lab.raw[key] != null ? lab.raw[key] : el.value;
      const v = text.trim() === "" ? NaN : Number(text);
      cfg[key] = Number.isFinite(v) ? v : text;  // not a number: the server names it as typed
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

function setControl(key, value) {  // from a default, a lesson or a link (a checkbox's text: true, 1, on or yes)
  const el = form.elements[key];
  if (!el) return;
  if (el.type === "checkbox") {
    el.checked = typeof value === "string" ? ["true", "1", "on", "yes"].includes(value.toLowerCase()) : Boolean(value);
  } else el.value = value;
  if (key === "features") syncFeatureBoxes();
}

function featureBoxes() {  // one checkbox per feature; the hidden "features" field holds the chosen ones
  const box = $("feature-boxes");
  for (const name of options.features || []) {
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox" data-feature=""> <span></span>`;
    label.querySelector("input").dataset.feature = name;
    label.querySelector("span").textContent = name;
    box.append(label);
  }
  box.addEventListener("change", e => {
    e.stopPropagation();
    const chosen = [...box.querySelectorAll("input:checked")].map(i => i.dataset.feature);
    form.elements.features.value = chosen.join(",");
    delete lab.raw.features;
    sendConfig();
  });
  syncFeatureBoxes();
}

function syncFeatureBoxes() {
  const chosen = new Set(form.elements.features.value.split(",").map(s => s.trim()));
  for (const i of $("feature-boxes").querySelectorAll("input")) i.checked = chosen.has(i.dataset.feature);
}

// --- charts ---

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function ramp(t) {  // viridis at t in [0, 1]: ordered and readable without telling red from green
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1), k = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - k, a = VIRIDIS[k], b = VIRIDIS[k + 1];
  return `rgb(${a.map((v, i) => Math.round(v + f * (b[i] - v))).join(",")})`;
}
function colour(i, n) { return ramp(n <= 1 ? 0 : 0.9 * i / (n - 1)); }
const PAIR = ["#1b6ca8", "#d95f02"];  // two series of one quantity (train, test): blue and orange

function colourBar(el, names) {  // in place of a legend: the layers' colours in order, first to last
  const bar = document.createElement("div");
  bar.className = "colourbar";
  const stops = names.map((_, i) => colour(i, names.length)).join(",");
  bar.innerHTML = `<span></span><i></i><span></span>`;
  bar.querySelector("i").style.background = `linear-gradient(to right, ${stops})`;
  bar.querySelectorAll("span")[0].textContent = names.length ? `layer ${names[0]}` : "";
  bar.querySelectorAll("span")[1].textContent = names.length ? (names[names.length - 1] === "output" ? "output" : `layer ${names[names.length - 1]}`) : "";
  el.append(bar);
}

function chartWidth() { return Math.max(260, Math.min(360, window.innerWidth - 40)); }

function lineChart(el, names, {log = false, x = "step", height = 170, points = false, emphasise = -1,
                                share = false, range = null, layers = false, ghost: ghostKey = null} = {}) {
  el.innerHTML = "";
  const series = [{label: x}];
  names.forEach((name, i) => series.push({label: layers ? `layer ${name}` : name,
                                         stroke: layers ? colour(i, names.length) : PAIR[i % 2],
                                         width: i === emphasise ? 2.5 : 1.5,
                                         points: {show: points || i === emphasise}, spanGaps: true}));
  const chart = {data: [[], ...names.map(() => [])], log, ghostKey};
  const opts = {width: chartWidth(), height, series, legend: {show: !layers},
                scales: {x: {time: false}, y: log ? {distr: 3} : share ? {range: [0, 1]} : range ? {range} : {}},
                axes: [{size: 30, label: x === "step" ? undefined : x, labelSize: 14},
                       {size: 50, values: log ? (u, vals) => vals.map(v => v == null ? "" : v.toExponential(0)) : undefined}],
                hooks: {draw: [u => drawGhost(u, chart)]}};
  chart.plot = new uPlot(opts, chart.data, el);
  if (layers) colourBar(el, names);
  return chart;
}

function drawGhost(u, chart) {  // the previous set-up's series, dashed and grey, on the same axes
  const old = ghost && chart.ghostKey && ghost[chart.ghostKey];
  if (!old) return;
  const ctx = u.ctx;
  ctx.save();
  ctx.setLineDash([4, 3]);
  ctx.lineWidth = 1.5 * devicePixelRatio;
  ctx.strokeStyle = "rgba(90, 90, 90, 0.75)";
  for (let k = 1; k < old.length; k++) {
    ctx.beginPath();
    let on = false;
    for (let i = 0; i < old[0].length; i++) {
      const v = old[k][i];
      if (v == null || (chart.log && !(v > 0))) { on = false; continue; }
      const px = u.valToPos(old[0][i], "x", true), py = u.valToPos(v, "y", true);
      if (on) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      on = true;
    }
    ctx.stroke();
  }
  ctx.restore();
}

function push(chart, x, values) {
  const d = chart.data;
  d[0].push(x);
  values.forEach((v, i) => d[i + 1].push(chart.log && !(v > 0) ? null : v));
  if (d[0].length > MAX_POINTS) {  // the whole span kept at one coarser grain; a sparse series' points all kept
    const sparse = chart.sparse || [];
    let keep = d[0].map((_, i) => i % 2 === 0 || i === d[0].length - 1 || sparse.some(k => d[k][i] != null));
    if (keep.filter(Boolean).length > 0.75 * MAX_POINTS) keep = d[0].map((_, i) => i % 2 === 0);  // sparse no more
    for (let k = 0; k < d.length; k++) d[k] = d[k].filter((_, i) => keep[i]);
  }
}

function keepGhost(s) {  // what the previous set-up drew, for the A/B comparison
  if (!s || !s.charts.loss || s.charts.loss.data[0].length === 0) return ghost;
  const copy = d => d.map(col => col.slice());
  return {loss: copy(s.charts.loss.data), accuracy: copy(s.charts.accuracy.data), std: copy(s.charts.std.data.slice(0, 2)),
          profile: s.charts.profile ? copy(s.charts.profile.data) : null, config: s.setup.config, task: s.setup.task};
}

// R² is at most 1; below −1 (far worse than predicting the mean) is cut off the chart
const R2_RANGE = (u, min, max) => [Math.max(Math.min(min, 0), -1), 1];

function metricCharts(s, setup) {  // loss and accuracy, or for a regression set the squared error and R²
  const regression = setup.task === "regression";
  s.regression = regression;
  $("loss-title").textContent = regression ? "loss: mean squared error (log)" : "loss: cross-entropy (log)";
  $("accuracy-title").textContent = regression ? "test R² = 1 − MSE / variance of the targets" : "accuracy";
  s.charts.loss = lineChart($("loss"), ["train loss (smoothed)", "test loss"], {emphasise: 1, ghost: "loss", log: true});
  s.charts.loss.sparse = [2];  // one test point per epoch among many training points
  s.charts.accuracy = regression
    ? lineChart($("accuracy"), ["test R²"], {emphasise: 0, ghost: "accuracy", range: R2_RANGE})
    : lineChart($("accuracy"), ["train accuracy (epoch mean)", "test accuracy"], {emphasise: 1, ghost: "accuracy"});
  // the previous set-up had the other task: its loss and score are other quantities, not a comparison
  if (ghost && ghost.task !== setup.task) ghost = {...ghost, loss: null, accuracy: null};
}

function newState(setup) {
  const s = {setup, charts: {}, layerNames: null, heat: {}};
  metricCharts(s, setup);
  for (const id of ["grad", "update", "dead", "saturated", "profile"]) $(id).innerHTML = "";
  $("heat").innerHTML = "";
  $("findings").innerHTML = "<li>none yet</li>";
  const depth = setup.layers;
  const names = setup.theory_std ? ["measured now", "mean-field theory, at initialisation"] : ["measured now"];
  s.charts.std = lineChart($("std"), names, {x: "layer", points: true, log: true, ghost: "std"});
  s.charts.std.data[0] = Array.from({length: depth}, (_, i) => i + 1);
  s.charts.std.data[1] = Array(depth).fill(null);
  if (setup.theory_std) s.charts.std.data[2] = setup.theory_std;
  s.charts.std.plot.setData(s.charts.std.data);
  s.charts.profile = lineChart($("profile"), ["‖∂L/∂h‖ now"], {x: "layer", points: true, log: true, ghost: "profile"});
  drawPhase(setup);
  $("boundary-panel").hidden = !setup.two_d;
  $("boundary-title").textContent = s.regression ? "the net's output over the plane" : "decision boundary";
  $("boundary-key").hidden = !s.regression;
  lab.boundary = null;  // the previous set-up's boundary and units' maps are not this net's
  for (const box of $("feature-boxes").querySelectorAll("input")) box.disabled = !setup.two_d;
  $("ghost-note").textContent = ghost ? `dashed grey: the previous set-up (${describeChange(ghost.config, setup.config)})` : "";
  return s;
}

function describeChange(before, after) {
  if (!before) return "";
  const changed = Object.keys(after).filter(k => String(before[k]) !== String(after[k]));
  return changed.length ? changed.map(k => `${k} ${before[k]} → ${after[k]}`).join(", ") : "the same set-up";
}

function layerCharts(names) {
  state.layerNames = names;
  lab.layers = names;
  state.charts.grad = lineChart($("grad"), names, {log: true, layers: true});
  state.charts.update = lineChart($("update"), names, {log: true, layers: true});
  state.charts.dead = lineChart($("dead"), names, {share: true, layers: true});
  state.charts.saturated = lineChart($("saturated"), names, {share: true, layers: true});
  const heat = $("heat");
  heat.innerHTML = "";
  for (const name of names) {
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("span");
    label.textContent = name === "output" ? "output" : `layer ${name}`;
    const axis = document.createElement("span");
    axis.className = "axis";
    axis.innerHTML = "<b></b><b></b>";
    const canvas = document.createElement("canvas");
    canvas.width = HEAT_COLUMNS * 3;
    canvas.height = 50;
    canvas.dataset.layer = name;
    row.append(label, axis, canvas);
    heat.append(row);
    state.heat[name] = {canvas, axis, columns: [], lo: null, hi: null};
  }
}

// --- drawing a frame ---

function onFrame(f) {
  lab.frames++;
  if (f.playing || f.step > 0) $("hint").textContent = "";
  lab.step = f.step;
  lab.playing = f.playing;
  send({type: "ack"});  // the server sends the next frame once this one is drawn (below, in this task)
  $("status").textContent = `step ${f.step} · epoch ${f.epoch} · ${f.playing ? "playing" : "paused"}` +
    (f.diverged ? " · diverged" : "");
  if (f.error) showMessage(f.error);
  if (f.diverged && !lab.diverged) {
    lab.diverged = f.diverged;
    showBanner(`Diverged at step ${f.diverged_at}: ${f.diverged}. The curves stop at the last finite step; ` +
               "lower α or set clip, then reset.");
  }
  if (!state) return;
  for (const p of f.curves) {  // the batches' noise smoothed (an exponential moving average), as a reader sees a trend
    state.ema = state.ema ?? p.loss;
    state.ema = 0.9 * state.ema + 0.1 * p.loss;
    push(state.charts.loss, p.step, [state.ema, null]);
  }
  for (const t of f.tests) {  // each epoch's end: its mean training accuracy and the test split's numbers
    push(state.charts.loss, t.step, [null, t.test_loss]);
    push(state.charts.accuracy, t.step, state.regression ? [t.test_r2] : [t.train_accuracy, t.test_accuracy]);
  }
  if (f.curves.length || f.tests.length) {
    state.charts.loss.plot.setData(state.charts.loss.data);
    state.charts.accuracy.plot.setData(state.charts.accuracy.data);
  }
  if (f.layers.length) drawLayers(f.layers);
  if (f.boundary) drawBoundary(f.boundary);
  if (f.boundary && !f.diagram && lab.diagram) drawDiagram(lab.diagram);  // the units' maps are new
  if (f.findings) drawFindings(f.findings);
  if (f.diagram) drawDiagram(f.diagram);
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
  const profile = state.charts.profile;  // the gradient reaching each layer, at this window
  profile.data[0] = names.map((_, i) => i + 1);
  profile.data[1] = names.map(n => by[n].act_grad_norm);
  profile.plot.setData(profile.data);
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
  const [top, bottom] = h.axis.querySelectorAll("b");  // the value axis: the histogram's fixed range
  top.textContent = h.hi == null ? "" : Number(h.hi).toPrecision(2);
  bottom.textContent = h.lo == null ? "" : Number(h.lo).toPrecision(2);
  h.canvas.title = `values ${h.lo} (bottom) to ${h.hi} (top); time runs left to right`;
}

const SIGNS = {plus: [27, 108, 168], minus: [217, 95, 2]};  // blue +, orange −, as the units' maps and the Playground

function valueColour(v, scale) {  // a regression output as rgb: white at 0, full colour at ±scale
  const a = Math.min(Math.abs(v) / (scale || 1), 1), rgb = v > 0 ? SIGNS.plus : SIGNS.minus;
  return rgb.map(c => Math.round(255 + a * (c - 255)));
}

function drawBoundary(b) {
  lab.boundary = b;  // redrawn when a display option changes
  const canvas = $("boundary"), ctx = canvas.getContext("2d");
  const discrete = $("discrete").checked, showTest = $("show-test").checked;
  const regression = b.task === "regression";
  const off = document.createElement("canvas");
  off.width = off.height = b.size;
  const octx = off.getContext("2d"), img = octx.createImageData(b.size, b.size);
  const cells = regression ? b.value : b.label;
  cells.forEach((k, i) => {
    const x = i % b.size, y = b.size - 1 - Math.floor(i / b.size);
    let rgb, a;
    if (regression) {  // the output's value; discretised: its sign only
      rgb = valueColour(discrete ? Math.sign(k ?? 0) * b.scale : (k ?? 0), b.scale);
      a = k == null ? 0 : 0.8;
    } else {
      rgb = hsl(k / b.classes);
      a = discrete ? 0.6 : 0.25 + 0.55 * (b.confidence[i] - 1 / b.classes) / (1 - 1 / b.classes);
    }
    const j = 4 * (y * b.size + x);
    img.data[j] = rgb[0]; img.data[j + 1] = rgb[1]; img.data[j + 2] = rgb[2]; img.data[j + 3] = 255 * a;
  });
  if (regression) drawValueKey(b.scale);
  octx.putImageData(img, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
  const [x0, x1, y0, y1] = b.extent;
  const pointColour = k => `rgb(${(regression ? valueColour(k, b.scale) : hsl(k / b.classes)).join(",")})`;
  const dot = (x, y, k, test) => {  // training points filled, test points as rings
    ctx.beginPath();
    ctx.arc((x - x0) / (x1 - x0) * canvas.width, (1 - (y - y0) / (y1 - y0)) * canvas.height, test ? 3.5 : 2.5, 0, 7);
    if (test) { ctx.lineWidth = 2; ctx.strokeStyle = pointColour(k); ctx.stroke(); ctx.lineWidth = 1; }
    else {
      ctx.fillStyle = pointColour(k);
      ctx.strokeStyle = regression ? "#374151" : "white";  // a point stands out from a map of its own colour
      ctx.fill(); ctx.stroke();
    }
  };
  for (const [x, y, k] of b.points) dot(x, y, k, false);
  if (showTest) for (const [x, y, k] of b.test_points || []) dot(x, y, k, true);
}

function drawValueKey(scale) {  // the regression map's colour bar: −scale orange, 0 white, +scale blue
  const key = $("boundary-key"), [lo, hi] = key.querySelectorAll("span");
  key.querySelector("i").style.background = `linear-gradient(to right, rgb(${SIGNS.minus}), white, rgb(${SIGNS.plus}))`;
  lo.textContent = `output −${scale.toPrecision(2)}`;
  hi.textContent = `+${scale.toPrecision(2)}`;
  key.title = "the net's output at each point of the plane; the points are coloured by their targets on the same scale";
}

function hsl(t) {  // a class colour as rgb
  const h = t * 6, c = 200, x = c * (1 - Math.abs(h % 2 - 1));
  const table = [[c, x, 0], [x, c, 0], [0, c, x], [0, x, c], [x, 0, c], [c, 0, x]];
  return table[Math.floor(h) % 6].map(v => Math.round(v + 30));
}

function phaseAxes(canvas) {  // (σw², σb²) <-> pixels on the phase diagram, both ways
  const W = canvas.width, H = canvas.height, pad = 30, wMax = 4, bMax = 0.5;
  return {W, H, pad, wMax, bMax, X: w => pad + (W - pad - 8) * w / wMax, Y: b => H - pad - (H - pad - 8) * b / bMax,
          w: px => (px - pad) / (W - pad - 8) * wMax, b: py => (H - pad - py) / (H - pad - 8) * bMax};
}

function phaseDrag() {  // press, drag and release on the diagram: the net starts again at that (σw², σb²)
  const canvas = $("phase");
  let dragging = false;
  const at = e => {
    const r = canvas.getBoundingClientRect(), a = phaseAxes(canvas);
    const px = (e.clientX - r.left) * canvas.width / r.width, py = (e.clientY - r.top) * canvas.height / r.height;
    return {px, py, w: Math.min(Math.max(a.w(px), 0.05), a.wMax), b: Math.min(Math.max(a.b(py), 0), a.bMax)};
  };
  const mark = p => {
    if (state) drawPhase(state.setup);
    const ctx = canvas.getContext("2d"), a = phaseAxes(canvas);
    ctx.strokeStyle = "#2563eb"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(a.X(p.w), a.Y(p.b), 7, 0, 7); ctx.stroke(); ctx.lineWidth = 1;
    ctx.fillStyle = "#2563eb"; ctx.fillText(`σw² ${p.w.toFixed(2)}, σb² ${p.b.toFixed(3)}`, 36, 28);
  };
  canvas.addEventListener("pointerdown", e => { dragging = true; canvas.setPointerCapture(e.pointerId); mark(at(e)); });
  canvas.addEventListener("pointermove", e => { if (dragging) mark(at(e)); });
  canvas.addEventListener("pointerup", e => {
    if (!dragging) return;
    dragging = false;
    const p = at(e);
    form.elements.init.value = "meanfield";
    form.elements.sigma_w2.value = p.w.toFixed(3);
    form.elements.sigma_b2.value = p.b.toFixed(3);
    for (const k of ["init", "sigma_w2", "sigma_b2"]) delete lab.raw[k];
    sendConfig();
  });
}

function drawPhase(setup) {
  const canvas = $("phase"), ctx = canvas.getContext("2d");
  const {W, H, pad, wMax, bMax, X, Y} = phaseAxes(canvas);
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = "#999"; ctx.fillStyle = "#555"; ctx.font = "11px sans-serif";
  ctx.beginPath(); ctx.moveTo(X(0), Y(0)); ctx.lineTo(X(wMax), Y(0)); ctx.moveTo(X(0), Y(0)); ctx.lineTo(X(0), Y(bMax)); ctx.stroke();
  for (const w of [1, 2, 3, 4]) ctx.fillText(String(w), X(w) - 3, H - pad + 14);
  for (const b of [0.25, 0.5]) ctx.fillText(String(b), 2, Y(b) + 4);
  ctx.fillText("σw²", W - 30, H - 4); ctx.fillText("σb²", pad + 4, 12);
  const line = setup.critical_line || [];
  const point = line.length && line.every(([w, b]) => Math.abs(w - line[0][0]) < 1e-9 && Math.abs(b - line[0][1]) < 1e-9);
  if (point) {  // ReLU: the critical line is one point, σw² = 2 at σb² = 0
    ctx.strokeStyle = "#dc2626"; ctx.lineWidth = 2;
    const [w, b] = line[0];
    ctx.beginPath(); ctx.moveTo(X(w) - 6, Y(b) - 6); ctx.lineTo(X(w) + 6, Y(b) + 6);
    ctx.moveTo(X(w) - 6, Y(b) + 6); ctx.lineTo(X(w) + 6, Y(b) - 6); ctx.stroke(); ctx.lineWidth = 1;
    ctx.fillStyle = "#dc2626"; ctx.fillText(`critical point σw² = ${w}, σb² = ${b}`, X(w) - 60, Y(b) - 12);
  } else if (line.length) {
    ctx.strokeStyle = "#dc2626"; ctx.lineWidth = 2; ctx.beginPath();
    line.forEach(([w, b], i) => i ? ctx.lineTo(X(w), Y(b)) : ctx.moveTo(X(w), Y(b)));
    ctx.stroke(); ctx.lineWidth = 1;
    ctx.fillStyle = "#dc2626"; ctx.fillText("critical line χ₁ = 1", X(line[line.length - 1][0]) - 40, 14);
    ctx.fillStyle = "#555"; ctx.fillText("ordered", X(0.3), Y(0.05)); ctx.fillText("chaotic", X(3), Y(0.05));
  }
  const p = setup.point, note = $("phase-note");
  if (p) {
    const beyond = p.sigma_w2 > wMax || p.sigma_b2 > bMax;
    const px = X(Math.min(p.sigma_w2, wMax)), py = Y(Math.min(p.sigma_b2, bMax));
    ctx.fillStyle = "#2563eb";
    if (beyond) {  // off the axes: an arrow at the edge, with the value
      ctx.beginPath(); ctx.moveTo(px, py); ctx.lineTo(px - 10, py - 6); ctx.lineTo(px - 10, py + 6); ctx.fill();
      ctx.fillText(`σw² = ${p.sigma_w2.toFixed(2)} →`, px - 80, py - 10);
    } else { ctx.beginPath(); ctx.arc(px, py, 5, 0, 7); ctx.fill(); }
    const depth = p.max_trainable_depth ? `; trainable to depth ≈ 6ξc = ${p.max_trainable_depth.toFixed(0)}` : "";
    const bias = ["critical", "meanfield"].includes(setup.config.init) ? "" :
      " (the biases start at 0; the σb² control sets only the critical and meanfield inits)";
    note.textContent = `this net at initialisation: σw² = ${p.sigma_w2.toFixed(3)}, σb² = ${p.sigma_b2.toFixed(3)}${bias}, ` +
      `${p.phase}${depth} (depth ${setup.layers})`;
  } else {
    note.textContent = `mean-field theory does not describe this set-up (${setup.theory_note || "its init"})`;
  }
}

function drawDiagram(d) {  // layers as columns of units; edges blue for positive weights, orange for negative
  lab.diagram = d;
  const canvas = $("diagram"), ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  const n = d.sizes.length;
  if (!n) return;
  const x = i => 24 + (W - 48) * i / Math.max(n - 1, 1);
  const shown = d.sizes.map(k => Math.min(k, d.units));
  const y = (i, j) => 28 + (H - 56) * (shown[i] === 1 ? 0.5 : j / (shown[i] - 1));
  const showGrad = $("diagram-grad").checked && d.grads.every(g => g);
  const mats = showGrad ? d.grads : d.weights;
  const peak = Math.max(1e-12, ...mats.map(m => Math.max(...m.flat().map(Math.abs))));
  for (let l = 0; l < mats.length; l++) {
    mats[l].forEach((row, o) => row.forEach((w, i) => {
      const a = Math.abs(w) / peak;
      if (a < 0.02) return;
      ctx.strokeStyle = w > 0 ? `rgba(27, 108, 168, ${0.15 + 0.85 * a})` : `rgba(217, 95, 2, ${0.15 + 0.85 * a})`;
      ctx.lineWidth = 0.5 + 2.5 * a;
      ctx.beginPath(); ctx.moveTo(x(l), y(l, i)); ctx.lineTo(x(l + 1), y(l + 1, o)); ctx.stroke();
    }));
  }
  ctx.lineWidth = 1; ctx.font = "10px sans-serif"; ctx.textAlign = "center";
  const neurons = lab.boundary && lab.boundary.neurons;
  const maps = neurons && neurons.maps.length === n - 1 ? neurons.maps : null;  // inputs and hidden layers
  const side = Math.max(6, Math.min(16, (H - 56) / Math.max(...shown) - 2));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < shown[i]; j++) {
      if (maps && maps[i] && maps[i][j]) { drawMap(ctx, maps[i][j], neurons.size, x(i) - side / 2, y(i, j) - side / 2, side); continue; }
      ctx.fillStyle = "#fff"; ctx.strokeStyle = "#374151";
      ctx.beginPath(); ctx.arc(x(i), y(i, j), 3.5, 0, 7); ctx.fill(); ctx.stroke();
    }
    ctx.fillStyle = "#374151";
    ctx.fillText(d.labels[i], x(i), 12);
    if (d.sizes[i] > shown[i]) ctx.fillText(`+${d.sizes[i] - shown[i]}`, x(i), H - 6);
  }
  ctx.textAlign = "start";
}

function drawMap(ctx, values, size, left, top, side) {  // one unit's output over the plane: blue +, orange −, white 0
  const img = ctx.createImageData(size, size);
  values.forEach((v, k) => {
    const a = Math.min(Math.abs(v) / 99, 1), rgb = v > 0 ? [27, 108, 168] : [217, 95, 2];
    const px = k % size, py = size - 1 - Math.floor(k / size), i = 4 * (py * size + px);
    for (let c = 0; c < 3; c++) img.data[i + c] = Math.round(255 + a * (rgb[c] - 255));
    img.data[i + 3] = 255;
  });
  const off = document.createElement("canvas");
  off.width = off.height = size;
  off.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, left, top, side, side);
  ctx.strokeStyle = "#374151"; ctx.strokeRect(left, top, side, side);
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
  ws.onopen = () => { lab.connected = true; retry = 500; sendConfig(); };
  ws.onclose = () => {  // the server stopped or restarted: try again, less often each time
    lab.connected = false;
    $("status").textContent = `disconnected: reconnecting in ${(retry / 1000).toFixed(1)} s…`;
    setTimeout(() => { lab.reconnects++; connect(); }, retry);
    retry = Math.min(retry * 2, 8000);
  };
  ws.onmessage = event => {
    const m = JSON.parse(event.data);
    if (m.type === "frame") onFrame(m);
    else if (m.type === "setup") onSetup(m);
    else if (m.type === "error") onError(m);
    else if (m.type === "kept") $("kept").textContent = `kept as ${m.run}`;
  };
}

function onSetup(m) {
  const changed = state !== null;
  if (changed) ghost = keepGhost(state);
  const notice = [...(lab.notice || []), ...(lab.unknown ? [lab.unknown] : [])];
  showMessage(notice.join("; "), notice);  // a bad link's values stay named after the defaults replaced them
  markInvalid(lab.noticeFields || []);
  lab.notice = lab.noticeFields = null;
  lab.unknown = "";
  showBanner("");
  lab.diverged = "";
  lab.step = 0;  // until the new set-up's first frame
  lab.setups++;
  state = newState(m);
  $("hint").textContent = changed ? "set-up changed: press play" : "press play";
}

function onError(m) {
  const errors = m.errors || [{field: null, message: m.message}];
  showMessage(m.message, errors.map(e => e.message));
  markInvalid(errors.map(e => e.field));
  if (!state && lab.connected) {  // a bad link: start from the defaults for the named controls, keep the message
    const named = errors.map(e => e.field).filter(f => f && f in options.defaults);
    if (named.length) {
      lab.notice = errors.map(e => e.message + (e.field in options.defaults ? `; using ${e.field}=${options.defaults[e.field]}` : ""));
      lab.noticeFields = named;
      for (const f of named) { setControl(f, options.defaults[f]); delete lab.raw[f]; }
      const cfg = readConfig();
      writeUrl(cfg);
      send({type: "config", config: cfg});
    }
  }
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
    if (!el) continue;
    const wanted = params.has(key) ? params.get(key) : String(def);
    if (el.tagName === "SELECT" && ![...el.options].some(o => o.value === wanted)) el.add(new Option(wanted, wanted));
    setControl(key, wanted);  // a value the list does not hold is kept, so that the server can name it
    if (params.has(key)) lab.raw[key] = wanted;
  }
  form.addEventListener("input", e => { delete lab.raw[e.target.name]; });
  featureBoxes();
  const unknown = [...params.keys()].filter(k => !(k in options.defaults));
  lab.unknown = unknown.length ? `not a control, ignored: ${unknown.join(", ")}` : "";
  const lessons = $("lesson");
  for (const l of options.lessons || []) lessons.add(new Option(`${l.id}: ${l.title}`, l.id));
  lessons.addEventListener("change", e => {
    e.stopPropagation();  // one set-up: the form's own change listener would send the config a second time
    const l = (options.lessons || []).find(x => x.id === lessons.value);
    $("watch").textContent = l ? `Watch: ${l.watch}` : "";
    if (!l) return;
    for (const [key, def] of Object.entries(options.defaults)) setControl(key, key in l.setup ? l.setup[key] : def);
    sendConfig();
  });
  form.addEventListener("change", sendConfig);
  form.addEventListener("submit", e => e.preventDefault());
  $("play").onclick = () => send({type: "play"});
  $("pause").onclick = () => send({type: "pause"});
  $("step").onclick = () => send({type: "step"});
  $("reset").onclick = () => send({type: "reset"});
  $("keep").onclick = () => send({type: "keep"});
  for (const id of ["discrete", "show-test"]) $(id).addEventListener("change", () => lab.boundary && drawBoundary(lab.boundary));
  $("diagram-grad").addEventListener("change", () => lab.diagram && drawDiagram(lab.diagram));
  phaseDrag();
  connect();
}

start();
