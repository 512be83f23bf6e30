// What the phone keeps, in IndexedDB (database "lichen-field"):
//
//   boards    by address: the board's last info, its two cursors (sealed, public)
//   bundles   id → what a collected bundle is (board, size, entries, when)
//   data      id → the bundle's bytes (apart, so listing never loads them)
//   receipts  id → a cloud's receipts for one board, to hand over on the next visit
//   readings  [board, collection] → the newest readings of a public collection
//
// A bundle and the cursor after it are written in one transaction: a contact
// that breaks leaves the cursor of the last bundle kept whole.
"use strict";

const NAME = "lichen-field";
let opening = null;

export function openDatabase() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const request = indexedDB.open(NAME, 1);
      request.onupgradeneeded = () => {
        const db = request.result;
        db.createObjectStore("boards", { keyPath: "address" });
        db.createObjectStore("bundles", { keyPath: "id", autoIncrement: true }).createIndex("board", "board");
        db.createObjectStore("data");
        db.createObjectStore("receipts", { keyPath: "id", autoIncrement: true }).createIndex("board", "board");
        db.createObjectStore("readings", { keyPath: ["board", "collection"] });
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error("close Lichen Field's other tabs, then reload"));
    });
  }
  return opening;
}

// An IDBRequest as a promise.
export function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

// Run work(stores) in one transaction over `names`; resolves with what work
// returned once the transaction committed, rejects (nothing written) if it failed.
export async function transact(names, mode, work) {
  const db = await openDatabase();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(names, mode);
    const stores = Object.fromEntries(names.map((n) => [n, tx.objectStore(n)]));
    let result;
    let failure = null;
    Promise.resolve()
      .then(() => work(stores))
      .then((value) => { result = value; }, (error) => { failure = error; tx.abort(); });
    tx.oncomplete = () => resolve(result);
    tx.onabort = () => reject(failure || tx.error || new Error("the transaction was aborted"));
  });
}

export const all = (name) => transact([name], "readonly", (s) => done(s[name].getAll()));
export const one = (name, key) => transact([name], "readonly", (s) => done(s[name].get(key)));
export const byBoard = (name, board) =>
  transact([name], "readonly", (s) => done(s[name].index("board").getAll(board)));

// A collected bundle and the board's new cursor, together or not at all.
export function keepBundle(board, cursorKey, cursor, meta, bytes) {
  return transact(["boards", "bundles", "data"], "readwrite", async (s) => {
    if (meta) {
      const id = await done(s.bundles.add(meta));
      s.data.put(bytes, id);
    }
    s.boards.put({ ...board, [cursorKey]: cursor });
  });
}

// Readings of a public bundle merged into what is kept (the newest `keep` per
// collection), and the board's public cursor, in one transaction.
export function keepReadings(board, cursorKey, cursor, series, keep) {
  return transact(["boards", "readings"], "readwrite", async (s) => {
    for (const [collection, readings] of series) {
      const old = await done(s.readings.get([board.node_id, collection]));
      const byTime = new Map((old ? old.readings : []).map((r) => [r.ts_ms, r]));
      for (const r of readings) byTime.set(r.ts_ms, r);
      const merged = [...byTime.values()].sort((a, b) => a.ts_ms - b.ts_ms).slice(-keep);
      s.readings.put({ board: board.node_id, collection, name: board.name, readings: merged });
    }
    s.boards.put({ ...board, [cursorKey]: cursor });
  });
}

// The cloud took a bundle: drop it and keep the receipts it answered, together.
export function bundleDelivered(id, receipt) {
  return transact(["bundles", "data", "receipts"], "readwrite", (s) => {
    s.bundles.delete(id);
    s.data.delete(id);
    if (receipt) s.receipts.add(receipt);
  });
}

export function remove(name, key) {
  return transact([name], "readwrite", (s) => { s[name].delete(key); });
}

export function put(name, value) {
  return transact([name], "readwrite", (s) => { s[name].put(value); });
}
