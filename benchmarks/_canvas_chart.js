// ANCHOR for benchmarks/bench_chart.py: the hand-written canvas chart that LiveChart used
// before the uPlot chart module (jupyter_ext/widgets/chart.js at commit 8fe0b8f), kept
// unchanged so each run measures the new chart against it on the same machine.
// LiveChart's front end: small multiples drawn on <canvas>, fed by custom messages.
// Plain ES module, no imports: it must run offline with no build step.
//
// Protocol (kernel -> view, every message carries a sequence number `seq`):
//   snapshot {series: [{id, n}]}  buffers x0, y0, x1, y1, ... (float64): replaces all data
//   append   {series: [{id, n}]}  buffers as above: only new points
//   replace  {id}                 buffers x, y: one whole series
//   remove   {id};  clear {}
// view -> kernel: {type: "snapshot"} when a view starts. Until its snapshot arrives a view
// ignores everything else (the snapshot already contains it), then drops older seqs.

const MARGIN = { left: 58, right: 14, top: 10, bottom: 24 };

function f64(dv) {
  // DataView offsets need not be 8-aligned, so copy rather than view.
  return new Float64Array(dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength));
}

class Line {
  constructor() {
    this.x = new Float64Array(256);
    this.y = new Float64Array(256);
    this.n = 0;
    this.sorted = true;
  }
  push(xs, ys) {
    const need = this.n + xs.length;
    if (need > this.x.length) {
      let cap = this.x.length;
      while (cap < need) cap *= 2;
      const nx = new Float64Array(cap);
      const ny = new Float64Array(cap);
      nx.set(this.x.subarray(0, this.n));
      ny.set(this.y.subarray(0, this.n));
      this.x = nx;
      this.y = ny;
    }
    let prev = this.n ? this.x[this.n - 1] : -Infinity;
    for (let i = 0; i < xs.length; i++) {
      if (xs[i] < prev) this.sorted = false;
      if (xs[i] === xs[i]) prev = xs[i];
    }
    this.x.set(xs, this.n);
    this.y.set(ys, this.n);
    this.n = need;
  }
}

function ema(ys, n, w) {
  // Debiased EMA as TensorBoard draws it; non-finite values pass through untouched.
  const out = new Float64Array(n);
  let acc = 0;
  let norm = 0;
  for (let i = 0; i < n; i++) {
    const v = ys[i];
    if (!Number.isFinite(v)) {
      out[i] = v;
      continue;
    }
    acc = acc * w + (1 - w) * v;
    norm = norm * w + (1 - w);
    out[i] = acc / norm;
  }
  return out;
}

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / mag;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

function ticks(lo, hi, count) {
  const step = niceStep(hi - lo, count);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

function fmtNum(v) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a < 1e-3) return v.toExponential(1);
  return `${+v.toPrecision(4)}`;
}

