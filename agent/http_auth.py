"""Who the shared HTTP server (:mod:`agent.http`) serves: the access token
(``Authorization: Bearer``, or a cookie a ``?token=`` link sets in a browser),
the ``Host`` header a loopback server without a token insists on, and the paths
open to anyone. Sans-IO: a request in, a refusal (or the login's redirect) or
``None`` out; the server counts and sends."""

from __future__ import annotations

import hmac
from collections.abc import Collection
from urllib.parse import urlencode

from .http_messages import Request, Response, json_response, request_cookies

__all__ = ["AccessGate"]

_READS = ("GET", "HEAD")


class AccessGate:
    """The guards of one server: with ``token``, every request must carry it
    (compared in constant time), in the ``Authorization`` header or, with
    ``login_cookie``, in that cookie; ``allowed_hosts``: the only hosts a
    request may name (``HOST:PORT`` with the server's port); ``open_paths``:
    served to a ``GET`` or ``HEAD`` without the token. ``realm``: the token's
    realm in ``WWW-Authenticate``."""

    def __init__(
        self,
        *,
        token: str = "",
        login_cookie: str | None = None,
        allowed_hosts: Collection[str] | None = None,
        open_paths: Collection[str] = (),
        realm: str = "lichen",
    ) -> None:
        self.login_cookie = login_cookie
        self.allowed_hosts = None if allowed_hosts is None else tuple(allowed_hosts)
        self.open_paths = tuple(p.rstrip("/") for p in open_paths)
        self.realm = realm
        self._token = token.encode() if token else None
        self._expected = f"Bearer {token}".encode() if token else None

    def check(self, request: Request, port: int) -> Response | None:
        """``None`` when ``request`` (to a server on ``port``) is to be served;
        else what to answer instead: a ``403`` for another host, the login's
        redirect, or a ``401`` naming how to send the token (see :meth:`refused`)."""
        if not self._host_allowed(request, port):
            given = request.headers.get("host", "")
            return json_response(403, {"error": f"this server does not serve host {given!r}"})
        if self._expected is None or self._open(request):
            return None
        login = self._login(request)  # also when already in: the link leaves the address
        if login is not None:
            return login
        if self._authorized(request):
            return None
        how = "Authorization: Bearer TOKEN"
        if self.login_cookie is not None:
            how += ", or ?token=TOKEN once in a browser"
        refusal = json_response(401, {"error": f"this needs its access token: {how}"})
        refusal.headers.append(("www-authenticate", f'Bearer realm="{self.realm}"'))
        return refusal

    @staticmethod
    def refused(answer: Response) -> bool:
        """Whether an answer of :meth:`check` is a refusal (not the login's redirect)."""
        return answer.status in (401, 403)

    def _host_allowed(self, request: Request, port: int) -> bool:
        if self.allowed_hosts is None:
            return True
        given = request.headers.get("host", "").lower()
        return any(given == f"{h}:{port}" for h in self.allowed_hosts)

    def _open(self, request: Request) -> bool:
        """A ``GET`` or ``HEAD`` of an open path (never a path that only begins alike)."""
        return request.method in _READS and any(
            request.path == p or request.path.startswith(p + "/") for p in self.open_paths
        )

    def _authorized(self, request: Request) -> bool:
        assert self._expected is not None and self._token is not None
        given = request.headers.get("authorization", "").encode("latin-1", "replace")
        if hmac.compare_digest(given, self._expected):
            return True
        if self.login_cookie is None:
            return False
        cookie = request_cookies(request).get(self.login_cookie, "")
        return hmac.compare_digest(cookie.encode("latin-1", "replace"), self._token)

    def _login(self, request: Request) -> Response | None:
        """``?token=TOKEN`` on a GET: the cookie, and the same address without it."""
        if self.login_cookie is None or request.method not in _READS:
            return None
        given = [v for k, v in request.query if k == "token"]
        assert self._token is not None
        if len(given) != 1 or not hmac.compare_digest(
            given[0].encode("utf-8", "replace"), self._token
        ):
            return None
        rest = urlencode([(k, v) for k, v in request.query if k != "token"])
        cookie = f"{self.login_cookie}={given[0]}; Path=/; HttpOnly; SameSite=Strict"
        return Response(
            303,
            b"",
            content_type="text/plain",
            headers=[("location", request.path + (f"?{rest}" if rest else "")),
                     ("set-cookie", cookie), ("cache-control", "no-store")],
        )  # fmt: skip
