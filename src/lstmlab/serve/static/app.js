// lstmlab serve: the page. Plain JavaScript, no build step, nothing loaded from the net.
// Curves are plotly.js (from the installed plotly wheel); heatmaps are <canvas>, drawn
// only when new data arrives and, for the stream, only the newest frame per animation frame.
"use strict";

const lab = { meta: null, runs: [], framesDrawn: 0, framesReceived: 0, inspected: null };
window.lab = lab;
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/"/g, "&quot;");
const fmt = (v, d = 4) => (v === null || v === undefined || Number.isNaN(v)) ? "–"
  : (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0)) ? v.toExponential(2) : (+v).toPrecision(d);

// --- requests and messages ------------------------------------------------------------------
function toast(msg) {
  const t = $("toast");
  t.textContent = msg;
  t.style.display = "block";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.style.display = "none"; }, 6000);
}

async function api(path, opts = {}) {
  const init = { ...opts };
  if (opts.json !== undefined) {
    init.method = init.method || "POST";
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(opts.json);
  }
  const res = await fetch(path, init);
  const body = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
  if (!res.ok) {
    toast(body.error || `${res.status} ${res.statusText}`);
    const e = new Error(body.error);
    e.shown = true;                              // told to the user already
    throw e;
  }
  return body;
}
// a refused request stops what asked for it; the toast has said why, the console need not
window.addEventListener("unhandledrejection", (e) => { if (e.reason && e.reason.shown) e.preventDefault(); });

function wsUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

// --- charts -------------------------------------------------------------------------------
// plotly.js is 4.6 MB of script (about 1.6 s to parse on a 2-core machine): it loads the
// first time a view draws a plotly chart (the runs overlay, inspect's charts). What updates
// live is canvas: the training curves, the heatmaps and the stream, so that many open pages
// cost little (benchmarks/serve_load.py).
let plotlyLoading = null;
function plotlyJs() {
  if (!plotlyLoading) {
    plotlyLoading = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = "/vendor/plotly.min.js";
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => reject(new Error("plotly.js did not load"));
      document.head.appendChild(s);
    });
  }
  return plotlyLoading;
}

async function plot(id, traces, layout) {
  const Plotly = await plotlyJs();
  await Plotly.react(id, traces, layout, { displaylogo: false, responsive: true });
}

// --- tabs ---------------------------------------------------------------------------------
function show(view) {
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
  document.querySelectorAll(".view").forEach((v) => v.classList.toggle("active", v.id === `view-${view}`));
  location.hash = view;
  refreshRuns();
}
document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));

// --- colours and heatmaps -------------------------------------------------------------------
// gates live in [0, 1]: white (shut) to blue (open); states are signed: blue - white - red
function colour(v, signed, scale) {
  if (!Number.isFinite(v)) return [200, 200, 200];
  if (!signed) {
    const x = Math.max(0, Math.min(1, v));
    return [Math.round(255 - 208 * x), Math.round(255 - 144 * x), Math.round(255 - 32 * x)];
  }
  const x = Math.max(-1, Math.min(1, v / scale));
  return x >= 0 ? [255, Math.round(255 - 170 * x), Math.round(255 - 190 * x)]
                : [Math.round(255 + 190 * x), Math.round(255 + 130 * x), 255];
}
const SIGNED = new Set(["g", "c", "h", "n"]);

