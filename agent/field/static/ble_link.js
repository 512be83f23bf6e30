// The Lichen BLE link, central side (docs/ble.md "Segments"): OPEN in mule mode
// (version 2), segmentation by the peripheral's announced value size, byte
// credit, ACK and NAK with go-back-N on RFC 6298's timer, PROBE, FIN half-close,
// CLOSE and its codes, the 20 s link timeout. No GATT inside: it sends each value
// through write(value) and takes each value the peer sent with onValue(value);
// ble.js puts it on Web Bluetooth.
//
//   const link = new Link((value) => rx.writeValueWithoutResponse(value));
//   link.onData = (bytes) => …; link.onEnd = (errorOrNull) => …;
//   await link.open(); await link.send(bytes); await link.close();
"use strict";
export const SERVICE = "6c1c0001-5d2a-4a8c-9b8e-1d3c0a1e0b01";
export const RX = "6c1c0002-5d2a-4a8c-9b8e-1d3c0a1e0b01";
export const TX = "6c1c0003-5d2a-4a8c-9b8e-1d3c0a1e0b01";
export const INFO = "6c1c0004-5d2a-4a8c-9b8e-1d3c0a1e0b01";
export const MODE = { sync: 0, mule: 1 };
const T = { OPEN: 1, DATA: 2, FIN: 3, ACK: 4, NAK: 5, PROBE: 6, CLOSE: 7 };
const CODES = ["NORMAL", "PROTOCOL", "TIMEOUT", "VERSION", "BUSY", "MODE"];
const MIN_VALUE = 20;
const LINK_TIMEOUT_MS = 20000;
const ACK_DELAY_MS = 20;

const ahead = (a, b) => { const d = (a - b) & 0xffff; return d >= 0x8000 ? d - 0x10000 : d; };
const u16 = (n) => [(n >> 8) & 0xff, n & 0xff];
const u32 = (n) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];

export class LinkError extends Error {}

export class Link {
  // write(Uint8Array) -> Promise: one GATT value to the peer, in order.
  constructor(write, { mode = MODE.mule, maxValue = 512, buffer = 16384 } = {}) {
    this.write = write;
    this.mode = mode;
    this.maxValue = maxValue;
    this.buffer = buffer;
    this.sendValue = MIN_VALUE;
    this.opened = false;
    this.closed = null; // the reason, once ended
    this.onData = () => {}; // (Uint8Array) each payload, in order
    this.onEnd = () => {}; // (error or null) the stream's end: FIN (null) or the link's
    this.onClosed = () => {}; // (reason) the link ended, whichever way
    this.retransmissions = 0;
    // sending
    this.nextSeq = 0;
    this.unacked = []; // [{seq, value, size}] sent, not acknowledged (DATA and FIN)
    this.pending = []; // Uint8Array chunks queued, not yet cut into DATA
    this.credit = 0; // payload bytes the peer allows unacknowledged from its `next`
    this.eof = false;
    this.finSent = false;
    this.rto = 1000;
    this.heardAt = Date.now();
    // receiving
    this.recvNext = 0;
    this.unackedBytes = 0;
    this.nakedAt = -1;
    this.finReceived = false;
    this._queue = Promise.resolve();
    this._waiters = [];
  }

  // ------------------------------------------------------------------ opening

  async open(timeoutMs = 10000) {
    const version = this.mode === MODE.sync ? 1 : 2;
    const window = Math.min(this.buffer, 0xffffff);
    const opening = version === 1 ? [T.OPEN, 1, ...u16(this.maxValue), ...u32(window)]
      : [T.OPEN, 2, ...u16(this.maxValue), this.mode, (window >> 16) & 0xff, ...u16(window & 0xffff)];
    const deadline = Date.now() + timeoutMs;
    let wait = 1000;
    while (!this.opened) {
      if (this.closed) throw new LinkError(this.closed);
      if (Date.now() >= deadline) {
        await this._fail(2, `the peer did not open the link within ${timeoutMs / 1000} s`);
        throw new LinkError(this.closed);
      }
      await this._send(new Uint8Array(opening));
      await this._until(() => this.opened || this.closed, Math.min(wait, deadline - Date.now()));
      wait = Math.min(wait * 2, 8000);
    }
    this._timer = setInterval(() => this._tick(), 100);
  }

  // ---------------------------------------------------------------- the stream

  async send(bytes) {
    if (this.closed) throw new LinkError(this.closed);
    if (this.eof) throw new LinkError("send after sendEof");
    this.pending.push(new Uint8Array(bytes));
    await this._pump();
    await this._until(() => this.closed || this.pending.length === 0);
    if (this.closed) throw new LinkError(this.closed);
  }

  async sendEof() {
    this.eof = true;
    await this._pump();
  }

