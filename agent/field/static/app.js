// Lichen Field: boards, what the phone carries, plots of public readings, and
// delivery to the cloud. Plain modules, no framework, no build step; every text
// goes in through text nodes, never as HTML.
"use strict";

import { all, put, remove } from "./store.js";
import { normalAddress, registerTransport } from "./transport.js";
// Transports beyond HTTP plug in here (transport.js: registerTransport). Web
// Bluetooth: boards added with the browser's chooser, kept as "ble:ID".
import { bleTransport, chooseBoard } from "./ble.js";
import { look, visit } from "./exchange.js";
import { cloudToken, lastUpload, setCloudToken, uploadAll } from "./cloud.js";
import { ago, clock, el, plot, plottable } from "./plot.js";

const byId = (id) => document.getElementById(id);
const short = (id) => (id ? id.slice(0, 12) + "…" : "");
const busy = new Set(); // addresses being visited now
const visits = new Map(); // address → visits ended since the page opened
const chosen = {}; // the field plotted, per series

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function bytes(n) {
  const units = ["B", "kB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function facts(pairs) {
  return el("dl", { class: "facts" }, ...pairs.flatMap(([k, v, cls]) => [el("dt", {}, k), el("dd", { class: cls }, v)]));
}

// ---------------------------------------------------------------- boards

function boardCard(board) {
  const info = board.info || {};
  const pending = info.pending;
  const visitButton = el("button", { type: "button", class: "visit", disabled: busy.has(board.address) }, busy.has(board.address) ? "Visiting…" : "Visit");
  visitButton.addEventListener("click", () => visitBoard(board.address));
  const removeButton = el("button", { type: "button", class: "quiet remove" }, "Remove");
  removeButton.addEventListener("click", async () => { await remove("boards", board.address); render(); });
  const last = board.last_visit;
  const status = board.error ? el("p", { class: "status bad" }, board.error)
    : last ? el("p", { class: "status ok" }, `${ago(last.at_ms)}: ${plural(last.bundles, "bundle")} collected, ${plural(last.handed, "receipt")} handed back`)
    : el("p", { class: "status muted" }, "not visited yet");
  return el("article", { class: "board", "data-address": board.address, "data-node": board.node_id,
                         "data-visits": visits.get(board.address) || 0 },
    el("h3", {}, board.name || board.address),
    el("div", { class: "mono muted" }, board.node_id ? `${board.fingerprint} · ${short(board.node_id)}` : "not reached yet"),
    facts([
      ["address", board.address],
      ["waiting", pending ? `${pending.entries} entries, ${bytes(pending.bytes)}` : "–", "pending"],
      ["sealed to", info.sealed_to ? short(info.sealed_to) : (board.node_id ? "no cloud" : "–")],
      ["public", info.public && info.public.length ? info.public.join(", ") : "none"],
      ["seen", ago(board.seen_ms)],
    ]),
    board.handover_error ? el("p", { class: "warn" }, board.handover_error) : "",
    status,
    el("div", { class: "row" }, visitButton, removeButton));
}

async function visitBoard(address) {
  if (busy.has(address)) return;
  busy.add(address);
  render();
  try {
    await visit(address);
  } catch (error) {
    const board = (await all("boards")).find((b) => b.address === address) || { address };
    await put("boards", { ...board, error: `${ago(Date.now())}: ${error.message}` });
  } finally {
    busy.delete(address);
    visits.set(address, (visits.get(address) || 0) + 1);
  }
  await render();
  if (navigator.onLine) deliver();
}

// ---------------------------------------------------------------- carried

function carriedRows(boards, bundles, receipts) {
  const rows = new Map();
  const row = (node, name) => {
    if (!rows.has(node)) rows.set(node, { node, name, bundles: 0, entries: 0, bytes: 0, oldest: null, receipts: 0 });
    const r = rows.get(node);
    r.name = r.name || name;
    return r;
  };
  for (const b of bundles) {
    const r = row(b.board, b.name);
    r.bundles += 1;
    r.entries += b.entries;
    r.bytes += b.size;
    r.oldest = r.oldest === null ? b.collected_ms : Math.min(r.oldest, b.collected_ms);
  }
  for (const receipt of receipts) row(receipt.board).receipts += 1;
  const names = new Map(boards.map((b) => [b.node_id, b.name]));
  return [...rows.values()].map((r) => ({ ...r, name: names.get(r.node) || r.name || short(r.node) }));
}

function renderCarrying(rows) {
  byId("carrying").tBodies[0].replaceChildren(...(rows.length ? rows.map((r) => el("tr", {
    "data-node": r.node, "data-bundles": r.bundles, "data-entries": r.entries, "data-bytes": r.bytes, "data-receipts": r.receipts },
    el("td", {}, r.name), el("td", { class: "num" }, r.bundles), el("td", { class: "num" }, bytes(r.bytes)),
    el("td", {}, r.oldest === null ? "–" : ago(r.oldest)), el("td", { class: "num" }, r.receipts)))
    : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "nothing: visit a board"))]));
  const status = byId("upload-status");
  status.textContent = lastUpload.error ? lastUpload.error
    : lastUpload.at_ms ? `${clock(lastUpload.at_ms)}: ${plural(lastUpload.delivered, "bundle")} delivered, ${plural(lastUpload.stored, "entry", "entries")} stored`
    : "";
  status.className = lastUpload.error ? "bad" : "muted";
  const total = rows.reduce((a, r) => ({ b: a.b + r.bundles, n: a.n + r.bytes, r: a.r + r.receipts }), { b: 0, n: 0, r: 0 });
  byId("summary").textContent = `carrying ${plural(total.b, "bundle")} (${bytes(total.n)}), ${plural(total.r, "receipt")}; no keys`;
}