function heatmap(parent, title, matrix, steps, name, units) {
  // matrix: [T][U]; drawn with units as rows and steps as columns
  const T = matrix.length, U = T ? matrix[0].length : 0;
  const box = document.createElement("div");
  box.className = "heatmap";
  const signed = SIGNED.has(name);
  let scale = 1;
  if (signed) for (const row of matrix) for (const v of row) scale = Math.max(scale, Math.abs(v));
  box.innerHTML = `<div class="name"><span>${title}</span><span>${signed ? `±${fmt(scale, 2)}` : "0 … 1"}</span></div>`;
  const cv = document.createElement("canvas");
  cv.width = Math.max(T, 1);
  cv.height = Math.max(U, 1);
  const ctx = cv.getContext("2d");
  const img = ctx.createImageData(cv.width, cv.height);
  for (let t = 0; t < T; t++) for (let u = 0; u < U; u++) {
    const [r, g, b] = colour(matrix[t][u], signed, scale);
    const k = 4 * (u * cv.width + t);
    img.data[k] = r; img.data[k + 1] = g; img.data[k + 2] = b; img.data[k + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  cv.addEventListener("mousemove", (e) => {
    const r = cv.getBoundingClientRect();
    const t = Math.floor((e.clientX - r.left) / r.width * T), u = Math.floor((e.clientY - r.top) / r.height * U);
    if (t < 0 || t >= T || u < 0 || u >= U) return;
    const tip = $("tip");
    const step = steps && steps[t] !== undefined ? ` ${JSON.stringify(steps[t])}` : "";
    tip.textContent = `${title} unit ${units ? units[u] : u} step ${t}${step}: ${matrix[t][u].toFixed(4)}`;
    tip.style.left = `${e.clientX + 12}px`;
    tip.style.top = `${e.clientY + 12}px`;
    tip.style.display = "block";
  });
  cv.addEventListener("mouseleave", () => { $("tip").style.display = "none"; });
  box.appendChild(cv);
  parent.appendChild(box);
  return cv;
}

function drawPicture(parent, pic, steps) {
  // what the steps read (speech: the spectrogram), on top of the gates: rows bottom up,
  // pic.per_step columns a step, coloured from its lowest to its highest value
  const R = pic.image.length, C = R ? pic.image[0].length : 0;
  let lo = Infinity, hi = -Infinity;
  for (const row of pic.image) for (const v of row) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const box = document.createElement("div");
  box.className = "heatmap picture";
  box.innerHTML = `<div class="name"><span>what it reads: ${R} rows (${esc(pic.label)}), ${pic.per_step} columns a step</span><span>${fmt(lo, 2)} … ${fmt(hi, 2)}</span></div>`;
  const cv = document.createElement("canvas");
  cv.width = Math.max(C, 1); cv.height = Math.max(R, 1);
  const ctx = cv.getContext("2d"), img = ctx.createImageData(cv.width, cv.height);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) {
    const [cr, cg, cb] = colour((pic.image[r][c] - lo) / Math.max(hi - lo, 1e-9), false, 1);
    const k = 4 * ((R - 1 - r) * cv.width + c);
    img.data[k] = cr; img.data[k + 1] = cg; img.data[k + 2] = cb; img.data[k + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  cv.addEventListener("mousemove", (e) => {
    const b = cv.getBoundingClientRect();
    const c = Math.floor((e.clientX - b.left) / b.width * C), r = R - 1 - Math.floor((e.clientY - b.top) / b.height * R);
    if (c < 0 || c >= C || r < 0 || r >= R) return;
    const t = Math.floor(c / pic.per_step), tip = $("tip");
    tip.textContent = `${pic.label} ${r}, step ${t} ${JSON.stringify(steps[t] ?? "")}: ${pic.image[r][c].toFixed(3)}`;
    tip.style.left = `${e.clientX + 12}px`; tip.style.top = `${e.clientY + 12}px`; tip.style.display = "block";
  });
  cv.addEventListener("mouseleave", () => { $("tip").style.display = "none"; });
  box.appendChild(cv);
  parent.prepend(box);
}

function drawGroups(parent, groups, steps, units) {
  parent.innerHTML = "";
  for (const [g, d] of Object.entries(groups)) {
    for (const [name, m] of Object.entries(d)) heatmap(parent, `${g} ${name}`, m, steps, name, units);
  }
}

// --- runs ---------------------------------------------------------------------------------
async function refreshRuns() {
  lab.runs = await api("/api/runs");
  for (const sel of document.querySelectorAll(".run-select")) {
    const keep = sel.value;
    sel.innerHTML = lab.runs.filter((r) => r.step > 0)
      .map((r) => `<option value="${r.run}">${r.run} (${r.task}, ${r.variant})</option>`).join("");
    if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  }
  const tr = $("t-run"), keep = tr.value;
  tr.innerHTML = `<option value="">choose a run</option>` + lab.runs
    .map((r) => `<option value="${r.run}">${r.run} (${r.state})</option>`).join("");
  if ([...tr.options].some((o) => o.value === keep)) tr.value = keep;
  renderTable();
}

const COLUMNS = [["", null], ["run", "run"], ["task", "task"], ["engine", "engine"], ["variant", "variant"],
  ["hidden", "hidden_size"], ["layers", "num_layers"], ["state", "state"], ["step", "step"],
  ["test metric", "metric"], ["valid loss", "valid_loss"]];
let sortKey = "modified", sortUp = false;
const overlay = new Set();

function metricOf(r) {
  const task = lab.meta && lab.meta.tasks.find((t) => t.task === r.task);
  const name = task ? task.metric : Object.keys(r.test)[0];
  return [name, r.test ? r.test[name] : undefined];
}

function renderTable() {
  const head = $("r-table").tHead, body = $("r-table").tBodies[0];
  head.innerHTML = "<tr>" + COLUMNS.map(([label, key]) =>
    `<th data-key="${key || ""}" class="${key === sortKey ? "sorted" + (sortUp ? " up" : "") : ""}">${label}</th>`).join("") + "</tr>";
  head.querySelectorAll("th").forEach((th) => th.addEventListener("click", () => {
    if (!th.dataset.key) return;
    sortUp = th.dataset.key === sortKey ? !sortUp : true;
    sortKey = th.dataset.key;
    renderTable();
  }));
  const val = (r) => sortKey === "metric" ? metricOf(r)[1] : r[sortKey];
  const rows = [...lab.runs].sort((a, b) => {
    const x = val(a), y = val(b);
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * (sortUp ? 1 : -1);
  });
  body.innerHTML = rows.map((r) => {
    const [mname, mval] = metricOf(r);
    return `<tr data-run="${r.run}"><td><input type="checkbox" ${overlay.has(r.run) ? "checked" : ""}></td>
      <td>${r.run}</td><td>${r.task}</td><td>${r.engine}</td><td>${r.variant}</td>
      <td class="num">${r.hidden_size ?? ""}</td><td class="num">${r.num_layers ?? ""}</td>
      <td><span class="state ${r.state}" title="${r.message || ""}">${r.state}</span></td>
      <td class="num">${r.step}${r.steps ? " / " + r.steps : ""}</td>
      <td class="num">${mval === undefined ? "" : `${mname} ${fmt(mval)}`}</td>
      <td class="num">${fmt(r.valid_loss)}</td></tr>`;
  }).join("");
  body.querySelectorAll("tr").forEach((tr) => {
    tr.querySelector("input").addEventListener("click", (e) => {
      e.stopPropagation();
      if (e.target.checked) overlay.add(tr.dataset.run); else overlay.delete(tr.dataset.run);
      drawOverlay();
    });
    tr.addEventListener("click", () => runDetail(tr.dataset.run));
  });
}

async function drawOverlay() {
  const traces = [];
  for (const name of overlay) {
    const r = await api(`/api/run?run=${encodeURIComponent(name)}`);
    const rows = r.metrics.filter((m) => m.split === "valid");
    traces.push({ x: rows.map((m) => m.step), y: rows.map((m) => m.loss), name, mode: "lines+markers" });
  }
  plot("r-overlay", traces, { margin: { t: 10, r: 10, b: 40, l: 60 }, xaxis: { title: "step" },
    yaxis: { title: "validation loss", type: "log", exponentformat: "power" }, height: 280 });
}

async function runDetail(name) {
  const r = await api(`/api/run?run=${encodeURIComponent(name)}`);
  $("r-detail").hidden = false;
  $("r-title").textContent = `${name}: ${r.task}, ${r.engine} engine, ${r.variant}`;
  const q = encodeURIComponent(name);
  const links = [["model.safetensors", "model (.safetensors)"], ["model.onnx", "model (.onnx)"],
    ["metrics.csv", "metrics (CSV)"], ["metrics.json", "metrics (JSON)"], ["run.zip", "whole run (.zip)"]]
    .map(([k, label]) => `<a class="dl" href="/api/export?run=${q}&kind=${k}" download>${label}</a>`);
  links.splice(4, 0, `<a class="dl" href="/api/file?run=${q}&path=config.json&download=1" download>config</a>`);
  $("r-downloads").innerHTML = links.join(" ");
  $("r-config").textContent = JSON.stringify(r.config, null, 1);
  $("r-figures").innerHTML = r.figures.map((f) =>
    `<a href="/api/file?run=${q}&path=figures/${f}" target="_blank"><img alt="${f}" src="/api/file?run=${q}&path=figures/${f}"></a>`).join("");
}
$("r-refresh").addEventListener("click", refreshRuns);

// --- train --------------------------------------------------------------------------------
function taskOf(name) { return lab.meta.tasks.find((t) => t.task === name); }

function fillTaskDefaults() {
  const t = taskOf($("t-task").value);
  $("t-task-help").textContent = t.summary;
  const form = $("train-form");
  for (const el of form.querySelectorAll("input[type=number]")) {
    const d = t.model[el.name] ?? t.train[el.name];
    el.value = "";
    el.placeholder = d === undefined ? "default" : d;
  }
  $("t-engine").value = t.engine;
  const options = Object.entries(t.options).filter(([k]) => !t.sources.includes(k));
  $("t-options-box").hidden = options.length === 0;
  $("t-options").innerHTML = options.map(([k, o]) =>
    `<label title="${esc(o.help)}">${esc(k)} <input data-option="${esc(k)}" placeholder="${esc(o.default)}"></label>`).join("");
  $("t-source").hidden = t.sources.length === 0;
  $("t-source-file").innerHTML = `<option value="">the built-in data</option>` +
    lab.meta.uploads.map((u) => `<option>${u}</option>`).join("");
}

async function setupTrain() {
  $("t-task").innerHTML = lab.meta.tasks.map((t) => `<option>${t.task}</option>`).join("");
  $("t-variant").innerHTML = lab.meta.variants.map((v) => `<option>${v}</option>`).join("");
  $("t-engine").innerHTML = lab.meta.engines.map((v) => `<option>${v}</option>`).join("");
  $("t-task").value = "sine";
  $("t-task").addEventListener("change", fillTaskDefaults);
  fillTaskDefaults();
  $("t-upload").addEventListener("change", async (e) => {
    const f = e.target.files[0];
    if (!f) return;
    const name = f.name.replace(/[^A-Za-z0-9._-]/g, "_");
    await api(`/api/upload?name=${encodeURIComponent(name)}`, { method: "PUT", body: f });
    lab.meta = await api("/api/meta");
    fillTaskDefaults();
    $("t-source-file").value = name;
  });
  $("train-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(e.target), t = taskOf(form.get("task"));
    const settings = {};
    for (const el of e.target.querySelectorAll("input[type=number]")) {
      if (el.value !== "") settings[el.name] = Number(el.value);
    }
    const body = { task: t.task, engine: form.get("engine"), variant: form.get("variant"), settings, options: {} };
    if (form.get("name")) body.name = form.get("name");
    for (const el of e.target.querySelectorAll("input[data-option]")) {
      // typed as the option's default is: a number, true or false, else the text itself
      if (el.value === "") continue;
      const v = el.value.trim();
      body.options[el.dataset.option] = v === "true" ? true : v === "false" ? false
        : (v !== "" && !Number.isNaN(Number(v))) ? Number(v) : v;
    }
    if (t.sources.length && form.get("source")) body.options[t.sources[0]] = form.get("source");
    const r = await api("/api/train", { json: body });
    await refreshRuns();
    $("t-run").value = r.run;
    watch(r.run);
  });
  $("t-run").addEventListener("change", () => watch($("t-run").value));
  for (const action of ["pause", "resume", "stop", "continue"]) {
    $(`t-${action}`).addEventListener("click", async () => {
      if (!lab.watching) return;
      await api("/api/control", { json: { run: lab.watching, action } });
      if (action === "continue") watch(lab.watching);
    });
  }
  setButtons(null);
}

function setButtons(state) {
  $("t-pause").disabled = state !== "running";
  $("t-resume").disabled = state !== "paused";
  $("t-stop").disabled = !(state === "running" || state === "paused");
  $("t-continue").disabled = state !== "stopped";
}

function watch(name) {
  if (lab.socket) lab.socket.close();
  lab.watching = name || null;
  lab.curve = { train: { x: [], y: [] }, valid: { x: [], y: [] }, live: { x: [], y: [] } };
  lineChart($("t-curves"), [], {});
  $("t-gates").innerHTML = "";
  $("t-gates-step").textContent = "";
  setButtons(null);
  if (!name) return;
  const ws = new WebSocket(wsUrl(`/ws/run?run=${encodeURIComponent(name)}`));
  lab.socket = ws;
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "error") toast(m.error);
    else if (m.type === "reset") { lab.curve = { train: { x: [], y: [] }, valid: { x: [], y: [] }, live: { x: [], y: [] } }; }
    else if (m.type === "metrics") {
      for (const row of m.rows) {
        const c = lab.curve[row.split];
        if (c && row.loss !== undefined && row.loss !== null) { c.x.push(row.step); c.y.push(row.loss); }
      }
      drawCurves();
    } else if (m.type === "status") {
      status(m.data);
      const s = m.data, live = lab.curve.live;
      if (s.loss !== null && s.state === "running" && (!live.x.length || s.step > live.x[live.x.length - 1])) {
        live.x.push(s.step); live.y.push(s.loss);
        drawCurves();
      }
    }
    else if (m.type === "gates") {
      drawGroups($("t-gates"), m.data.groups, m.data.steps);
      $("t-gates-step").textContent = `(step ${m.data.step})`;
      lab.gatesDrawn = (lab.gatesDrawn || 0) + 1;
    } else if (m.type === "state") {
      if (lab.state && lab.state !== m.state) refreshRuns();          // the run list shows it
      setButtons(m.state);
      lab.state = m.state;
      const el = $("t-status");
      el.dataset.state = m.state;
      if (m.message) { el.textContent = `${m.state}: ${m.message}`; el.classList.toggle("bad", m.state === "failed"); }
    }
  };
}