  get flushed() { return this.pending.length === 0 && this.unacked.length === 0; }

  // FIN, wait (5 s at most) for everything to be acknowledged, CLOSE(0).
  async close() {
    if (this.closed) return;
    await this.sendEof();
    await this._until(() => this.closed || (this.finSent && this.flushed), 5000);
    if (!this.closed) await this._fail(0, "closed");
  }

  // ------------------------------------------------------------ values in

  onValue(value) {
    const v = new Uint8Array(value.buffer ? value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength) : value);
    if (this.closed) return;
    this.heardAt = Date.now();
    try {
      if (v.length === 0) throw new LinkError("an empty GATT value is not a link segment");
      if (v.length > this.maxValue) throw new LinkError(`a ${v.length}-byte value is longer than the ${this.maxValue} announced`);
      this._segment(v);
    } catch (error) {
      this._fail(1, `the peer broke the link protocol: ${error.message}`);
    }
    this._wake();
  }

  disconnected(reason) {
    if (!this.closed) this._end(`the BLE connection ended: ${reason}`);
  }

  _segment(v) {
    const kind = v[0];
    const be16 = (i) => (v[i] << 8) | v[i + 1];
    const be32 = (i) => ((v[i] << 24) >>> 0) + (v[i + 1] << 16) + (v[i + 2] << 8) + v[i + 3];
    if (kind === T.CLOSE && v.length >= 2) {
      const reason = new TextDecoder().decode(v.slice(2)) || "no reason given";
      const code = CODES[v[1]] || `code ${v[1]}`;
      if (v[1] === 0) return this._end(this.finReceived ? null : `the peer closed the link (${reason})`);
      const why = v[1] === 3 && !this.opened && this.mode !== MODE.sync
        ? `it speaks no link protocol version 2, which a mule link needs (${reason})` : reason;
      return this._end(`the peer ended the link (${code}: ${why})`);
    }
    if (kind === T.OPEN && v.length === 8) {
      const version = v[1];
      const mode = version >= 2 ? v[4] : MODE.sync;
      const window = version >= 2 ? (v[5] << 16) + be16(6) : be32(4);
      if (mode !== this.mode) throw new LinkError(`OPEN answered in mode ${mode}, not ${this.mode}`);
      if (be16(2) < MIN_VALUE) throw new LinkError(`OPEN announces values of ${be16(2)} bytes`);
      if (!this.opened) {
        this.opened = true;
        this.sendValue = Math.min(be16(2), this.maxValue);
        this.credit = window;
      }
      return;
    }
    if (!this.opened) return; // our OPEN's answer was lost: it comes again
    if (kind === T.DATA && v.length > 3) return this._data(be16(1), v.subarray(3));
    if (kind === T.FIN && v.length === 3) return this._fin(be16(1));
    if ((kind === T.ACK || kind === T.NAK) && v.length === 7) {
      this._acknowledged(be16(1), be32(3));
      if (kind === T.NAK) this._goBack();
      return;
    }
    if (kind === T.PROBE && v.length === 1) return this._ack(true);
    const names = ["", "OPEN", "DATA", "FIN", "ACK", "NAK", "PROBE", "CLOSE"];
    if (names[kind]) throw new LinkError(`a ${names[kind]} segment of ${v.length} bytes is malformed`);
    throw new LinkError(`unknown link segment type 0x${kind.toString(16).padStart(2, "0")}`);
  }

  // ------------------------------------------------------------- receiving

  _data(seq, payload) {
    const d = ahead(seq, this.recvNext);
    if (d < 0) return this._ack(true); // a duplicate
    if (d > 0) return this._gap();
    if (this.finReceived) throw new LinkError("DATA after FIN");
    if (payload.length > this.buffer) throw new LinkError("DATA beyond the credit granted");
    this.recvNext = (this.recvNext + 1) & 0xffff;
    this.unackedBytes += payload.length;
    this.onData(payload); // read at once: the whole window stays granted
    if (this.unackedBytes >= this.buffer / 2) this._ack(true);
    else if (!this._ackTimer) this._ackTimer = setTimeout(() => this._ack(true), ACK_DELAY_MS);
  }

  _fin(seq) {
    const d = ahead(seq, this.recvNext);
    if (d > 0) return this._gap();
    if (d === 0) {
      this.recvNext = (this.recvNext + 1) & 0xffff;
      this.finReceived = true;
      this.onEnd(null);
    }
    this._ack(true);
  }

  _gap() {
    if (this.nakedAt === this.recvNext) return;
    this.nakedAt = this.recvNext;
    this._control([T.NAK, ...u16(this.recvNext), ...u32(this.buffer)]);
  }

  _ack() {
    clearTimeout(this._ackTimer);
    this._ackTimer = null;
    this.unackedBytes = 0;
    this._control([T.ACK, ...u16(this.recvNext), ...u32(this.buffer)]);
  }

  // --------------------------------------------------------------- sending

  _acknowledged(next, window) {
    let progressed = false;
    while (this.unacked.length && ahead(next, this.unacked[0].seq) > 0) {
      const segment = this.unacked.shift();
      if (segment.tries === 1) this._sample(Date.now() - segment.sentAt);
      progressed = true;
    }
    this.credit = window;
    if (progressed) this.rtoAt = this.unacked.length ? Date.now() + this.rto : null;
    this._pump();
  }

  _sample(rtt) {
    if (this.srtt === undefined) { this.srtt = rtt; this.rttvar = rtt / 2; } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - rtt);
      this.srtt = 0.875 * this.srtt + 0.125 * rtt;
    }
    this.rto = Math.min(8000, Math.max(200, this.srtt + 4 * this.rttvar));
  }

  _goBack() {
    for (const segment of this.unacked) {
      segment.tries += 1;
      this.retransmissions += 1;
      this._send(segment.value);
    }
    if (this.unacked.length) this.rtoAt = Date.now() + this.rto;
  }

  _inFlight() { return this.unacked.reduce((n, s) => n + s.size, 0); }

  _pump() {
    if (!this.opened || this.closed) return this._queue;
    const room = () => this.credit - this._inFlight();
    while (this.pending.length && room() > 0) {
      const chunk = this.pending[0];
      const size = Math.min(chunk.length, this.sendValue - 3, room());
      const value = new Uint8Array(3 + size);
      value.set([T.DATA, ...u16(this.nextSeq)]);
      value.set(chunk.subarray(0, size), 3);
      if (size === chunk.length) this.pending.shift(); else this.pending[0] = chunk.subarray(size);
      this._queueSegment(value, size);
    }
    if (this.eof && !this.finSent && this.pending.length === 0) {
      this.finSent = true;
      this._queueSegment(new Uint8Array([T.FIN, ...u16(this.nextSeq)]), 0);
    }
    if (this.pending.length && room() <= 0 && !this.probeAt) this.probeAt = Date.now() + this.rto;
    this._wake();
    return this._queue;
  }

  _queueSegment(value, size) {
    this.unacked.push({ seq: this.nextSeq, value, size, tries: 1, sentAt: Date.now() });
    this.nextSeq = (this.nextSeq + 1) & 0xffff;
    if (!this.rtoAt) this.rtoAt = Date.now() + this.rto;
    this._send(value);
  }

  _tick() {
    if (this.closed) return clearInterval(this._timer);
    const now = Date.now();
    const waiting = this.unacked.length > 0 || this.pending.length > 0;
    if (waiting && now - this.heardAt >= LINK_TIMEOUT_MS) {
      this._fail(2, `the peer acknowledged nothing for ${LINK_TIMEOUT_MS / 1000} s`);
      return;
    }
    if (this.rtoAt && now >= this.rtoAt && this.unacked.length) {
      this.rto = Math.min(this.rto * 2, 8000);
      this._goBack();
    }
    if (this.probeAt && now >= this.probeAt) {
      this.probeAt = this.pending.length && this.credit - this._inFlight() <= 0 ? now + this.rto : null;
      if (this.probeAt) this._control([T.PROBE]);
    }
  }

  // ------------------------------------------------------------- plumbing

  _control(bytes) { this._send(new Uint8Array(bytes)); }

  _send(value) {
    this._queue = this._queue.then(() => this.write(value)).catch((error) => {
      this.disconnected(`a write failed: ${error.message || error}`);
    });
    return this._queue;
  }

  async _fail(code, reason) {
    if (this.closed) return;
    const text = new TextEncoder().encode(reason).subarray(0, this.sendValue - 2);
    const value = new Uint8Array(2 + text.length);
    value.set([T.CLOSE, code]);
    value.set(text, 2);
    this._send(value);
    this._end(code === 0 && this.finReceived ? null : reason);
    await this._queue;
  }

  _end(reason) {
    this.closed = reason || "closed";
    clearInterval(this._timer);
    clearTimeout(this._ackTimer);
    if (!this.finReceived) this.onEnd(new LinkError(this.closed));
    this.onClosed(this.closed);
    this._wake();
  }

  _wake() {
    const waiters = this._waiters;
    this._waiters = [];
    for (const wake of waiters) wake();
  }

  async _until(done, timeoutMs = Infinity) {
    const deadline = Date.now() + timeoutMs;
    while (!done() && Date.now() < deadline) {
      await new Promise((resolve) => {
        this._waiters.push(resolve);
        setTimeout(resolve, Math.min(100, Math.max(0, deadline - Date.now())));
      });
    }
  }
}

