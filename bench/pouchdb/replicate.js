#!/usr/bin/env node
// PouchDB-to-PouchDB replication over HTTP on loopback: the reference that
// Lichen's own sync is measured against (driven by bench/pouchdb_peer.py).
//
//   node replicate.js --docs N --bytes B --dir DIR
//
// Starts this same script as a child process in "serve" mode: it fills a source
// PouchDB with N documents of about B bytes of JSON each (a batch of readings),
// serves it with express-pouchdb on a free 127.0.0.1 port and prints that port.
// This process then replicates the HTTP database into an empty local PouchDB
// with PouchDB.replicate() and times only that. The server counts the bytes its
// sockets read and wrote (HTTP headers included). The result is one JSON line on
// stdout; the server is killed in every case.
"use strict";

const childProcess = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const readline = require("node:readline");

const FILL_BATCH = 1000;

function parseArgs(argv) {
  const args = { mode: "replicate", docs: 1000, bytes: 200, dir: null };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    if (name === "serve") {
      args.mode = "serve";
    } else if (name === "--docs" || name === "--bytes") {
      args[name.slice(2)] = Number.parseInt(argv[++i], 10);
    } else if (name === "--dir") {
      args.dir = argv[++i];
    } else {
      throw new Error(`unknown argument ${name}`);
    }
  }
  if (!args.dir) throw new Error("--dir is required");
  if (!(args.docs > 0) || !(args.bytes > 0)) throw new Error("--docs and --bytes must be > 0");
  return args;
}

// The LevelDB adapter (leveldown, a native module) when it loads here, else the
// in-memory one; the result says which was used.
function loadPouchDB() {
  const PouchDB = require("pouchdb");
  try {
    require("leveldown");
    return { PouchDB, adapter: "leveldb" };
  } catch {
    PouchDB.plugin(require("pouchdb-adapter-memory"));
    return { PouchDB: PouchDB.defaults({ adapter: "memory" }), adapter: "memory" };
  }
}

function packageVersion(name) {
  const file = path.join(__dirname, "node_modules", name, "package.json");
  return JSON.parse(fs.readFileSync(file, "utf8")).version;
}

// A batch of readings whose JSON (without _id/_rev) is about `bytes` long.
function makeDoc(i, bytes) {
  const ts = 1700000000000 + i * 1000;
  const doc = { _id: `r${String(i).padStart(10, "0")}`, collection: "readings", ts, readings: [] };
  const body = { collection: doc.collection, ts, readings: doc.readings };
  let n = 0;
  while (JSON.stringify(body).length < bytes) {
    doc.readings.push({ s: `t${n % 8}`, v: Math.round(Math.sin(i + n) * 10000) / 100 });
    n++;
  }
  return doc;
}

async function serve(args) {
  const { PouchDB, adapter } = loadPouchDB();
  const Local = PouchDB.defaults({ prefix: `${args.dir}${path.sep}` });
  const source = new Local("source");
  const fillStarted = process.hrtime.bigint();
  for (let start = 0; start < args.docs; start += FILL_BATCH) {
    const docs = [];
    for (let i = start; i < Math.min(start + FILL_BATCH, args.docs); i++) {
      docs.push(makeDoc(i, args.bytes));
    }
    const results = await source.bulkDocs(docs);
    const failed = results.find((r) => r.error);
    if (failed) throw new Error(`filling the source failed: ${JSON.stringify(failed)}`);
  }
  const fillSeconds = Number(process.hrtime.bigint() - fillStarted) / 1e9;

  const app = require("express-pouchdb")(Local, { mode: "minimumForPouchDB" });
  const sockets = new Set();
  let closedRead = 0;
  let closedWritten = 0;
  const server = http.createServer(app);
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => {
      sockets.delete(socket);
      closedRead += socket.bytesRead;
      closedWritten += socket.bytesWritten;
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  process.stdout.write(`${JSON.stringify({ port, adapter, fill_seconds: fillSeconds })}\n`);

  // Any line on stdin asks for the byte counts; the end of stdin (the parent
  // went away) stops the server.
  const input = readline.createInterface({ input: process.stdin });
  input.on("line", () => {
    let read = closedRead;
    let written = closedWritten;
    for (const socket of sockets) {
      read += socket.bytesRead;
      written += socket.bytesWritten;
    }
    process.stdout.write(`${JSON.stringify({ bytes_in: read, bytes_out: written })}\n`);
  });
  input.on("close", () => process.exit(0));
}

function startServer(args) {
  const child = childProcess.spawn(
    process.execPath,
    [__filename, "serve", "--docs", String(args.docs), "--bytes", String(args.bytes), "--dir",
      args.dir],
    { cwd: args.dir, stdio: ["pipe", "pipe", "inherit"] },
  );
  const lines = readline.createInterface({ input: child.stdout });
  const waiting = [];
  const buffered = [];
  let ended = false;
  lines.on("line", (line) => (waiting.length ? waiting.shift().resolve(line) : buffered.push(line)));
  const fail = (why) => {
    ended = true;
    for (const w of waiting.splice(0)) w.reject(new Error(why));
  };
  child.on("exit", (code, signal) => fail(`server exited (code ${code}, signal ${signal})`));
  child.on("error", (err) => fail(`server could not start: ${err.message}`));
  const nextLine = () =>
    buffered.length
      ? Promise.resolve(buffered.shift())
      : ended
        ? Promise.reject(new Error("server exited"))
        : new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  const ask = async () => {
    child.stdin.write("stats\n");
    return JSON.parse(await nextLine());
  };
  const stop = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  };
  return { child, nextLine, ask, stop };
}

async function replicate(args) {
  fs.mkdirSync(args.dir, { recursive: true });
  for (const name of ["source", "target"]) {
    fs.rmSync(path.join(args.dir, name), { recursive: true, force: true });
  }
  const { PouchDB, adapter } = loadPouchDB();
  const server = startServer(args);
  const stopServer = () => server.stop();
  process.on("exit", stopServer);
  try {
    const ready = JSON.parse(await server.nextLine());
    const remoteUrl = `http://127.0.0.1:${ready.port}/source`;
    const target = new (PouchDB.defaults({ prefix: `${args.dir}${path.sep}` }))("target");
    await target.info();
    const before = await server.ask();

    const started = process.hrtime.bigint();
    const outcome = await PouchDB.replicate(remoteUrl, target);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;

    const after = await server.ask();
    const info = await target.info();
    if (!outcome.ok || info.doc_count !== args.docs) {
      throw new Error(
        `replication incomplete: ok=${outcome.ok} docs_written=${outcome.docs_written} ` +
          `target doc_count=${info.doc_count}, expected ${args.docs}`,
      );
    }
    const bytesIn = after.bytes_in - before.bytes_in;
    const bytesOut = after.bytes_out - before.bytes_out;
    const result = {
      docs: info.doc_count,
      seconds,
      docs_per_s: info.doc_count / seconds,
      wire_bytes: bytesIn + bytesOut,
      wire_bytes_to_target: bytesOut,
      fill_seconds: ready.fill_seconds,
      adapter: ready.adapter === adapter ? adapter : `${ready.adapter}/${adapter}`,
      versions: {
        node: process.version,
        pouchdb: packageVersion("pouchdb"),
        "express-pouchdb": packageVersion("express-pouchdb"),
      },
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    await target.close();
  } finally {
    stopServer();
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  args.dir = path.resolve(args.dir);
  if (args.mode === "serve") {
    await serve(args);
  } else {
    await replicate(args);
    process.exit(0);
  }
}

main().catch((err) => {
  process.stderr.write(`pouchdb bench: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