function fmtX(v, kind) {
  if (kind === "time") {
    const d = new Date(v * 1000);
    const p = (k) => String(k).padStart(2, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }
  if (kind === "duration") {
    const s = Math.round(v);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
  }
  return fmtNum(v);
}

const CSS = `
.jupyter-ext-chart { font: 12px var(--jp-ui-font-family, sans-serif);
  color: var(--jp-ui-font-color1, #222); width: 100%; }
.jupyter-ext-chart .jxc-grid { display: grid; gap: 10px;
  grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); }
.jupyter-ext-chart .jxc-panel { position: relative; min-width: 0; }
.jupyter-ext-chart .jxc-title { font-weight: 600; margin: 2px 0 2px 4px; }
.jupyter-ext-chart canvas { display: block; width: 100%; }
.jupyter-ext-chart .jxc-legend { display: flex; flex-wrap: wrap; gap: 2px 10px; margin: 2px 4px; }
.jupyter-ext-chart .jxc-swatch { display: inline-block; width: 14px; height: 3px;
  vertical-align: middle; margin-right: 4px; }
.jupyter-ext-chart .jxc-note { color: var(--jp-ui-font-color2, #777); margin: 0 4px;
  font-size: 11px; }
.jupyter-ext-chart .jxc-tip { position: absolute; pointer-events: none; display: none;
  background: var(--jp-layout-color0, #fff); border: 1px solid var(--jp-border-color1, #bbb);
  padding: 3px 6px; font-size: 11px; white-space: nowrap; z-index: 10; }
`;

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "jupyter-ext-chart";
  root.setAttribute("data-points", "0");
  const style = document.createElement("style");
  style.textContent = CSS;
  root.appendChild(style);
  const grid = document.createElement("div");
  grid.className = "jxc-grid";
  root.appendChild(grid);
  el.appendChild(root);

  const lines = new Map(); // series id -> Line
  const panels = new Map(); // panel name -> {div, title, canvas, legend, note, tip, geom}
  let seq = null; // null until this view's snapshot arrives
  let pending = false;

  function countPoints() {
    let total = 0;
    for (const l of lines.values()) total += l.n;
    root.setAttribute("data-points", String(total));
  }

  function ingest(content, buffers) {
    content.series.forEach((s, i) => {
      if (!lines.has(s.id)) lines.set(s.id, new Line());
      lines.get(s.id).push(f64(buffers[2 * i]), f64(buffers[2 * i + 1]));
    });
  }

  function onMsg(content, buffers) {
    if (!content || typeof content.seq !== "number") return;
    if (content.type === "snapshot") {
      lines.clear();
      ingest(content, buffers);
      seq = content.seq;
    } else if (seq === null || content.seq <= seq) {
      return;
    } else {
      seq = content.seq;
      if (content.type === "append") {
        ingest(content, buffers);
      } else if (content.type === "replace") {
        const l = new Line();
        l.push(f64(buffers[0]), f64(buffers[1]));
        lines.set(content.id, l);
      } else if (content.type === "remove") {
        lines.delete(content.id);
      } else if (content.type === "clear") {
        lines.clear();
      }
    }
    countPoints();
    schedule();
  }

  function panelOrder() {
    const order = [...model.get("panels")];
    for (const s of model.get("series")) if (!order.includes(s.panel)) order.push(s.panel);
    return order;
  }

  function layout() {
    const order = panelOrder();
    for (const [name, p] of panels) {
      if (!order.includes(name)) {
        p.div.remove();
        panels.delete(name);
      }
    }
    for (const name of order) {
      let p = panels.get(name);
      if (!p) {
        p = { div: document.createElement("div"), geom: null };
        p.div.className = "jxc-panel";
        p.div.setAttribute("data-panel", name);
        p.title = document.createElement("div");
        p.title.className = "jxc-title";
        p.title.textContent = name;
        p.canvas = document.createElement("canvas");
        p.legend = document.createElement("div");
        p.legend.className = "jxc-legend";
        p.note = document.createElement("div");
        p.note.className = "jxc-note";
        p.tip = document.createElement("div");
        p.tip.className = "jxc-tip";
        p.div.append(p.title, p.canvas, p.legend, p.note, p.tip);
        p.canvas.addEventListener("mousemove", (ev) => hover(name, ev));
        p.canvas.addEventListener("mouseleave", () => {
          p.tip.style.display = "none";
        });
        panels.set(name, p);
      }
      grid.appendChild(p.div); // (re)appending keeps DOM order equal to panel order
    }
  }

  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  }

  function draw() {
    layout();
    const metas = model.get("series");
    const notes = model.get("notes") || {};
    for (const [name, p] of panels) {
      const mine = metas.filter((m) => m.panel === name);
      drawPanel(p, mine);
      p.legend.replaceChildren(
        ...mine.map((m) => {
          const item = document.createElement("span");
          const sw = document.createElement("span");
          sw.className = "jxc-swatch";
          sw.style.background = m.color;
          item.append(sw, document.createTextNode(m.label));
          return item;
        }),
      );
      const parts = [];
      const bad = mine.reduce((a, m) => a + (m.nonfinite || 0), 0);
      if (bad) parts.push(`${bad} non-finite value${bad > 1 ? "s" : ""} (NaN/inf) not drawn`);
      if (notes[name]) parts.push(notes[name]);
      p.note.textContent = parts.join(" · ");
    }
  }

  function drawPanel(p, metas) {
    const canvas = p.canvas;
    const width = Math.max(200, canvas.clientWidth || grid.clientWidth || 400);
    const height = model.get("height");
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
      canvas.style.height = `${height}px`;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const ink = getComputedStyle(root).color || "#222";
    const logY = model.get("log_y");
    const w = model.get("smoothing");
    const xKind = model.get("x_format");

    const shown = [];
    let x0 = Infinity;
    let x1 = -Infinity;
    let y0 = Infinity;
    let y1 = -Infinity;
    for (const m of metas) {
      const l = lines.get(m.id);
      if (!l || !l.n) continue;
      const smooth = w > 0 ? ema(l.y, l.n, w) : null;
      shown.push({ m, l, smooth });
      for (let i = 0; i < l.n; i++) {
        const x = l.x[i];
        const y = l.y[i];
        if (!Number.isFinite(x) || !Number.isFinite(y) || (logY && y <= 0)) continue;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
    const pw = width - MARGIN.left - MARGIN.right;
    const ph = height - MARGIN.top - MARGIN.bottom;
    ctx.strokeStyle = ink;
    ctx.fillStyle = ink;
    ctx.font = "11px sans-serif";
    if (!(x1 >= x0)) {
      ctx.textAlign = "center";
      ctx.fillText("no data yet", width / 2, height / 2);
      p.geom = null;
      return;
    }
    if (x1 === x0) {
      x0 -= 1;
      x1 += 1;
    }
    const ty = logY ? Math.log10 : (v) => v;
    let ly0 = ty(y0);
    let ly1 = ty(y1);
    if (ly1 === ly0) {
      const d = Math.abs(ly0) * 0.1 || 1;
      ly0 -= d;
      ly1 += d;
    }
    const pad = (ly1 - ly0) * 0.05;
    ly0 -= pad;
    ly1 += pad;
    const X = (x) => MARGIN.left + ((x - x0) / (x1 - x0)) * pw;
    const Y = (y) => MARGIN.top + (1 - (ty(y) - ly0) / (ly1 - ly0)) * ph;
    p.geom = { x0, x1, pw, shown, xKind };

    // axes, grid and ticks
    ctx.globalAlpha = 0.15;
    ctx.lineWidth = 1;
    ctx.beginPath();
    let yt;
    if (logY) {
      const step = Math.max(1, Math.ceil((Math.floor(ly1) - Math.ceil(ly0) + 1) / 6));
      yt = [];
      for (let e = Math.ceil(ly0); e <= Math.floor(ly1); e += step) yt.push(Math.pow(10, e));
      if (yt.length < 2) {
        // Less than a decade shown: evenly spaced round values read better than 10^x.
        yt = ticks(Math.pow(10, ly0), Math.pow(10, ly1), 4).filter((v) => v > 0);
      }
    } else {
      yt = ticks(ly0, ly1, Math.max(2, Math.floor(ph / 40)));
    }
    const xt = ticks(x0, x1, Math.max(2, Math.floor(pw / 90)));
    for (const v of yt) {
      ctx.moveTo(MARGIN.left, Y(v) + 0.5);
      ctx.lineTo(MARGIN.left + pw, Y(v) + 0.5);
    }
    for (const v of xt) {
      ctx.moveTo(X(v) + 0.5, MARGIN.top);
      ctx.lineTo(X(v) + 0.5, MARGIN.top + ph);
    }
    ctx.stroke();
    ctx.globalAlpha = 0.6;
    ctx.strokeRect(MARGIN.left + 0.5, MARGIN.top + 0.5, pw, ph);
    ctx.globalAlpha = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const v of yt) ctx.fillText(fmtNum(v), MARGIN.left - 4, Y(v));
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const v of xt) ctx.fillText(fmtX(v, xKind), X(v), MARGIN.top + ph + 4);
    ctx.textAlign = "right";
    ctx.textBaseline = "bottom";
    ctx.globalAlpha = 0.7;
    ctx.fillText(model.get("x_label"), MARGIN.left + pw, MARGIN.top + ph - 2);
    ctx.globalAlpha = 1;

    ctx.save();
    ctx.beginPath();
    ctx.rect(MARGIN.left, MARGIN.top, pw, ph);
    ctx.clip();
    for (const { m, l, smooth } of shown) {
      ctx.strokeStyle = m.color;
      ctx.fillStyle = m.color;
      ctx.lineWidth = 1.5;
      ctx.globalAlpha = smooth ? 0.25 : 1;
      stroke(ctx, l.x, l.y, l.n, X, Y, logY);
      if (smooth) {
        ctx.globalAlpha = 1;
        stroke(ctx, l.x, smooth, l.n, X, Y, logY);
      }
      if (l.n <= 40) dots(ctx, l.x, smooth || l.y, l.n, X, Y, logY);
    }
    ctx.restore();
    ctx.globalAlpha = 1;
  }

  function stroke(ctx, xs, ys, n, X, Y, logY) {
    // Min/max per pixel column: at most four vertices per column, so 1M points draw fast.
    ctx.beginPath();
    let col = null;
    let first = 0;
    let lo = 0;
    let hi = 0;
    let last = 0;
    let pen = false;
    const flush = () => {
      if (col === null) return;
      if (pen) ctx.lineTo(col, first);
      else ctx.moveTo(col, first);
      pen = true;
      if (lo !== first) ctx.lineTo(col, lo);
      if (hi !== lo) ctx.lineTo(col, hi);
      if (last !== hi) ctx.lineTo(col, last);
      col = null;
    };
    for (let i = 0; i < n; i++) {
      const x = xs[i];
      const y = ys[i];
      if (!Number.isFinite(x) || !Number.isFinite(y) || (logY && y <= 0)) {
        flush();
        pen = false; // a gap: NaN/inf are skipped, not joined across
        continue;
      }
      const c = Math.round(X(x));
      const py = Y(y);
      if (c !== col) {
        flush();
        col = c;
        first = lo = hi = last = py;
      } else {
        if (py < lo) lo = py;
        if (py > hi) hi = py;
        last = py;
      }
    }
    flush();
    ctx.stroke();
  }

  function dots(ctx, xs, ys, n, X, Y, logY) {
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(xs[i]) || !Number.isFinite(ys[i]) || (logY && ys[i] <= 0)) continue;
      ctx.beginPath();
      ctx.arc(X(xs[i]), Y(ys[i]), 2.2, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  function nearest(l, x) {
    if (!l.sorted) return -1;
    let a = 0;
    let b = l.n - 1;
    while (b - a > 1) {
      const mid = (a + b) >> 1;
      if (l.x[mid] < x) a = mid;
      else b = mid;
    }
    return Math.abs(l.x[a] - x) <= Math.abs(l.x[b] - x) ? a : b;
  }

  function hover(name, ev) {
    const p = panels.get(name);
    if (!p || !p.geom) return;
    const { x0, x1, pw, shown, xKind } = p.geom;
    const rect = p.canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left;
    const x = x0 + ((px - MARGIN.left) / pw) * (x1 - x0);
    const rows = [];
    let at = null;
    for (const { m, l, smooth } of shown) {
      const i = nearest(l, x);
      if (i < 0) continue;
      at = at === null ? l.x[i] : at;
      const v = (smooth || l.y)[i];
      rows.push(`<span style="color:${m.color}">■</span> ${escape(m.label)}: ${fmtNum(v)}`);
    }
    if (!rows.length) {
      p.tip.style.display = "none";
      return;
    }
    const head = `${escape(model.get("x_label"))} ${fmtX(at, xKind)}`;
    p.tip.innerHTML = [head, ...rows].join("<br>");
    p.tip.style.display = "block";
    p.tip.style.left = `${Math.min(px + 12, rect.width - 160)}px`;
    p.tip.style.top = `${ev.clientY - rect.top + 24}px`;
  }

  function escape(s) {
    return String(s).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  const onChange = () => schedule();
  const traits = ["panels", "series", "notes", "log_y", "smoothing", "height", "x_label"];
  const events = [...traits, "x_format"].map((t) => `change:${t}`).join(" ");
  model.on("msg:custom", onMsg);
  model.on(events, onChange);
  const resize = new ResizeObserver(() => schedule());
  resize.observe(grid);
  layout();
  schedule();
  model.send({ type: "snapshot" });
  return () => {
    resize.disconnect();
    model.off("msg:custom", onMsg);
    model.off(events, onChange);
  };
}

export default { render };
