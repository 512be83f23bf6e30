"""The dashboard in Debian's Chromium (Playwright), on a real ``lichen run`` of a
simulated board serving ``--http`` on a free loopback port.

* A new reading appears on the page without a reload (the event stream).
* The plot's points are the readings stored in the log: time, value, and the
  higher value drawn higher.
* On a phone-sized screen nothing scrolls sideways.
* With the token required, the page answers 401 until the one-time link, after
  which the page lives on its cookie (which scripts cannot read).
* The bundle link downloads a bundle that imports whole.

Set ``LICHEN_SCREENSHOTS=DIR`` to keep the desktop and phone screenshots
(docs/dashboard-desktop.png, docs/dashboard-phone.png are made this way).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.bundle.importer import import_into_store
from agent.readings import decode_reading_batch
from agent.store.log_store import LogStore

from .conftest import run_lichen
from .helpers.agent_process import RunningAgent, running_agent

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CLIMATE = 'article.sensor[data-collection="readings/climate"]'


def _why_no_browser() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no {CHROMIUM} (scripts/system-deps.sh test installs Debian's chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = _why_no_browser()
    if problem is not None:
        pytest.fail(problem)  # the suite's own files install both: a missing one is a bug
    from playwright.sync_api import sync_playwright

    # Playwright never downloads a browser here: it drives Debian's own
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _board(tmp_path: Path, extra: str = "") -> Path:
    home = tmp_path / "board"
    run_lichen("init", "--board", "sim", "--name", "greenhouse-1", home=home)
    if extra:
        with (home / "lichen.toml").open("a") as f:
            f.write(extra)
    return home


def _url(agent: RunningAgent) -> str:
    agent.wait_for(lambda: ((agent.status() or {}).get("http") or {}).get("url"))
    status = agent.status()
    assert status is not None
    return str(status["http"]["url"])


def _stored(home: Path, collection: str, field: str) -> dict[int, Any]:
    with LogStore(home / "log.db") as store:
        return {r.ts_ms: r.values[field] for e in store.by_time(collection)
                for r in decode_reading_batch(e.body) if field in r.values}  # fmt: skip


def _points(page: Any, card: str) -> list[dict[str, float]]:
    points: list[dict[str, float]] = page.eval_on_selector_all(
        f"{card} svg.plot circle.pt",
        "els => els.map(e => ({ts: +e.dataset.ts, v: +e.dataset.v, cy: +e.getAttribute('cy')}))",
    )
    return points


def _wait(page: Any, function: str, arg: Any = None, timeout: float = 30.0) -> None:
    """Poll ``function(arg)`` in the page until it is true. Not ``wait_for_function``:
    its polling evaluates strings in the page, which the page's policy forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(function, arg):
        assert time.monotonic() < deadline, f"not true within {timeout} s: {function}"
        page.wait_for_timeout(100)


def _shoot(page: Any, name: str, tmp_path: Path, *, full_page: bool = False) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=full_page)
    keep = os.environ.get("LICHEN_SCREENSHOTS")
    if keep:
        shutil.copy(path, Path(keep) / name)