function status(s) {
  const el = $("t-status");
  el.classList.remove("bad");
  const rate = s.steps_per_second ? `${fmt(s.steps_per_second, 3)} steps/s` : "";
  const eta = s.eta_seconds !== null && s.eta_seconds !== undefined ? `ETA ${Math.round(s.eta_seconds)} s` : "";
  el.textContent = [`${s.state}`, `step ${s.step} / ${s.steps}`, `loss ${fmt(s.loss)}`,
    s.valid_loss !== null ? `validation ${fmt(s.valid_loss)}` : "", rate, eta].filter(Boolean).join(" · ");
  $("t-bar").style.width = `${100 * s.step / Math.max(1, s.steps)}%`;
}

function drawCurves() {
  // at most twice a second, and not while the tab is hidden
  if (lab.curveTimer) return;
  lab.curveTimer = setTimeout(() => {
    lab.curveTimer = null;
    if (document.hidden) { lab.curveStale = true; return; }
    const c = lab.curve;
    lineChart($("t-curves"), [
      { ...c.live, colour: "#9db4e0", label: "training loss (live, smoothed)" },
      { ...c.train, colour: "#2f6fdf", label: "training loss (mean per evaluation)", dots: true },
      { ...c.valid, colour: "#e4572e", label: "validation loss", dots: true }], { x: "step", y: "loss" });
    lab.curvePoints = c.live.x.length + c.train.x.length + c.valid.x.length;     // points drawn
  }, 500);
}

