// How Lichen Field reaches a board. Every call of the mule exchange goes through
// one small object:
//
//   transport.request(method, path, body?) -> Promise<{status, headers, body}>
//
// `path` is the exchange's path with its query ("/mule/v1/bundle?since=…"),
// `body` an ArrayBuffer or undefined, and the answer's `headers` a plain object
// with lower-case names, its `body` an ArrayBuffer. A transport throws only when
// the board could not be reached at all (out of range, refused, timed out).
//
// Transports are found by the scheme of a board's address, in `transports`:
// http: and https: are here (fetch). Another transport registers itself with
// registerTransport(scheme, make), where make(address) returns such an object:
// Web Bluetooth does, from ble.js (imported by app.js, cached by sw.js).
"use strict";

export const transports = new Map();

export function registerTransport(scheme, make) {
  transports.set(scheme.toLowerCase().replace(/:$/, ""), make);
}

export function transportFor(address) {
  const scheme = String(address).split(":", 1)[0].toLowerCase();
  const make = transports.get(scheme);
  if (!make) {
    throw new Error(`no transport for ${scheme}: addresses (known: ${[...transports.keys()].join(", ")})`);
  }
  return make(address);
}

// A board address as typed: "192.168.4.1:8471" becomes "http://192.168.4.1:8471".
export function normalAddress(typed) {
  let text = String(typed).trim().replace(/\/+$/, "");
  if (!text) throw new Error("type the board's address (http://HOST:PORT of its mule exchange)");
  if (!/^[a-z][a-z0-9+.-]*:/i.test(text) || /^[^/]*:\d+$/.test(text)) text = `http://${text}`;
  const scheme = text.split(":", 1)[0].toLowerCase();
  if (scheme === "http" || scheme === "https") {
    const url = new URL(text);
    if (url.pathname !== "/" || url.search || url.hash) {
      throw new Error(`${typed}: a board address is only http://HOST:PORT, without a path`);
    }
    return url.origin;
  }
  if (!transports.has(scheme)) throw new Error(`${typed}: no transport for ${scheme}: addresses`);
  return text;
}

export const TIMEOUT_MS = 30000;

export function httpTransport(address) {
  const root = String(address).replace(/\/+$/, "");
  return {
    kind: "http",
    address: root,
    async request(method, path, body) {
      const response = await fetch(root + path, {
        method,
        body,
        headers: body === undefined ? {} : { "content-type": "application/octet-stream" },
        cache: "no-store",
        credentials: "omit",
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      const headers = {};
      response.headers.forEach((value, name) => { headers[name.toLowerCase()] = value; });
      return { status: response.status, headers, body: await response.arrayBuffer() };
    },
  };
}

registerTransport("http", httpTransport);
registerTransport("https", httpTransport);
