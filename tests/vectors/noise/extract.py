"""Extract the Noise test vectors Lichen's implementation supports into ``vectors.json``.

The vectors are the published ones, copied with their source; no code is
copied. Fetch the source repositories, then run (from the repository root)::

    python -m tests.vectors.noise.extract \\
        haskell-cryptography/cacophony:vectors/cacophony.txt@COMMIT=/path/to/cacophony.txt \\
        mcginty/snow:tests/vectors/snow.txt@COMMIT=/path/to/snow.txt \\
        rweather/noise-c:tests/vector/noise-c-basic.txt@COMMIT=/path/to/noise-c-basic.txt

Each argument names the repository, the file, the commit it was read at, and
a local copy of that file. Vectors already taken from an earlier source
(identical keys and messages) are not repeated.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

SUPPORTED = re.compile(r"Noise_XX(psk\d(\+psk\d)*)?_25519_ChaChaPoly_BLAKE2b")
OUT = Path(__file__).with_name("vectors.json")
FIELDS = (
    "init_prologue",
    "init_static",
    "init_ephemeral",
    "resp_prologue",
    "resp_static",
    "resp_ephemeral",
)


def normalise(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """One vector in one shape, whichever project published it."""
    name = raw.get("protocol_name") or raw["name"]
    vector: dict[str, Any] = {"protocol_name": name, "source": source}
    for key in FIELDS:
        vector[key] = raw[key]
    vector["init_psks"] = list(raw.get("init_psks", []))
    vector["resp_psks"] = list(raw.get("resp_psks", []))
    vector["handshake_hash"] = raw.get("handshake_hash")
    vector["messages"] = [
        {"payload": m["payload"], "ciphertext": m["ciphertext"]} for m in raw["messages"]
    ]
    return vector


def identity(vector: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in vector.items() if k != "source"}, sort_keys=True)


def main(args: list[str]) -> None:
    sources: list[dict[str, Any]] = []
    vectors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for arg in args:
        spec, local = arg.split("=", 1)
        repo_path, commit = spec.rsplit("@", 1)
        repository, path = repo_path.split(":", 1)
        data = json.loads(Path(local).read_text("utf-8"))
        taken = 0
        for raw in data["vectors"]:
            name = raw.get("protocol_name") or raw.get("name", "")
            if raw.get("fail") or not SUPPORTED.fullmatch(name):
                continue
            vector = normalise(raw, f"{repository}:{path}")
            if identity(vector) in seen:
                continue
            seen.add(identity(vector))
            vectors.append(vector)
            taken += 1
        sources.append({"repository": repository, "path": path, "commit": commit, "vectors": taken})
    document = {
        "description": (
            "Published Noise Protocol test vectors (rev. 34) for the protocols "
            "agent/channel implements, copied unchanged from the sources below by "
            "tests/vectors/noise/extract.py. Messages alternate initiator, responder, "
            "initiator, ...; those after the handshake are transport messages."
        ),
        "sources": sources,
        "vectors": vectors,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n", "utf-8")
    print(f"{OUT}: {len(vectors)} vectors")


if __name__ == "__main__":
    main(sys.argv[1:])
