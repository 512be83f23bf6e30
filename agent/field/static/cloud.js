// Delivery to the cloud that serves this app: each bundle the phone carries is
// POSTed to /v1/bundles as soon as the phone is online, kept until the cloud
// answered 200, and the receipts of that answer kept for the board
// (docs/field.md#after-the-visit-the-cloud). The cloud's API may need its access
// token (Authorization: Bearer); the technician pastes it once, and it is kept
// in this browser's storage for this origin: an access token, not a key.
"use strict";

import { all, bundleDelivered, one, put } from "./store.js";

const TOKEN = "lichen-field-token";
const API = new URL("../v1/bundles", location.href); // the cloud serves this app at /field/

export const cloudToken = () => localStorage.getItem(TOKEN) || "";

export function setCloudToken(token) {
  if (token) localStorage.setItem(TOKEN, token.trim());
  else localStorage.removeItem(TOKEN);
}

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

async function post(bytes) {
  const headers = { "content-type": "application/vnd.lichen.bundle" };
  const token = cloudToken();
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(API, { method: "POST", body: bytes, headers, cache: "no-store",
                                      credentials: "same-origin" });
  let value = {};
  try { value = await response.json(); } catch { /* say the status */ }
  return { status: response.status, value };
}

// What the last delivery did, for the page: {at_ms, delivered, stored, dropped, error, needs_token}.
export const lastUpload = { at_ms: null, delivered: 0, stored: 0, dropped: 0, error: null, needs_token: false };

let running = null;

// Deliver everything carried; concurrent calls share one run.
export function uploadAll() {
  if (!running) running = deliver().finally(() => { running = null; });
  return running;
}

async function deliver() {
  Object.assign(lastUpload, { at_ms: Date.now(), delivered: 0, stored: 0, dropped: 0, error: null, needs_token: false });
  const bundles = (await all("bundles")).sort((a, b) => a.id - b.id);
  for (const bundle of bundles) {
    if (!navigator.onLine) { lastUpload.error = "offline"; return lastUpload; }
    const bytes = await one("data", bundle.id);
    let result;
    try {
      result = await post(bytes);
    } catch (error) {
      lastUpload.error = `the cloud is out of reach (${error.message}); kept, tried again when online`;
      return lastUpload;
    }
    const { status, value } = result;
    if (status === 200) {
      const receipts = value.receipts || {};
      const receipt = receipts.handover ? {
        board: receipts.board, acks: receipts.acks, entries: receipts.entries,
        handover: base64Bytes(receipts.handover), received_ms: Date.now(),
      } : null;
      await bundleDelivered(bundle.id, receipt);
      lastUpload.delivered += 1;
      lastUpload.stored += value.stored || 0;
    } else if (status === 400) {
      // the cloud refused this bundle for good (truncated, corrupt): drop it, and
      // forget the board's cursor: it still holds the entries, and sends them again
      await bundleDelivered(bundle.id, null);
      const board = await one("boards", bundle.address);
      if (board) await put("boards", { ...board, cursor: null });
      lastUpload.dropped += 1;
      lastUpload.error = `a bundle of ${bundle.name || bundle.board} was refused: ${value.error || status}`;
    } else {
      lastUpload.needs_token = status === 401;
      lastUpload.error = status === 401
        ? "the cloud needs its access token (paste it below)"
        : `the cloud answered ${status}: ${value.error || ""}; kept, tried again later`;
      return lastUpload;
    }
  }
  return lastUpload;
}