function lineChart(cv, series, labels) {
  // lines on a log-scaled y axis, with decade ticks, step ticks and a legend
  const ctx = cv.getContext("2d"), W = cv.width, H = cv.height, L = 64, R = 14, T = 12, B = 54;
  ctx.clearRect(0, 0, W, H);
  const xs = series.flatMap((s) => s.x), ys = series.flatMap((s) => s.y).filter((v) => v > 0);
  if (!xs.length || !ys.length) return;
  const x1 = Math.max(...xs, 1), lo = Math.log10(Math.min(...ys)), hi = Math.log10(Math.max(...ys));
  const y0 = Math.floor(lo * 2) / 2, y1 = Math.max(Math.ceil(hi * 2) / 2, y0 + 0.5);
  const px = (x) => L + x / x1 * (W - L - R), py = (v) => T + (y1 - Math.log10(v)) / (y1 - y0) * (H - T - B);
  ctx.font = "12px system-ui, sans-serif";
  ctx.strokeStyle = "#e8ecf2"; ctx.fillStyle = "#5b6475"; ctx.lineWidth = 1;
  for (let e = Math.floor(y0); e <= Math.floor(y1); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e, y = py(v);
      if (y < T - 1 || y > H - B + 1) continue;
      ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(W - R, y); ctx.stroke();
      ctx.textAlign = "right"; ctx.fillText(v.toPrecision(1), L - 6, y + 4);
    }
  }
  const step = 10 ** Math.floor(Math.log10(x1 / 5 || 1)), every = x1 / step > 10 ? 2 * step : step;
  ctx.textAlign = "center";
  for (let x = 0; x <= x1; x += every) ctx.fillText(String(x), px(x), H - B + 16);
  ctx.fillText(labels.x, (L + W - R) / 2, H - B + 32);
  ctx.save(); ctx.translate(14, (T + H - B) / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(labels.y, 0, 0); ctx.restore();
  let lx = L;
  for (const s of series) {
    ctx.strokeStyle = s.colour; ctx.fillStyle = s.colour; ctx.lineWidth = 2;
    ctx.beginPath();
    s.x.forEach((x, k) => { if (s.y[k] > 0) (k ? ctx.lineTo : ctx.moveTo).call(ctx, px(x), py(s.y[k])); });
    ctx.stroke();
    if (s.dots) s.x.forEach((x, k) => { if (s.y[k] > 0) { ctx.beginPath(); ctx.arc(px(x), py(s.y[k]), 3, 0, 7); ctx.fill(); } });
    ctx.fillRect(lx, H - 14, 18, 3);
    ctx.fillStyle = "#1d2330"; ctx.textAlign = "left"; ctx.fillText(s.label, lx + 24, H - 9);
    lx += 24 + ctx.measureText(s.label).width + 22;
  }
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && lab.curveStale) { lab.curveStale = false; drawCurves(); }
});

