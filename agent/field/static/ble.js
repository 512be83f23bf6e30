// Lichen boards over Web Bluetooth, for a web app: the mule exchange's HTTP on a
// BLE link opened in mule mode (docs/ble.md, "The mule exchange over GATT").
//
//   const id = await chooseBoard();                   // the browser's chooser (a user's gesture)
//   const transport = bleTransport(`ble:${id}`);      // transport.js's interface
//   const answer = await transport.request("GET", "/mule/v1/info");
//   answer.status, answer.headers["lichen-cursor"], answer.body   // an ArrayBuffer
//
// The layers: ble_link.js (Link: the link protocol over any write function),
// ble_http.js (HttpOnLink: HTTP/1.1 on a link's stream), and here the GATT side —
// requestDevice filtered on the Lichen service, rx written without response, tx
// notifications.
"use strict";

import { HttpOnLink } from "./ble_http.js";
import { INFO, Link, LinkError, MODE, RX, SERVICE, TX } from "./ble_link.js";

export { HttpOnLink, INFO, Link, LinkError, MODE, RX, SERVICE, TX };

const chosen = new Map(); // device id → the device, as chosen in this page

// The links open now: for diagnostics, and the tests' way in, as the browser's
// Bluetooth emulation cannot notify (docs/ble.md, "In a web app").
export const openLinks = new Set();

// Ask the browser's chooser for a board advertising the Lichen service (call it
// from a user's gesture); its id, for the address "ble:ID".
export async function chooseBoard({ bluetooth = globalThis.navigator?.bluetooth } = {}) {
  if (!bluetooth) throw new Error("this browser has no Web Bluetooth (Chrome or Edge on Android or a desktop)");
  const device = await bluetooth.requestDevice({ filters: [{ services: [SERVICE] }] });
  chosen.set(device.id, device);
  return device.id;
}

// The transport of a board reached over Web Bluetooth (transport.js's interface):
// `address` is "ble:" (choose the board in the browser's chooser, which needs a
// user's gesture) or "ble:ID", a device this origin was given before (`deviceId`),
// found again without the chooser where the browser has getDevices. One GATT
// connection and one mule link at a time, opened on a request, again after it ended.
// The same address gives the same transport (its link is reused while it is open);
// a link left idle for `idleMs` is closed, giving the board its room back.
export function bleTransport(address, options = {}) {
  if (!transports.has(address)) transports.set(address, makeTransport(address, options));
  return transports.get(address);
}

const transports = new Map();
export const BLE_BUDGET = 256 * 1024; // bytes a bundle: about ten seconds of a BLE link

function makeTransport(address, { bluetooth = globalThis.navigator?.bluetooth, idleMs = 5000 } = {}) {
  const id = String(address).replace(/^ble:\/*/i, "");
  let idle = null;
  let device = null;
  let open = null; // Promise of {link, http, server}
  let session = null; // the open one
  async function connect() {
    if (!bluetooth) throw new Error("this browser has no Web Bluetooth (Chrome or Edge on Android or a desktop)");
    if (!device && id) device = chosen.get(id) || null;
    if (!device && id && bluetooth.getDevices) {
      device = (await bluetooth.getDevices()).find((known) => known.id === id) || null;
    }
    if (!device) device = chosen.get(await chooseBoard({ bluetooth }));
    const server = await device.gatt.connect();
    const service = await server.getPrimaryService(SERVICE);
    const [rx, tx] = [await service.getCharacteristic(RX), await service.getCharacteristic(TX)];
    const link = new Link((value) => rx.writeValueWithoutResponse(value));
    openLinks.add(link);
    link.onClosed = () => openLinks.delete(link);
    tx.addEventListener("characteristicvaluechanged", (event) => link.onValue(event.target.value));
    device.addEventListener("gattserverdisconnected", () => link.disconnected("the board went away"), { once: true });
    await tx.startNotifications();
    const opening = { link, http: new HttpOnLink(link), server };
    session = opening;
    try {
      await link.open();
    } catch (error) {
      openLinks.delete(link);
      server.disconnect();
      throw error;
    }
    return opening;
  }
  return {
    kind: "ble",
    address,
    budget: BLE_BUDGET, // what exchange.js asks a bundle to be over this transport
    get link() { return session?.link; }, // the link now (for diagnostics)
    get deviceId() { return device?.id; }, // "ble:" + it finds the same board again
    async request(method, path, body) {
      clearTimeout(idle);
      if (!open || session?.link.closed) open = connect();
      let current;
      try {
        current = await open;
        const answer = await current.http.request(method, path, body);
        idle = setTimeout(() => this.close(), idleMs);
        return answer;
      } catch (error) {
        open = null;
        current?.server.disconnect();
        throw error;
      }
    },
    async close() {
      const current = open && await open.catch(() => null);
      open = null;
      if (current) { await current.link.close(); current.server.disconnect(); }
    },
  };
}
