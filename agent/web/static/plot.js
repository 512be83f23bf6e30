// The plot of one field of a series of readings: a hand-written SVG, shared by
// the board's dashboard (served as /static/plot.js) and Lichen Field (served by
// the cloud as /field/plot.js). Every text goes in through text nodes, never as
// HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

export function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
                                      : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

export const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

// How long ago `ms` was, in the largest unit that keeps the number small.
export function ago(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

// The fields of `readings` that have numbers (or booleans) to plot.
export function plottable(readings) {
  const names = new Set(readings.flatMap((r) => Object.keys(r.values)));
  return [...names].filter((f) => readings.some((r) =>
    typeof r.values[f] === "number" || typeof r.values[f] === "boolean")).sort();
}

// `empty`: the text of a plot without points; `label(raw)`: a point's value as
// its tooltip shows it (with its unit, say).
export function plot(readings, field, { empty = "no readings", label = String } = {}) {
  const W = 320, H = 140, L = 42, R = 8, T = 8, B = 20;
  const points = readings
    .map((r) => ({ t: r.ts_ms, raw: r.values[field] }))
    .filter((p) => typeof p.raw === "number" || typeof p.raw === "boolean")
    .map((p) => ({ t: p.t, raw: p.raw, v: Number(p.raw) }));
  const svg = el("svg:svg", { class: "plot", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${field}, ${points.length} readings`, "data-field": field });
  svg.append(el("svg:line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  if (!points.length) {
    svg.append(el("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, empty));
    return svg;
  }
  let lo = Math.min(...points.map((p) => p.v)), hi = Math.max(...points.map((p) => p.v));
  if (lo === hi) { lo -= 1; hi += 1; }
  const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, t0 + 1);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  for (const v of [lo, (lo + hi) / 2, hi]) {
    svg.append(el("svg:line", { class: "axis", x1: L, y1: y(v), x2: W - R, y2: y(v), "stroke-dasharray": "2 3" }));
    svg.append(el("svg:text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, +v.toPrecision(4)));
  }
  svg.append(el("svg:text", { x: L, y: H - 6 }, clock(t0)));
  svg.append(el("svg:text", { x: W - R, y: H - 6, "text-anchor": "end" }, clock(t1)));
  const stepped = typeof points[0].raw === "boolean";
  let d = "";
  points.forEach((p, i) => {
    if (i && stepped) d += `H${x(p.t).toFixed(1)}`;
    d += `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
  });
  svg.append(el("svg:path", { class: "line", d }));
  for (const p of points) {
    const dot = el("svg:circle", { class: "pt", cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1),
      r: 1.8, "data-ts": p.t, "data-v": p.v });
    dot.append(el("svg:title", {}, `${clock(p.t)}  ${label(p.raw)}`));
    svg.append(dot);
  }
  return svg;
}
