// A visit to a board over the mule exchange (docs/field.md#endpoints), through
// whatever transport its address names (transport.js):
//
//   1. GET /mule/v1/info             who it is, what is waiting for this phone
//   2. POST /mule/v1/handover        each receipt the cloud gave for it; dropped once taken
//   3. GET /mule/v1/bundle?since=…   sealed bundles until Lichen-Complete: 1, each kept
//                                    with its cursor in one transaction (store.js)
//   4. the same with public=1        readings of the public collections, for the plots
//   5. GET /mule/v1/info again       what is left
//
// A contact that breaks stops the visit; the next one resumes from the cursors kept.
"use strict";

import { byBoard, keepBundle, keepReadings, one, put, remove } from "./store.js";
import { transportFor } from "./transport.js";
import { publicReadings } from "./bundle.js";

export const BUDGET = 1 << 20; // bytes a bundle: a few seconds over Wi-Fi
// A slow link may ask for smaller bundles (from 4096 bytes): less is lost when it breaks.
export const budget = () => Number(localStorage.getItem("lichen-field-budget")) || BUDGET;
export const KEEP_READINGS = 240; // per public collection

const text = (buffer) => new TextDecoder().decode(buffer);

function answer(path, response) {
  let value = {};
  try { value = JSON.parse(text(response.body)); } catch { /* not JSON: say the status */ }
  if (response.status !== 200) {
    const error = new Error(`${path.split("?")[0]}: ${response.status} ${value.error || ""}`.trim());
    error.status = response.status;
    throw error;
  }
  return value;
}

async function info(transport, board) {
  const since = board.cursor ? `?since=${encodeURIComponent(board.cursor)}` : "";
  const path = `/mule/v1/info${since}`;
  return answer(path, await transport.request("GET", path));
}

// The board at `address` as the phone knows it (a new record if it knows none).
export async function boardAt(address) {
  return (await one("boards", address)) || { address, added_ms: Date.now() };
}

async function handBack(transport, board) {
  let handed = 0;
  for (const receipt of await byBoard("receipts", board.node_id)) {
    const path = "/mule/v1/handover";
    const response = await transport.request("POST", path, receipt.handover);
    if (response.status === 400 || response.status === 403) {
      // refused for good (not a cloud this board accepts, …): the board keeps its
      // data until a receipt comes by another path; keeping this one helps no one
      await remove("receipts", receipt.id);
      try { answer(path, response); } catch (error) { board.handover_error = error.message; }
      await put("boards", board);
      continue;
    }
    answer(path, response); // 413, 429, 503: keep it, try on the next visit
    await remove("receipts", receipt.id);
    handed += 1;
  }
  return handed;
}

async function collect(transport, address, isPublic, budget) {
  const key = isPublic ? "public_cursor" : "cursor";
  let bundles = 0;
  for (;;) {
    const board = await boardAt(address);
    const query = new URLSearchParams({ budget: String(budget) });
    if (board[key]) query.set("since", board[key]);
    if (isPublic) query.set("public", "1");
    const path = `/mule/v1/bundle?${query}`;
    const response = await transport.request("GET", path);
    if (response.status !== 200) answer(path, response);
    const cursor = response.headers["lichen-cursor"];
    const entries = Number(response.headers["lichen-entries"] || 0);
    if (!cursor) throw new Error(`${path}: the board sent no Lichen-Cursor`);
    if (isPublic) {
      const series = entries ? publicReadings(response.body) : new Map();
      await keepReadings(board, key, cursor, series, KEEP_READINGS);
    } else {
      const meta = entries ? { board: board.node_id, address, name: board.name,
                               size: response.body.byteLength, entries, collected_ms: Date.now(),
                               sealed_to: response.headers["lichen-sealed-to"] || null } : null;
      await keepBundle(board, key, cursor, meta, response.body);
      bundles += entries ? 1 : 0;
    }
    if (response.headers["lichen-complete"] === "1") return bundles;
  }
}

// One visit; resolves with what it did, rejects with the first failure (what was
// kept before it stays kept).
export async function visit(address) {
  const transport = transportFor(address);
  let board = await boardAt(address);
  const first = await info(transport, board);
  if (board.node_id && board.node_id !== first.node_id) {
    throw new Error(`${address} is now ${first.name || first.node_id}, not ${board.name || board.node_id}: remove it and add it again`);
  }
  board = { ...board, node_id: first.node_id, name: first.name, fingerprint: first.fingerprint,
            info: first, seen_ms: Date.now(), error: null };
  await put("boards", board);
  const handed = await handBack(transport, board);
  const size = transport.budget || budget(); // a transport may ask for smaller bundles (BLE)
  const bundles = first.sealed_to ? await collect(transport, address, false, size) : 0;
  if (first.public && first.public.length) await collect(transport, address, true, size);
  board = await boardAt(address);
  board.info = await info(transport, board);
  board.seen_ms = Date.now();
  board.last_visit = { handed, bundles, at_ms: Date.now() };
  await put("boards", board);
  return board.last_visit;
}

// Only the board's info (when it is added): nothing collected yet.
export async function look(address) {
  const transport = transportFor(address);
  const board = await boardAt(address);
  const found = await info(transport, board);
  const known = { ...board, node_id: found.node_id, name: found.name, fingerprint: found.fingerprint,
                  info: found, seen_ms: Date.now(), error: null };
  await put("boards", known);
  return known;
}
