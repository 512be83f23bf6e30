// HTTP/1.1 on a byte stream (a BLE link in mule mode, ble.js): requests written
// whole, responses parsed — Content-Length or chunked bodies — one at a time on a
// connection kept alive. `link` is any object with send(Uint8Array) -> Promise,
// and whose onData(Uint8Array) and onEnd(error or null) this sets.
//
//   const http = new HttpOnLink(link);
//   const {status, headers, body} = await http.request("GET", "/mule/v1/info");
"use strict";

const CRLF = "\r\n";
const MAX_HEAD = 16 * 1024;

export class HttpOnLink {
  constructor(link, { host = "lichen", maxBody = 64 * 1024 * 1024 } = {}) {
    this.link = link;
    this.host = host;
    this.maxBody = maxBody;
    this.buffer = new Uint8Array(0);
    this.ended = undefined; // undefined: open; null: the peer's FIN; an Error: the link broke
    this._wake = null;
    this._busy = Promise.resolve();
    link.onData = (data) => {
      const joined = new Uint8Array(this.buffer.length + data.length);
      joined.set(this.buffer);
      joined.set(data, this.buffer.length);
      this.buffer = joined;
      this._notify();
    };
    link.onEnd = (error) => { this.ended = error; this._notify(); };
  }

  // One request; its answer {status, headers (lower-case names), body: ArrayBuffer}.
  request(method, path, body) {
    const run = this._busy.then(() => this._exchange(method, path, body));
    this._busy = run.catch(() => {});
    return run;
  }

  async _exchange(method, path, body) {
    const bytes = body === undefined || body === null ? null : new Uint8Array(body);
    let head = `${method} ${path} HTTP/1.1${CRLF}host: ${this.host}${CRLF}`;
    if (bytes) head += `content-type: application/octet-stream${CRLF}content-length: ${bytes.length}${CRLF}`;
    head += CRLF;
    const encoded = new TextEncoder().encode(head);
    const out = new Uint8Array(encoded.length + (bytes ? bytes.length : 0));
    out.set(encoded);
    if (bytes) out.set(bytes, encoded.length);
    await this.link.send(out);
    const { status, headers } = await this._head();
    let answer;
    if (method === "HEAD" || status === 204 || status === 304) answer = new Uint8Array(0);
    else if ((headers["transfer-encoding"] || "").toLowerCase().includes("chunked")) answer = await this._chunked();
    else if (headers["content-length"] !== undefined) answer = await this._take(Number(headers["content-length"]));
    else answer = await this._rest();
    return { status, headers, body: answer.buffer.slice(answer.byteOffset, answer.byteOffset + answer.byteLength) };
  }

  async _line(limit = MAX_HEAD) {
    for (;;) {
      const at = this._find();
      if (at >= 0) {
        const line = new TextDecoder("latin1").decode(this.buffer.subarray(0, at));
        this.buffer = this.buffer.subarray(at + 2);
        return line;
      }
      if (this.buffer.length > limit) throw new Error(`a response line longer than ${limit} bytes`);
      await this._more();
    }
  }

  _find() {
    const b = this.buffer;
    for (let i = 0; i + 1 < b.length; i++) if (b[i] === 13 && b[i + 1] === 10) return i;
    return -1;
  }

  async _head() {
    const first = await this._line();
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(first);
    if (!match) throw new Error(`not an HTTP response: ${first.slice(0, 60)}`);
    const headers = {};
    for (;;) {
      const line = await this._line();
      if (line === "") break;
      const colon = line.indexOf(":");
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    return { status: Number(match[1]), headers };
  }

  async _take(size) {
    if (size > this.maxBody) throw new Error(`a response body of ${size} bytes is above ${this.maxBody}`);
    while (this.buffer.length < size) await this._more();
    const body = this.buffer.slice(0, size);
    this.buffer = this.buffer.subarray(size);
    return body;
  }

  async _chunked() {
    const parts = [];
    let total = 0;
    for (;;) {
      const size = parseInt((await this._line()).split(";", 1)[0], 16);
      if (Number.isNaN(size)) throw new Error("a malformed chunk size");
      if (size === 0) {
        while ((await this._line()) !== "") { /* trailers */ }
        break;
      }
      total += size;
      if (total > this.maxBody) throw new Error(`a response body above ${this.maxBody} bytes`);
      parts.push(await this._take(size));
      if ((await this._line()) !== "") throw new Error("a chunk longer than it said");
    }
    const body = new Uint8Array(total);
    let at = 0;
    for (const part of parts) { body.set(part, at); at += part.length; }
    return body;
  }

  async _rest() {
    while (this.ended === undefined) await this._more();
    return this._take(this.buffer.length);
  }

  async _more() {
    if (this.ended !== undefined) {
      throw this.ended || new Error("the board ended the connection before the response did");
    }
    await new Promise((resolve) => { this._wake = resolve; });
  }

  _notify() {
    const wake = this._wake;
    this._wake = null;
    if (wake) wake();
  }
}
