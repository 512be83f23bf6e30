// Readings out of a public (unsealed) bundle, for the plots: the bundle's frames
// (docs/format.md#bundles), the entries' CBOR, and reading batches
// (docs/format.md#reading-batches). Only what plotting needs: a sealed bundle is
// never opened here (the phone cannot), and signatures are not verified — the
// plots are a view of what the board sent; the cloud verifies every entry
// before it stores one.
"use strict";

const MAGIC = [0x89, 0x4c, 0x43, 0x42, 0x0d, 0x0a, 0x1a, 0x0a];
const H = 0x48, C = 0x43, M = 0x4d;

// ------------------------------------------------------------------ CBOR

// Decode one CBOR item at `at` of `view` (a DataView): [value, next offset].
// Maps become objects whose keys are strings ("5" for the integer key 5);
// integers past 2^53 become BigInt; tags are refused (the format has none).
export function decodeCbor(view, at = 0, depth = 0) {
  if (depth > 32) throw new Error("CBOR nested too deep");
  const initial = view.getUint8(at++);
  const major = initial >> 5, info = initial & 31;
  let n;
  if (info < 24) n = info;
  else if (info === 24) { n = view.getUint8(at); at += 1; }
  else if (info === 25) { n = view.getUint16(at); at += 2; }
  else if (info === 26) { n = view.getUint32(at); at += 4; }
  else if (info === 27) {
    const big = view.getBigUint64(at); at += 8;
    n = big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  } else throw new Error(`CBOR: indefinite or reserved length at ${at - 1}`);
  switch (major) {
    case 0: return [n, at];
    case 1: return [typeof n === "bigint" ? -1n - n : -1 - n, at];
    case 2: return [new Uint8Array(view.buffer, view.byteOffset + at, Number(n)), at + Number(n)];
    case 3: {
      const bytes = new Uint8Array(view.buffer, view.byteOffset + at, Number(n));
      return [new TextDecoder("utf-8", { fatal: true }).decode(bytes), at + Number(n)];
    }
    case 4: {
      const out = [];
      for (let i = 0; i < n; i++) { let v; [v, at] = decodeCbor(view, at, depth + 1); out.push(v); }
      return [out, at];
    }
    case 5: {
      const out = {};
      for (let i = 0; i < n; i++) {
        let k, v;
        [k, at] = decodeCbor(view, at, depth + 1);
        [v, at] = decodeCbor(view, at, depth + 1);
        out[String(k)] = v;
      }
      return [out, at];
    }
    case 7:
      if (info === 20) return [false, at];
      if (info === 21) return [true, at];
      if (info === 22 || info === 23) return [null, at];
      if (info === 25) return [half(n), at];
      if (info === 26) return [view.getFloat32(at - 4), at];
      if (info === 27) return [view.getFloat64(at - 8), at];
      throw new Error(`CBOR: simple value ${info}`);
    default:
      throw new Error("CBOR: tags are not part of the format");
  }
}

function half(bits) {
  const exp = (bits >> 10) & 31, frac = bits & 1023, sign = bits & 0x8000 ? -1 : 1;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1024 + frac) * 2 ** (exp - 25);
}

const cbor = (bytes) => decodeCbor(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength))[0];

// ------------------------------------------------------------- readings

// A reading-batch body → [{ts_ms, values, quality}], or null if it is none.
export function readingsOf(body) {
  if (!body || !Array.isArray(body.t) || typeof body.v !== "object" || body.v === null) return null;
  const times = [];
  let delta = 0;
  body.t.forEach((x, i) => {
    if (i === 0) times.push(x);
    else { delta = i === 1 ? x : delta + x; times.push(times[i - 1] + delta); }
  });
  const columns = {};
  for (const [field, column] of Object.entries(body.v)) {
    if (Array.isArray(column)) { columns[field] = column; continue; }
    if (!column || !Array.isArray(column.d) || !Number.isInteger(column.e)) return null;
    let n = 0;
    columns[field] = column.d.map((d) => {
      n += d;
      return column.e < 0 ? n / 10 ** -column.e : n * 10 ** column.e;
    });
  }
  const flags = body.q || {};
  return times.map((ts_ms, i) => {
    const values = {};
    for (const [field, column] of Object.entries(columns)) {
      if (column[i] !== null && column[i] !== undefined) values[field] = column[i];
    }
    return { ts_ms, values, quality: flags[String(i)] || null };
  });
}

// ---------------------------------------------------------------- bundle

// Every entry of an unsealed bundle: [{author, seq, collection, body, own}],
// `own` when its author is the board that exported the bundle.
export function bundleEntries(buffer) {
  const view = new DataView(buffer);
  if (view.byteLength < 8 || MAGIC.some((b, i) => view.getUint8(i) !== b)) {
    throw new Error("not a Lichen bundle");
  }
  const out = [];
  let exporter = null;
  let at = 8;
  while (at + 5 <= view.byteLength) {
    const kind = view.getUint8(at), length = view.getUint32(at + 1);
    const body = new Uint8Array(buffer, at + 5, length);
    if (at + 5 + length > view.byteLength) throw new Error("the bundle is truncated");
    at += 5 + length;
    if (kind === H) {
      const header = cbor(body);
      if ("4" in header) throw new Error("the bundle is sealed to a cloud: only the cloud can read it");
      exporter = header["1"];
    } else if (kind === C) {
      for (const raw of cbor(body.subarray(5))) out.push(entryOf(raw, exporter));
    } else if (kind === M) {
      return out;
    } else {
      throw new Error(`unknown frame kind ${kind}`);
    }
  }
  throw new Error("the bundle is truncated (no manifest)");
}

function entryOf(raw, exporter) {
  const [content] = cbor(raw);
  const fields = cbor(content);
  const author = fields["1"];
  const own = !!exporter && author.length === exporter.length && author.every((b, i) => b === exporter[i]);
  return { author, seq: fields["2"], collection: fields["5"], body: fields["7"], own };
}

// The board's own readings in a public bundle by collection: Map(collection → readings).
export function publicReadings(buffer) {
  const series = new Map();
  for (const entry of bundleEntries(buffer)) {
    const readings = entry.own ? readingsOf(entry.body) : null;
    if (!readings || !readings.length) continue;
    if (!series.has(entry.collection)) series.set(entry.collection, []);
    series.get(entry.collection).push(...readings);
  }
  return series;
}