// --- inspect ------------------------------------------------------------------------------
let typing = null;
async function inspectInput(input) {
  const run = $("i-run").value;
  if (!run) return toast("no run with a model yet: train one first");
  const r = await api("/api/inspect", { json: { run, analysis: "activations", input,
    units: unitsAsked(), steps: Number($("i-steps").value) } });
  lab.inspected = r;
  lab.inspectCount = (lab.inspectCount || 0) + 1;
  drawGroups($("i-heatmaps"), r.groups, r.steps, r.units);
  if (r.picture) drawPicture($("i-heatmaps"), r.picture, r.steps);
  const groups = Object.keys(r.groups);
  const gsel = $("i-group"), keep = gsel.value;
  gsel.innerHTML = groups.map((g) => `<option>${g}</option>`).join("");
  if (groups.includes(keep)) gsel.value = keep;
  const names = Object.keys(r.groups[gsel.value]);
  const ssel = $("i-state"), keepS = ssel.value;
  ssel.innerHTML = names.map((n) => `<option>${n}</option>`).join("");
  ssel.value = names.includes(keepS) ? keepS : (names.includes("c") ? "c" : names[names.length - 1]);
  const shownUnits = r.units.length > 12 ? `${r.units.slice(0, 12).join(", ")}, …` : r.units.join(", ");
  $("i-info").textContent = `${r.steps.length} steps; ${r.units.length} units of ${Object.values(r.hidden)[0]} shown (${shownUnits})`;
  colourText();
}

function unitsAsked() {
  // "24": the first 24 units; "3, 17, 42": those units
  const v = $("i-units").value.trim();
  return v.includes(",") ? v.split(",").filter((u) => u.trim()).map(Number) : Number(v);
}

function colourText() {
  const r = lab.inspected;
  if (!r) return;
  const m = r.groups[$("i-group").value][$("i-state").value];
  const unit = Number($("i-unit").value), u = r.units.indexOf(unit);     // its column
  if (!m) return;
  if (u < 0) {
    $("i-coloured").textContent = `unit ${unit} is not among the units shown; add it to "units" above`;
    return;
  }
  let scale = 1e-9;
  for (const row of m) scale = Math.max(scale, Math.abs(row[u]));
  const signed = SIGNED.has($("i-state").value);
  $("i-coloured").innerHTML = r.steps.map((s, t) => {
    const [cr, cg, cb] = colour(m[t][u], signed, signed ? scale : 1);
    const sep = String(s).length > 1 ? " " : "";
    return `<span style="background:rgb(${cr},${cg},${cb})" title="${m[t][u].toFixed(4)}">${s === "\n" ? "⏎\n" : esc(s)}</span>${sep}`;
  }).join("");
}