def test_the_page_updates_live_and_plots_the_stored_readings(tmp_path: Path, browser: Any) -> None:
    home = _board(tmp_path)
    with running_agent(home, "--http", "127.0.0.1:0") as agent:
        url = _url(agent)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_selector(f"{CLIMATE} svg.plot circle.pt")
        page.evaluate("window.notReloaded = true")
        first = _points(page, CLIMATE)
        newest = max(p["ts"] for p in first)
        # a reading taken after the page loaded appears without a reload
        _wait(
            page,
            "newest => [...document.querySelectorAll("
            "'article.sensor[data-collection=\"readings/climate\"] circle.pt')]"
            ".some(c => +c.dataset.ts > newest)",
            newest,
        )
        assert page.evaluate("window.notReloaded") is True
        _wait(page, "() => document.querySelectorAll('article.sensor circle.pt').length >= 12")
        field = page.get_attribute(f"{CLIMATE} svg.plot", "data-field")
        points = _points(page, CLIMATE)
        latest = page.text_content(f'{CLIMATE} .latest span[data-field="{field}"] b')
        rows = page.eval_on_selector_all(
            "#sensors tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
        )
        _shoot(page, "dashboard-desktop.png", tmp_path, full_page=True)
        with page.expect_download() as download:
            page.click("#bundle")
        bundle = tmp_path / "download.lcb"
        download.value.save_as(bundle)
        page.close()
    stored = _stored(home, "readings/climate", str(field))
    assert field in {"humidity", "temperature"}
    assert len(points) >= 3
    for p in points:  # each point is a stored reading, at its time, with its value
        assert p["ts"] in stored, p
        assert p["v"] == pytest.approx(stored[int(p["ts"])])
    shown = sorted(int(p["ts"]) for p in points)
    held = sorted(t for t in stored if shown[0] <= t <= shown[-1])
    assert shown == held  # none left out between the first and the last
    by_value = sorted(points, key=lambda p: p["v"])
    assert all(a["cy"] >= b["cy"] for a, b in zip(by_value, by_value[1:]))  # higher is higher
    assert latest is not None and float(latest.split()[0]) in set(stored.values())
    assert {r[0] for r in rows} >= {"climate", "door", "rain", "board"}
    assert all(r[1] == "running" and r[3] == "0" for r in rows)  # state, sample errors
    with LogStore(tmp_path / "copy.db") as copy:
        report = import_into_store(bundle, copy, opener=None)
    assert report.refused == 0 and report.stored > 0


def test_a_phone_screen_scrolls_only_down(tmp_path: Path, browser: Any) -> None:
    home = _board(tmp_path)
    with running_agent(home, "--http", "127.0.0.1:0") as agent:
        url = _url(agent)
        context = browser.new_context(
            viewport={"width": 390, "height": 844},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
        )
        page = context.new_page()
        page.goto(url)
        _wait(
            page, "() => document.querySelectorAll('article.sensor svg.plot circle.pt').length >= 8"
        )
        page.wait_for_selector("#peers")
        widths = page.evaluate(
            "({page: document.documentElement.scrollWidth, view: window.innerWidth,"
            " widest: Math.max(...[...document.querySelectorAll('main *')]"
            ".map(e => e.getBoundingClientRect().right))})"
        )
        columns = page.evaluate(
            "new Set([...document.querySelectorAll('article.sensor')]"
            ".map(e => Math.round(e.getBoundingClientRect().left))).size"
        )
        _shoot(page, "dashboard-phone.png", tmp_path)
        context.close()
    assert widths["view"] == 390
    assert widths["page"] <= widths["view"], widths  # nothing scrolls sideways
    assert widths["widest"] <= widths["view"] + 0.5, widths
    assert columns == 1  # the cards stack


def test_beyond_loopback_the_page_needs_the_token_link(tmp_path: Path, browser: Any) -> None:
    home = _board(tmp_path, "\n[http]\ntoken_on_loopback = true\n")
    token = run_lichen("http", "token", home=home).stdout.strip()
    with running_agent(home, "--http", "127.0.0.1:0") as agent:
        url = _url(agent)
        context = browser.new_context()
        page = context.new_page()
        refused = page.goto(url)
        assert refused is not None and refused.status == 401
        linked = run_lichen("http", "url", home=home).stdout.strip()
        assert linked == f"{url}?token={token}"
        page.goto(linked)
        assert page.url == url  # the token left the address bar
        page.wait_for_selector(f"{CLIMATE} svg.plot circle.pt")
        page.wait_for_selector("#live.ok")  # the event stream is open, on the cookie
        cookies = {c["name"]: c for c in context.cookies()}
        script_sees = page.evaluate("document.cookie")
        context.close()
    cookie = cookies["lichen_token"]
    assert cookie["value"] == token and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "lichen_token" not in script_sees
