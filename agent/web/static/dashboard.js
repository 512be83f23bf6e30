// The board's dashboard: the status snapshot and the newest readings, kept live
// by the server's event stream (/api/events). No framework, no build step; every
// text goes in through textContent, never as HTML.
"use strict";

const LIMIT = 120; // points per plot
const SVG = "http://www.w3.org/2000/svg";
const state = { status: null, series: {}, field: {}, loading: {}, again: {} };

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
                                      : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

const byId = (id) => document.getElementById(id);
const short = (id) => (id ? id.slice(0, 12) + "…" : "");
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

function ago(ms, now) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function show(value, spec) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number" && spec && spec.resolution && spec.resolution < 1) {
    value = value.toFixed(Math.round(-Math.log10(spec.resolution)));
  }
  return spec && spec.unit && spec.unit !== "1" ? `${value} ${spec.unit}` : String(value);
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// ---------------------------------------------------------------- the plot

function plot(series, field) {
  const W = 320, H = 140, L = 42, R = 8, T = 8, B = 20;
  const points = series.readings
    .map((r) => ({ t: r.ts_ms, raw: r.values[field] }))
    .filter((p) => typeof p.raw === "number" || typeof p.raw === "boolean")
    .map((p) => ({ t: p.t, raw: p.raw, v: Number(p.raw) }));
  const svg = el("svg:svg", { class: "plot", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${field}, ${points.length} readings`, "data-field": field });
  svg.append(el("svg:line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  if (!points.length) {
    svg.append(el("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no readings yet"));
    return svg;
  }
  let lo = Math.min(...points.map((p) => p.v)), hi = Math.max(...points.map((p) => p.v));
  if (lo === hi) { lo -= 1; hi += 1; }
  const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, t0 + 1);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const spec = series.fields[field] || {};
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
    dot.append(el("svg:title", {}, `${clock(p.t)}  ${show(p.raw, spec)}`));
    svg.append(dot);
  }
  return svg;
}

// ------------------------------------------------------------- readings

function plottable(series) {
  const last = series.readings[series.readings.length - 1];
  const names = Object.keys(series.fields).length ? Object.keys(series.fields)
                                                   : Object.keys(last ? last.values : {});
  return names.filter((f) => series.readings.some((r) =>
    typeof r.values[f] === "number" || typeof r.values[f] === "boolean"));
}

function sensorCard(sensor) {
  const id = `sensor-${sensor.name}`;
  let card = byId(id);
  if (!card) {
    card = el("article", { class: "card sensor", id, "data-collection": sensor.collection });
    card.append(el("div", { class: "sensor-head" }, el("h3", {}, sensor.name),
                   el("span", { class: "pill state" })),
                el("div", { class: "latest" }), el("div", { class: "fields" }),
                el("div", { class: "chart" }));
    byId("readings").append(card);
  }
  return card;
}

function drawSeries(collection) {
  const card = document.querySelector(`article.sensor[data-collection="${CSS.escape(collection)}"]`);
  const series = state.series[collection];
  if (!card || !series) return;
  const last = series.readings[series.readings.length - 1];
  const latest = card.querySelector(".latest");
  latest.replaceChildren(...(last ? Object.entries(last.values).map(([k, v]) =>
    el("span", { "data-field": k }, `${k} `, el("b", {}, show(v, series.fields[k])))) : []));
  const fields = plottable(series);
  let field = state.field[collection];
  if (!fields.includes(field)) field = state.field[collection] = fields[0];
  const buttons = card.querySelector(".fields");
  buttons.replaceChildren(...(fields.length > 1 ? fields.map((f) => {
    const b = el("button", { type: "button", "aria-pressed": String(f === field) }, f);
    b.addEventListener("click", () => { state.field[collection] = f; drawSeries(collection); });
    return b;
  }) : []));
  card.querySelector(".chart").replaceChildren(field ? plot(series, field) : el("p", { class: "muted" }, "nothing to plot"));
}

async function loadReadings(collection) {
  if (state.loading[collection]) { state.again[collection] = true; return; }
  state.loading[collection] = true;
  try {
    do {
      state.again[collection] = false;
      const known = state.series[collection];
      const newest = known && known.readings.length ? known.readings[known.readings.length - 1].ts_ms : null;
      const after = newest === null ? "" : `&after=${newest}`;
      const answer = await getJSON(`/api/readings?collection=${encodeURIComponent(collection)}&limit=${LIMIT}${after}`);
      const series = state.series[collection] || (state.series[collection] = { fields: {}, readings: [] });
      series.fields = answer.fields;
      series.readings = series.readings.concat(answer.readings).slice(-LIMIT);
      drawSeries(collection);
    } while (state.again[collection]);
  } finally {
    state.loading[collection] = false;
  }
}

// --------------------------------------------------------------- status

function facts(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v, cls]) => [el("dt", {}, k), el("dd", { class: cls }, v)]));
}

function render(view) {
  const status = view.status;
  const now = view.now_ms;
  byId("name").textContent = view.node.name || "Lichen";
  byId("node").textContent = view.node.id;
  document.title = `${view.node.name || "Lichen"} · Lichen`;
  if (!status) return;
  const tbody = byId("sensors").tBodies[0];
  tbody.replaceChildren(...status.sensors.map((s) => {
    const card = sensorCard(s);
    const badge = card.querySelector(".state");
    badge.textContent = s.state;
    badge.className = `pill state ${s.state === "running" ? "ok" : "bad"}`;
    if (!state.series[s.collection]) loadReadings(s.collection);
    const error = s.last_sample_error || s.last_error;
    return el("tr", { "data-sensor": s.name },
      el("td", {}, s.name, error ? el("div", { class: "error bad" }, error) : ""),
      el("td", { class: s.state === "running" ? "ok" : "bad" }, s.state),
      el("td", { class: "num" }, s.readings),
      el("td", { class: `num ${s.sample_errors ? "bad" : ""}` }, s.sample_errors),
      el("td", { class: `num ${s.restarts ? "warn" : ""}` }, s.restarts));
  }));
  const sync = status.sync;
  facts(byId("sync"), sync ? [
    ["sessions", `${sync.sessions.length} open, ${sync.sessions_completed} completed, ${sync.sessions_failed} failed`],
    ["last sync", ago(sync.last_sync_ms, now)],
    ["listening", sync.transports.map((t) => `${t.name} ${t.state}`).join(", ") || "–"],
  ] : [["gossip", "no transport configured"]]);
  byId("peers").tBodies[0].replaceChildren(...view.peers.map((p) => el("tr", {},
    el("td", { class: "mono", title: p.node }, short(p.node)),
    el("td", { class: p.last_sync_ok === false ? "bad" : "" },
       ago(p.last_sync_ms, now) + (p.last_sync_ok === false ? " (failed)" : "")),
    el("td", { class: "num" }, `${p.entries_received} / ${p.entries_sent}`))));
  const up = status.uplink;
  const backlog = (up && up.backlog) || {};
  facts(byId("uplink"), up ? [
    ["link", up.uplinks.length ? up.uplinks.map((u) => `${u.name} ${u.connected ? "connected" : "down"}`).join(", ")
                               : "none configured", up.connected ? "ok" : ""],
    ["backlog", `${backlog.entries || 0} entries, ${bytes(backlog.bytes || 0)}`],
    ["oldest unacked", backlog.oldest_unacked_age_s === null || backlog.oldest_unacked_age_s === undefined
      ? "–" : `${backlog.oldest_unacked_age_s} s`],
    ["last ack", up.last_ack ? `${short(up.last_ack.feed)} seq ${up.last_ack.seq}, ${ago(up.last_ack.at_ms, now)}` : "never"],
  ] : [["uplink", "–"]]);
  const log = status.log;
  const dropped = (up && up.dropped) || {};
  const disk = view.disk;
  facts(byId("storage"), [
    ["log", `${log.entries} entries, ${bytes(log.bytes)}`],
    ["readings", `${log.readings_stored} stored, ${log.readings_pending} pending`],
    ["dropped", `${log.readings_dropped} readings; ${dropped.entries || 0} entries by quota`,
     log.readings_dropped || dropped.entries ? "warn" : ""],
    ["write errors", log.write_errors ? `${log.write_errors}: ${log.last_write_error}` : "0", log.write_errors ? "bad" : ""],
    ["disk", disk ? `${bytes(disk.free)} free of ${bytes(disk.total)}` : "–"],
  ]);
  if (disk && disk.total) byId("disk-bar").firstElementChild.style.width = `${(100 * (disk.total - disk.free) / disk.total).toFixed(1)}%`;
  byId("footer").textContent = `status of ${clock(status.updated_at_ms)} · agent pid ${status.pid}`;
}

// ------------------------------------------------------------------ live

function live() {
  const pill = byId("live");
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => { pill.textContent = "live"; pill.className = "pill ok"; });
  events.addEventListener("error", () => { pill.textContent = "reconnecting…"; pill.className = "pill bad"; });
  events.addEventListener("status", (e) => render(JSON.parse(e.data)));
  events.addEventListener("readings", (e) => {
    for (const r of JSON.parse(e.data)) {
      if (state.series[r.collection]) loadReadings(r.collection);
    }
  });
}

getJSON("/api/status").then(render).catch((e) => { byId("live").textContent = String(e); });
live();