function plotSaturation(s) {
  const traces = [];
  for (const [g, d] of Object.entries(s.groups)) for (const [k, v] of Object.entries(d)) {
    traces.push({ x: v.shut, y: v.open, mode: "markers", name: `${g} ${k}`, type: "scatter" });
  }
  plot("i-saturation", traces, { height: 280, margin: { t: 10, r: 10, b: 45, l: 50 },
    xaxis: { title: `fraction of steps below ${s.low}`, range: [0, 1] },
    yaxis: { title: `above ${s.high}`, range: [0, 1] } });
}

function plotTimescales(s) {
  const traces = Object.entries(s.groups).map(([g, d]) => ({
    x: [...d.mean.keys()], y: d.mean, type: "bar", name: g }));
  plot("i-timescales", traces, { height: 280, margin: { t: 10, r: 10, b: 45, l: 60 },
    xaxis: { title: "unit" }, yaxis: { title: `mean −1/ln ${s.gate} (steps)`, type: "log" } });
}

function setupInspect() {
  $("i-go").addEventListener("click", () => inspectInput(Number($("i-example").value)));
  $("i-text").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { if ($("i-text").value) inspectInput($("i-text").value); }, 250);
  });
  for (const id of ["i-group", "i-state", "i-unit"]) $(id).addEventListener("input", colourText);
  $("i-group").addEventListener("change", () => inspectInput(currentInput()));
  const input = () => $("i-text").value || Number($("i-example").value);
  window.currentInput = input;
  $("i-sat").addEventListener("click", async () =>
    plotSaturation(await api("/api/inspect", { json: { run: $("i-run").value, analysis: "saturation" } })));
  $("i-time").addEventListener("click", async () =>
    plotTimescales(await api("/api/inspect", { json: { run: $("i-run").value, analysis: "timescales" } })));
  $("i-conn").addEventListener("click", async () => {
    const c = await api("/api/inspect", { json: { run: $("i-run").value, analysis: "connectivity", input: input() } });
    plot("i-connectivity", [{ z: c.matrix, type: "heatmap", colorscale: "Blues", reversescale: true,
      x: c.steps.map((s, k) => `${k}:${s}`), y: c.matrix.map((_, k) => k) }],
    { height: 300, margin: { t: 10, r: 10, b: 60, l: 50 }, xaxis: { title: "input step" },
      yaxis: { title: "output step" } });
  });
  $("a-go").addEventListener("click", async () => {
    const r = await api("/api/inspect", { json: { run: $("i-run").value, analysis: "ablate", input: input(),
      layer: Number($("a-layer").value), unit: Number($("a-unit").value), gate: $("a-gate").value,
      value: Number($("a-value").value) } });
    $("a-result").textContent = `clamped ${r.clamp.group} ${r.clamp.gate} unit ${r.clamp.units} to ${r.clamp.value}: ` +
      `the outputs changed by up to ${fmt(r.max_output_change)}`;
    const traces = r.before_outputs
      ? [{ y: r.before_outputs, name: "before", mode: "lines" }, { y: r.after_outputs, name: "after", mode: "lines" }]
      : [{ y: r.output_change, name: "largest output change", type: "bar" }];
    plot("a-plot", traces, { height: 240, margin: { t: 10, r: 10, b: 40, l: 50 }, xaxis: { title: "step" } });
  });
}
function currentInput() { return window.currentInput(); }

// --- stream -------------------------------------------------------------------------------
const stream = { ws: null, layout: null, latest: null, history: [], heat: [], dirty: false };
lab.stream = stream;

