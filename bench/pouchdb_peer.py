"""The PouchDB half of the sync benchmark: the same data replicated by PouchDB
between two PouchDB databases over HTTP on loopback.

``replicate_with_pouchdb(n_docs, body_bytes, work_dir)`` runs
``bench/pouchdb/replicate.js`` under Node.js. That script fills a source
PouchDB (LevelDB adapter; the in-memory adapter if leveldown cannot load) with
``n_docs`` reading batches of about ``body_bytes`` of JSON each — untimed —,
serves it with express-pouchdb from a child Node process on a free 127.0.0.1
port, and times ``PouchDB.replicate(remoteUrl, target)`` into an empty local
database. The server's sockets count the bytes that cross loopback (HTTP
headers included; express-pouchdb gzips its responses).

Node.js and npm come from the Debian packages ``nodejs`` and ``npm``
(``scripts/system-deps.sh bench``, run by ``make bench``). The pinned npm
packages are installed into ``bench/pouchdb/node_modules`` on first use, with
``npm ci`` from the lockfile, and again only when ``package.json`` or the
lockfile change.

``python -m bench.pouchdb_peer --docs 10000 --bytes 200`` prints one result.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PouchBenchError", "PouchResult", "ensure_pouchdb", "replicate_with_pouchdb"]

PROJECT_DIR = Path(__file__).resolve().parent / "pouchdb"
SCRIPT = PROJECT_DIR / "replicate.js"
STAMP = PROJECT_DIR / "node_modules" / ".bench-installed"
INSTALL_TIMEOUT_S = 900.0
SYSTEM_DEPS_HINT = "install Node.js and npm with `scripts/system-deps.sh bench` (or `make bench`)"


class PouchBenchError(RuntimeError):
    """The PouchDB benchmark could not run; the message says which step failed."""


@dataclass(frozen=True)
class PouchResult:
    """One PouchDB replication. ``wire_bytes`` counts both directions on the
    server's sockets, HTTP headers included (``None`` if not measured);
    ``versions`` names ``node``, ``pouchdb`` and ``express-pouchdb``;
    ``adapter`` is ``leveldb`` or ``memory``."""

    docs: int
    seconds: float
    docs_per_s: float
    wire_bytes: int | None
    versions: dict[str, str]
    adapter: str = "leveldb"
    fill_seconds: float | None = None


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PouchBenchError(f"{name} not found on PATH: {SYSTEM_DEPS_HINT}")
    return path


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        file = PROJECT_DIR / name
        digest.update(name.encode() + b"\0")
        if file.exists():
            digest.update(file.read_bytes())
    return digest.hexdigest()


def ensure_pouchdb() -> str:
    """Install the pinned npm packages once; return the path of ``node``.

    Idempotent: skipped while the stamp in ``node_modules`` matches
    ``package.json`` and ``package-lock.json``."""
    node = _tool("node")
    npm = _tool("npm")
    fingerprint = _fingerprint()
    if STAMP.exists() and STAMP.read_text().strip() == fingerprint:
        return node
    locked = (PROJECT_DIR / "package-lock.json").exists()
    command = [npm, "ci" if locked else "install", "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        done = subprocess.run(
            command,
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise PouchBenchError(
            f"npm {command[1]} in {PROJECT_DIR.name}/ timed out after {INSTALL_TIMEOUT_S:.0f} s"
        ) from e
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise PouchBenchError(
            f"npm {command[1]} in {PROJECT_DIR.name}/ failed (exit {done.returncode}):\n{tail}"
        )
    STAMP.parent.mkdir(exist_ok=True)
    STAMP.write_text(fingerprint + "\n")
    return node


def _run_timeout(n_docs: int) -> float:
    """Generous: filling and replicating run at about 1 000 docs/s on a small machine."""
    return 120.0 + n_docs * 0.02


def replicate_with_pouchdb(n_docs: int, body_bytes: int, work_dir: Path) -> PouchResult:
    """Replicate ``n_docs`` documents of about ``body_bytes`` of JSON from one
    PouchDB to another over HTTP on loopback; time only the replication.

    The databases live in ``work_dir`` (created if needed; an earlier run's
    databases there are replaced). Raises ``PouchBenchError`` naming what failed."""
    if n_docs <= 0 or body_bytes <= 0:
        raise ValueError("n_docs and body_bytes must be positive")
    node = ensure_pouchdb()
    work_dir.mkdir(parents=True, exist_ok=True)
    command = [node, str(SCRIPT), "--docs", str(n_docs), "--bytes", str(body_bytes)]
    command += ["--dir", str(work_dir.resolve())]
    # Its own process group, so that the script and the server it starts can be
    # killed together (by the group id, which is the script's PID) on a timeout.
    proc = subprocess.Popen(
        command,
        cwd=work_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timeout = _run_timeout(n_docs)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise PouchBenchError(
            f"PouchDB replication of {n_docs} docs timed out after {timeout:.0f} s"
        ) from e
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # The script kills its server itself (and the server stops when the script's
    # pipe closes); a straggler in the group goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode != 0:
        lines = stderr.strip().splitlines()
        # From the script's own error line (then its stack), else the end of stderr.
        first = next((i for i, line in enumerate(lines) if line.startswith("pouchdb bench:")), None)
        shown = lines[first : first + 15] if first is not None else lines[-15:]
        raise PouchBenchError(
            f"PouchDB replication failed (exit {proc.returncode}):\n" + "\n".join(shown)
        )
    try:
        data: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as e:
        raise PouchBenchError(f"PouchDB replication printed no JSON result: {stdout!r}") from e
    wire = data.get("wire_bytes")
    fill = data.get("fill_seconds")
    return PouchResult(
        docs=int(data["docs"]),
        seconds=float(data["seconds"]),
        docs_per_s=float(data["docs_per_s"]),
        wire_bytes=int(wire) if wire is not None else None,
        versions={str(k): str(v) for k, v in data["versions"].items()},
        adapter=str(data.get("adapter", "leveldb")),
        fill_seconds=float(fill) if fill is not None else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pouchdb_peer",
        description="PouchDB-to-PouchDB replication over HTTP on loopback.",
    )
    parser.add_argument("--docs", type=int, default=10_000, help="documents (10000)")
    parser.add_argument("--bytes", type=int, default=200, help="JSON bytes per document (200)")
    parser.add_argument("--dir", type=Path, help="where the databases go (a temporary directory)")
    args = parser.parse_args()
    try:
        if args.dir is not None:
            result = replicate_with_pouchdb(args.docs, args.bytes, args.dir)
        else:
            with tempfile.TemporaryDirectory(prefix="pouchdb-bench-") as tmp:
                result = replicate_with_pouchdb(args.docs, args.bytes, Path(tmp))
    except PouchBenchError as e:
        parser.exit(1, f"pouchdb bench: {e}\n")
    versions = ", ".join(f"{k} {v}" for k, v in result.versions.items())
    wire = f"{result.wire_bytes / result.docs:.0f} B/doc" if result.wire_bytes else "n/a"
    print(
        f"PouchDB replication, {result.docs} docs of ~{args.bytes} B ({result.adapter} adapter): "
        f"{result.seconds:.2f} s, {result.docs_per_s:.0f} docs/s, wire {wire}  [{versions}]"
    )


if __name__ == "__main__":
    main()
