// The board's dashboard: the status snapshot and the newest readings, kept live
// by the server's event stream (/api/events). No framework, no build step; every
// text goes in through textContent, never as HTML.
import { ago, clock, el, plot } from "./plot.js";

const LIMIT = 120; // points per plot
const state = { status: null, series: {}, field: {}, loading: {}, again: {} };

const byId = (id) => document.getElementById(id);
const short = (id) => (id ? id.slice(0, 12) + "…" : "");

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
  card.querySelector(".chart").replaceChildren(field ? plot(series.readings, field, { empty: "no readings yet", label: (raw) => show(raw, series.fields[field] || {}) }) : el("p", { class: "muted" }, "nothing to plot"));
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