function connectStream() {
  if (stream.ws) stream.ws.close();
  const run = $("s-run").value;
  if (!run) return toast("no run with a model yet: train one first");
  stream.history = []; stream.heat = []; stream.layout = null;
  lab.framesDrawn = 0; lab.framesReceived = 0; lab.streamText = ""; lab.streamHeard = "";
  const ws = new WebSocket(wsUrl(`/ws/stream?run=${encodeURIComponent(run)}`));
  ws.binaryType = "arraybuffer";
  stream.ws = ws;
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") {
      const f = new Float32Array(ev.data);
      lab.framesReceived++;
      stream.history.push([f[1], f[2]]);
      stream.heat.push(f.subarray(3));
      if (stream.history.length > 300) { stream.history.shift(); stream.heat.shift(); }
      stream.latest = f;
      requestDraw();
      return;
    }
    const m = JSON.parse(ev.data);
    if (m.type === "error") toast(m.error);
    else if (m.type === "layout") {
      stream.layout = m;
      $("s-series").hidden = m.kind !== "series";
      $("s-text").hidden = m.kind !== "text";
      $("s-audio").hidden = m.kind !== "audio";
      const audio = m.kind === "audio";
      $("s-in-name").textContent = audio ? "loudness (mean log-mel band)" : "input";
      $("s-pred-name").textContent = audio ? "probability that this step says a character" : "prediction made one step before";
      $("s-rows").textContent = `rows, top to bottom: ${m.rows.map((r) => r.join(" ")).join(", ")} (${m.units} units each); columns: the last 300 steps`;
      if (m.kind === "series") sendConfig();
      if (audio) hear();
    } else if (m.type === "reset") { stream.history = []; stream.heat = []; requestDraw(); }
    else if (m.type === "utterance") {
      $("s-said").textContent = `said: “${m.text}” (test utterance ${m.example}, ${m.steps} steps)`;
      $("s-heard").textContent = "heard: ";
      lab.streamHeard = "";
    } else if (m.type === "heard") {
      lab.streamHeard = m.text;
      $("s-heard").textContent = `heard: ${m.text}`;
    }
    else if (m.type === "text") {
      $("s-next").textContent = "next character: " + (m.prediction || [])
        .map((o) => `${JSON.stringify(o.char)} ${(100 * o.p).toFixed(1)}%`).join("  ");
      lab.streamText = (lab.streamText || "") + m.input;
    }
  };
}

function sendConfig() {
  if (!stream.ws || stream.ws.readyState !== 1) return;
  stream.ws.send(JSON.stringify({ type: "config", source: $("s-source").value, example: Number($("s-example").value),
    freq: Number($("s-freq").value), amp: Number($("s-amp").value), noise: Number($("s-noise").value),
    speed: Number($("s-speed").value) }));
}

function hear() {
  // a speech model: hear a test utterance from its start, at the chosen speed
  if (!stream.ws || stream.ws.readyState !== 1) return;
  stream.ws.send(JSON.stringify({ type: "config", example: Number($("s-utt").value), speed: Number($("s-aspeed").value) }));
}

function requestDraw() {
  // one drawing per animation frame, of the newest data, and none while nothing arrives
  if (!stream.dirty) { stream.dirty = true; requestAnimationFrame(drawStream); }
}

function drawStream() {
  if (stream.dirty && stream.layout) {
    stream.dirty = false;
    lab.framesDrawn++;
    const cv = $("s-line"), ctx = cv.getContext("2d"), W = cv.width, H = cv.height, n = 300;
    ctx.clearRect(0, 0, W, H);
    let lo = -1, hi = 1;
    for (const [a, p] of stream.history) for (const v of [a, p]) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const y = (v) => H - 10 - (v - lo) / (hi - lo) * (H - 20), x = (k) => k / n * W;
    ctx.strokeStyle = "#e8ecf2"; ctx.beginPath(); ctx.moveTo(0, y(0)); ctx.lineTo(W, y(0)); ctx.stroke();
    for (const [k, colourName] of [[0, "#1d2330"], [1, "#e4572e"]]) {
      ctx.strokeStyle = colourName; ctx.lineWidth = 2; ctx.beginPath();
      let started = false;
      stream.history.forEach((h, i) => {
        if (!Number.isFinite(h[k])) { started = false; return; }
        if (started) ctx.lineTo(x(i), y(h[k])); else { ctx.moveTo(x(i), y(h[k])); started = true; }
      });
      ctx.stroke();
    }
    const hv = $("s-heat"), hc = hv.getContext("2d");
    const rows = stream.layout.rows.length, U = stream.layout.units, total = rows * U;
    const img = hc.createImageData(n, total);
    stream.heat.forEach((col, t) => {
      for (let r = 0; r < rows; r++) {
        const name = stream.layout.rows[r][1], signed = SIGNED.has(name);
        for (let u = 0; u < U; u++) {
          const [cr, cg, cb] = colour(col[r * U + u], signed, 1);
          const k = 4 * ((r * U + u) * n + t);
          img.data[k] = cr; img.data[k + 1] = cg; img.data[k + 2] = cb; img.data[k + 3] = 255;
        }
      }
    });
    const off = document.createElement("canvas");
    off.width = n; off.height = total;
    off.getContext("2d").putImageData(img, 0, 0);
    hc.imageSmoothingEnabled = false;
    hc.clearRect(0, 0, hv.width, hv.height);
    hc.drawImage(off, 0, 0, hv.width, hv.height);
    hc.strokeStyle = "#ffffff"; hc.lineWidth = 2;
    for (let r = 1; r < rows; r++) { const yy = r * hv.height / rows; hc.beginPath(); hc.moveTo(0, yy); hc.lineTo(hv.width, yy); hc.stroke(); }
  }
  stream.dirty = false;
}

