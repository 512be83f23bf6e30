"""The static route of Lichen Field: ``GET /field/NAME`` answers a file of the
package's ``static/`` folder, ``/field/`` its ``index.html``, ``/field`` a
redirect there.

Only names of one path segment made of ``a-z 0-9 _ -`` and one known
extension are looked up (``../``, ``%2e%2e``, sub-folders and hidden files are
404 before the file system is asked), and only files the package ships are
answered: the app holds no key and no configuration, which is why the cloud
serves it without its API token (:class:`agent.http_auth.AccessGate`, its ``open_paths``).

Every file is answered with ``Cache-Control: no-cache`` (the browser asks
again, the service worker decides what works offline) and the page's
policy: scripts and styles from here only, requests (``connect-src``) to any
board address — a board is reached at whatever address the technician types.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from ..http import Request, Response, json_response
from ..http_messages import reads_only

__all__ = ["FIELD_PATH", "field_file", "field_files", "field_response"]

#: where the cloud serves the app (the service worker's scope is this folder)
FIELD_PATH = "/field"

_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "webmanifest": "application/manifest+json",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.([a-z]+)")
_HEADERS = [
    ("content-security-policy",
     "default-src 'self'; connect-src *; img-src 'self' data:; style-src 'self'; "
     "script-src 'self'; worker-src 'self'; manifest-src 'self'; frame-ancestors 'none'; "
     "base-uri 'none'; form-action 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-cache"),
]  # fmt: skip


#: files the app shares with the board's dashboard, kept once in ``agent.web``
_SHARED = {"plot.js": "agent.web", "base.css": "agent.web"}


@cache
def field_files() -> dict[str, str]:
    """The app's files by name, with their content types (what the package ships)."""
    folder = resources.files("agent.field").joinpath("static")
    out = {}
    for item in folder.iterdir():
        match = _NAME.fullmatch(item.name)
        if item.is_file() and match and match.group(1) in _TYPES:
            out[item.name] = _TYPES[match.group(1)]
    for name in _SHARED:
        out[name] = _TYPES[name.rsplit(".", 1)[1]]
    return out


def field_file(name: str) -> bytes:
    """The bytes of the app's file ``name`` (one of :func:`field_files`)."""
    package = _SHARED.get(name, "agent.field")
    return resources.files(package).joinpath("static", name).read_bytes()


def field_response(request: Request) -> Response | None:
    """The answer to a request under :data:`FIELD_PATH`, or None for any other path."""
    path = request.path
    if path != FIELD_PATH and not path.startswith(FIELD_PATH + "/"):
        return None
    if (refusal := reads_only(request)) is not None:
        return refusal
    if path == FIELD_PATH:
        return Response(303, b"", "text/plain", [("location", FIELD_PATH + "/")])
    name = path[len(FIELD_PATH) + 1 :] or "index.html"
    content_type = field_files().get(name)
    if content_type is None:
        return json_response(404, {"error": f"no such file: {path}"})
    body = field_file(name)
    return Response(200, body, content_type, list(_HEADERS))