// ----------------------------------------------------------------- plots

function seriesCard(series) {
  const key = `${series.board} ${series.collection}`;
  const fields = plottable(series.readings);
  if (!fields.includes(chosen[key])) chosen[key] = fields[0];
  const field = chosen[key];
  const last = series.readings[series.readings.length - 1];
  const buttons = fields.length > 1 ? fields.map((f) => {
    const b = el("button", { type: "button", "aria-pressed": String(f === field) }, f);
    b.addEventListener("click", () => { chosen[key] = f; render(); });
    return b;
  }) : [];
  return el("article", { class: "card series", "data-node": series.board, "data-collection": series.collection },
    el("h3", {}, `${series.name || short(series.board)} · ${series.collection}`),
    el("div", { class: "muted" }, last ? `latest ${clock(last.ts_ms)}: ` + Object.entries(last.values).map(([k, v]) => `${k} ${v}`).join(", ") : ""),
    el("div", { class: "fields" }, ...buttons),
    field ? plot(series.readings, field) : el("p", { class: "muted" }, "nothing to plot"));
}

// ---------------------------------------------------------------- render

let rendering = null;
let again = false;

export async function render() {
  if (rendering) { again = true; return rendering; }
  rendering = (async () => {
    do {
      again = false;
      const [boards, bundles, receipts, series] = await Promise.all(
        [all("boards"), all("bundles"), all("receipts"), all("readings")]);
      boards.sort((a, b) => (a.added_ms || 0) - (b.added_ms || 0));
      byId("boards").replaceChildren(...boards.map(boardCard));
      renderCarrying(carriedRows(boards, bundles, receipts));
      byId("plots").replaceChildren(...series.map(seriesCard));
      const online = navigator.onLine;
      byId("network").textContent = online ? "online" : "offline";
      byId("network").className = `pill ${online ? "ok" : "bad"}`;
    } while (again);
  })().finally(() => { rendering = null; });
  return rendering;
}

async function deliver() {
  await uploadAll();
  await render();
  if (lastUpload.needs_token) byId("token").focus();
}

// ---------------------------------------------------------------- wiring

byId("add").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = byId("add-error");
  error.hidden = true;
  let address;
  try {
    address = normalAddress(byId("address").value);
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
    return;
  }
  byId("address").value = "";
  try {
    await look(address);
  } catch (e) {
    await put("boards", { address, added_ms: Date.now(), error: `not reached: ${e.message}` });
  }
  render();
});
registerTransport("ble", bleTransport);
byId("add-ble").hidden = !navigator.bluetooth;
byId("add-ble").addEventListener("click", async () => {
  const error = byId("add-error");
  error.hidden = true;
  let address;
  try {
    address = `ble:${await chooseBoard()}`; // the click is the gesture the chooser needs
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
    return;
  }
  try {
    await look(address);
  } catch (e) {
    await put("boards", { address, added_ms: Date.now(), error: `not reached: ${e.message}` });
  }
  render();
});
byId("upload").addEventListener("click", deliver);
byId("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setCloudToken(byId("token").value);
  byId("token").value = "";
  byId("token").placeholder = cloudToken() ? "token saved (type to replace)" : "access token (if the cloud needs one)";
  deliver();
});
byId("cloud-url").textContent = new URL("../v1/bundles", location.href).href;
if (cloudToken()) byId("token").placeholder = "token saved (type to replace)";
window.addEventListener("online", deliver);
window.addEventListener("offline", render);

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("sw.js").then(() => navigator.serviceWorker.ready).then(() => {
    byId("footer").textContent += " Works offline.";
  }).catch((e) => { byId("footer").textContent += ` No offline copy: ${e.message}`; });
}
render().then(() => { if (navigator.onLine) deliver(); });
