"""Lichen Field's static route on the cloud's HTTP API (a real ``CloudRole``'s
server on a free loopback port, with an API token set):

* the app's files are served without the token, each with its content type
  and the page's policy; everything else still needs the token;
* only the files the package ships: no directory traversal, no sub-folders,
  no look-alike paths, a 404 for what is not there;
* the service worker caches every file the app is made of.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
from pathlib import Path

from agent.config import parse_config
from agent.field import field_files
from agent.home import Home
from agent.identity import Identity

from .helpers.agents import free_port

TOKEN = "a-token-of-the-cloud-api-0123456789"
STATIC = Path(__file__).parent.parent / "agent" / "field" / "static"
WEB_STATIC = Path(__file__).parent.parent / "agent" / "web" / "static"  # shared with the dashboard


def _source(name: str) -> Path:
    """Where the app's file ``name`` is kept in the source tree."""
    return STATIC / name if (STATIC / name).exists() else WEB_STATIC / name


Answer = tuple[int, dict[str, str], bytes]


def _get(port: int, path: str, method: str = "GET", token: str = "") -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


async def test_the_app_is_served_without_the_token_and_nothing_else_is(tmp_path: Path) -> None:
    from agent.cloud.role import CloudRole

    home = Home(tmp_path / "cloud")
    home.path.mkdir()
    config = parse_config(
        f'[node]\nrole = "cloud"\n[cloud]\nbroker = "mqtt://127.0.0.1:{free_port()}"\n'
        f'http = "127.0.0.1:0"\nhttp_token = "{TOKEN}"\n'
    )
    role = CloudRole(home, config, Identity.generate())
    assert role.http is not None
    await role.http.start()
    port = role.http.port

    def get(path: str, method: str = "GET", token: str = "") -> Answer:
        return _get(port, path, method, token)

    try:
        status, headers, _ = await asyncio.to_thread(get, "/field")
        assert status == 303 and headers["location"] == "/field/"
        status, headers, page = await asyncio.to_thread(get, "/field/")
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert b"<title>Lichen Field</title>" in page
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        types = {}
        for name in sorted(field_files()):
            status, headers, body = await asyncio.to_thread(get, f"/field/{name}")
            assert status == 200, name
            assert body == _source(name).read_bytes(), name
            types[name] = headers["content-type"]
        assert types["app.js"] == types["sw.js"] == "text/javascript; charset=utf-8"
        assert types["field.css"] == "text/css; charset=utf-8"
        assert types["icon.svg"] == "image/svg+xml"
        assert types["manifest.webmanifest"] == "application/manifest+json"
        assert json.loads((STATIC / "manifest.webmanifest").read_text())["start_url"] == "./"
        status, headers, body = await asyncio.to_thread(get, "/field/app.js", "HEAD")
        assert status == 200 and body == b""
        for path in (
            "/field/nope.js",
            "/field/../pyproject.toml",
            "/field/..%2f..%2fhttp.py",
            "/field/%2e%2e/app.py",
            "/field/static/app.js",
            "/field/./app.js",
            "/field/.app.js",
            "/field/app.py",
            "/field/APP.JS",
            "/field/app.js/",
            "/field/__init__.py",
        ):
            status, _, body = await asyncio.to_thread(get, path)
            assert status == 404, (path, status, body)
        # the token still guards everything else, and writes under /field too
        for method, path in (("GET", "/v1/feeds"), ("GET", "/fieldwork/app.js"),
                             ("POST", "/field/"), ("POST", "/v1/bundles")):  # fmt: skip
            status, headers, _ = await asyncio.to_thread(get, path, method)
            assert status == 401, (method, path, status)
            assert headers["www-authenticate"].startswith("Bearer")
        status, _, _ = await asyncio.to_thread(get, "/field/", "POST", TOKEN)
        assert status == 405
    finally:
        await role.http.close()
        await role.node.close()


def test_the_service_worker_caches_every_file_of_the_app() -> None:
    source = (STATIC / "sw.js").read_text()
    listed = re.search(r"const SHELL = \[(.*?)\];", source, re.S)
    assert listed is not None
    shell = set(re.findall(r'"([^"]+)"', listed.group(1)))
    shipped = set(field_files())
    assert shell == (shipped - {"sw.js"}) | {"./"}
    imported = set(re.findall(r'from "\./([a-z]+\.js)"', "".join(
        _source(n).read_text() for n in shipped if n.endswith(".js"))))  # fmt: skip
    assert imported <= shipped