function setupStream() {
  $("s-connect").addEventListener("click", connectStream);
  $("s-reset").addEventListener("click", () => stream.ws && stream.ws.send(JSON.stringify({ type: "reset" })));
  for (const id of ["s-source", "s-example", "s-freq", "s-amp", "s-noise", "s-speed"]) $(id).addEventListener("input", sendConfig);
  document.querySelectorAll("#view-stream input[type=range]").forEach((el) => {
    const shown = document.createElement("span");
    shown.className = "value";
    const update = () => { shown.textContent = el.value; };
    el.after(shown);
    el.addEventListener("input", update);
    update();
  });
  $("s-hear").addEventListener("click", hear);
  $("s-aspeed").addEventListener("input", () => stream.ws && stream.ws.readyState === 1 &&
    stream.ws.send(JSON.stringify({ type: "config", speed: Number($("s-aspeed").value) })));
  $("s-type").addEventListener("input", (e) => {
    const text = e.data || "";
    if (text && stream.ws) stream.ws.send(JSON.stringify({ type: "text", text }));
  });
  let last = performance.now(), frames = 0;
  setInterval(() => {
    const now = performance.now();
    $("s-fps").textContent = stream.ws ? `${((lab.framesDrawn - frames) / ((now - last) / 1000)).toFixed(0)} frames/s drawn` : "";
    frames = lab.framesDrawn; last = now;
  }, 1000);
}

// --- step through -------------------------------------------------------------------------
async function stepThrough() {
  const run = $("p-run").value;
  if (!run) return toast("no run with a model yet: train one first");
  const r = await api("/api/inspect", { json: { run, analysis: "stepthrough", input: Number($("p-example").value),
    t: Number($("p-t").value), layer: Number($("p-layer").value), unit: Number($("p-unit").value) } });
  lab.stepped = r;
  renderStep(r);
}

function eqRow(name, equation, value, note, cls = "") {
  const shown = value === undefined || value === null ? "" : fmt(value, 5);
  return `<tr class="${cls}"><td>${esc(name)}</td><td class="eqn">${esc(equation)}</td>
    <td class="val" data-q="${esc(name)}">${shown}</td><td class="note">${esc(note || "")}</td></tr>`;
}

function renderStep(r) {
  // every quantity carries all units ("all"): switching the unit needs no new request
  const u = Number($("p-unit").value), q = r.quantities, at = (v) => v.all[u];
  const head = "<tr><th>quantity</th><th>equation</th><th>unit " + u + "</th><th>what it does</th></tr>";
  $("p-info").textContent = `${r.variant} (${r.family}), ${r.group}, step t = ${r.t} of ${r.steps} ` +
    `(reads ${JSON.stringify(r.step_label)}), unit ${u}`;
  let rows = eqRow("x", `the input: ${r.x.size} numbers, |x| = ${fmt(r.x.norm)}; first: ` +
    r.x.first.map((v) => fmt(v, 3)).join(", "), undefined, r.notes.x);
  for (const name of ["h_prev", "c_prev"]) if (q[name]) rows += eqRow(name, "from step t - 1", at(q[name]), r.notes[name]);
  for (const [name, equation] of Object.entries(r.equations)) {
    const v = q[name];
    if (!v) continue;
    if (v.pre) {
      const terms = Object.entries(v.pre).filter(([k]) => k !== "total")
        .map(([k, t], j) => `${j ? (at(t) < 0 ? "− " : "+ ") : ""}${fmt(j ? Math.abs(at(t)) : at(t), 4)} (${k})`).join(" ");
      rows += eqRow(`a_${name}`, `pre-activation = ${terms}`, at(v.pre.total), "", "pre");
    }
    rows += eqRow(name, equation, at(v), r.notes[name], "gate");
  }
  $("p-forward").innerHTML = head + rows;
  let back = "";
  if (r.backward) {
    back += eqRow("dh", "dL/dh_t: from the outputs and the steps after t", at(r.backward.dh), r.backward_note);
    if (r.backward.dc_next) back += eqRow("dc_next", "dL/dc_t carried back from step t + 1", at(r.backward.dc_next), "");
    for (const [name, equation] of Object.entries(r.backward_equations)) {
      if (r.backward[name]) back += eqRow(name, equation, at(r.backward[name]), "", "gate");
    }
  }
  $("p-backward").innerHTML = head + (back || eqRow("", "no gradient for this model", undefined, ""));
}

function setupStep() {
  $("p-go").addEventListener("click", stepThrough);
  $("p-prev").addEventListener("click", () => { $("p-t").value = Math.max(0, Number($("p-t").value) - 1); stepThrough(); });
  $("p-next").addEventListener("click", () => { $("p-t").value = Number($("p-t").value) + 1; stepThrough(); });
  $("p-unit").addEventListener("input", () => { if (lab.stepped) renderStep(lab.stepped); });
}

// --- start --------------------------------------------------------------------------------
async function start() {
  lab.meta = await api("/api/meta");
  $("r-root").textContent = `runs folder: ${lab.meta.root}`;
  await setupTrain();
  setupInspect();
  setupStream();
  setupStep();
  await refreshRuns();
  const view = location.hash.slice(1);
  if (["train", "runs", "inspect", "stream", "step"].includes(view)) show(view);
  lab.ready = true;
}
start();
