"""Lichen Field in Debian's Chromium (Playwright), end to end with real
processes: a board (``lichen run --mule-http``, simulated sensors, one public
collection) and a cloud (``lichen cloud``, its HTTP API on a fixed free
loopback port, no broker needed for bundles), both on loopback.

The phone loads the app from the cloud, and the cloud goes away (the field has
no network). The phone visits the board: the contact breaks after two bundles,
the next visit resumes from the cursor kept with them, and collects in small
bundles until the board has nothing more; the public collection is plotted
with the readings the board stored. Offline, the app reloads from its service
worker with everything it carries. Online again with the cloud back, it
uploads by itself: the cloud stores every entry carried, gap-free, and
answers receipts. On the next visit the receipts go back to the board, which
prunes what they cover.

Set ``LICHEN_SCREENSHOTS=DIR`` to keep the phone and desktop screenshots
(docs/field-phone.png, docs/field-desktop.png are made this way).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.entry import decode_entry
from agent.identity import NodeId
from agent.readings import decode_reading_batch

from .helpers.agents import free_port, make_nodes, node_id, start, stop, wait_for
from .helpers.cloud import CloudProcess, http_get, make_cloud_home, start_cloud
from .test_dashboard_browser import _shoot, _wait, browser
from .test_mule_processes import entries_by, mule_address, own_seqs_held

pytestmark = pytest.mark.slow

__all__ = ["browser"]  # the fixture, shared with the dashboard's test

ROW = 'tr[data-node="{}"]'


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    stop(processes)


def stored_readings(home: Path, collection: str) -> dict[int, dict[str, Any]]:
    """The board's own readings of ``collection``, by time (read-only)."""
    with sqlite3.connect(f"file:{home / 'log.db'}?mode=ro", uri=True) as conn:
        raws = conn.execute(
            "SELECT e.raw FROM entries e JOIN collections c ON c.id = e.collection "
            "WHERE c.name = ?",
            (collection,),
        ).fetchall()
    return {r.ts_ms: r.values for (raw,) in raws
            for r in decode_reading_batch(decode_entry(raw).body)}  # fmt: skip


def carried(page: Any, me: str) -> dict[str, int]:
    values: dict[str, int] = page.eval_on_selector(
        ROW.format(me),
        "r => ({bundles: +r.dataset.bundles, entries: +r.dataset.entries,"
        " receipts: +r.dataset.receipts})",
    )
    return values


def visit(page: Any, me: str) -> None:
    """Tap Visit on the board's card and wait until the visit ended."""
    card = f'article.board[data-node="{me}"]'
    before = int(page.get_attribute(card, "data-visits") or 0)
    page.click(f"{card} button.visit")
    _wait(page, "([c, n]) => +document.querySelector(c).dataset.visits > n", [card, before], 60)


def test_the_app_carries_bundles_offline_to_the_cloud_and_receipts_back(
    tmp_path: Path, browser: Any, running: list[subprocess.Popen[str]]
) -> None:
    (board,) = make_nodes(tmp_path, 1, trust=False)
    me = node_id(board)
    cloud_home = tmp_path / "cloud"
    cloud = make_cloud_home(cloud_home, f'broker = "mqtt://127.0.0.1:{free_port()}"', trust=[me])
    with (board / "lichen.toml").open("a") as f:
        f.write(
            f'\n[retention]\nack_from = ["{cloud.node_id}"]\nkeep_after_ack = "0"\ninterval = 0.5\n'
            '\n[mule]\npublic = ["readings/climate"]\n'
        )
    process = start(board, "--mule-http", "127.0.0.1:0")
    running.append(process)
    board_url = f"http://{mule_address(board, process)}"
    port = free_port()
    app = f"http://127.0.0.1:{port}/field/"
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = context.new_page()
    cloud_process: CloudProcess
    with start_cloud(cloud_home, "--http", f"127.0.0.1:{port}", wait=False) as cloud_process:
        cloud_process.wait(lambda: cloud_process.status()["cloud"]["sink_ready"], what="sink")
        page.goto(app)
        assert page.evaluate("navigator.serviceWorker.ready.then(() => true)") is True
        page.evaluate("localStorage.setItem('lichen-field-budget', '4096')")
    # the field: the cloud is out of reach from here on
    wait_for("readings", lambda: len(own_seqs_held(board, me)) >= 20, process=process)
    page.fill("#address", board_url)
    page.click("#add button[type=submit]")
    page.wait_for_selector(f'article.board[data-node="{me}"]')

    # the contact breaks after one bundle: what came whole is kept, with its cursor
    asked = []

    def cut(route: Any) -> None:
        asked.append(route.request.url)
        if len(asked) == 2:
            route.abort("connectionreset")
        else:
            route.continue_()

    context.route("**/mule/v1/bundle?*", cut)
    visit(page, me)
    context.unroute("**/mule/v1/bundle?*")
    assert len(asked) == 2
    assert "Failed to fetch" in page.text_content(f'article.board[data-node="{me}"] p.status')
    assert carried(page, me)["bundles"] == 1
    visit(page, me)  # resumes from the cursor kept with the first bundle
    holding = carried(page, me)
    assert holding["bundles"] >= 3 and holding["receipts"] == 0, holding
    assert "out of reach" in page.text_content("#upload-status")

    # the public collection plotted: each point a reading the board stored
    series = 'article.series[data-collection="readings/climate"]'
    page.wait_for_selector(f"{series} svg.plot circle.pt")
    field = page.get_attribute(f"{series} svg.plot", "data-field")
    points = page.eval_on_selector_all(
        f"{series} circle.pt", "els => els.map(e => [+e.dataset.ts, +e.dataset.v])"
    )
    stored = stored_readings(board, "readings/climate")
    assert len(points) >= 8
    for ts, value in points:
        assert stored[int(ts)][field] == pytest.approx(value), (ts, value)
    assert len({int(ts) for ts, _ in points}) == len(points)

    # offline: closed and opened again from the service worker's cache
    context.set_offline(True)
    page.reload()
    page.wait_for_selector(f"{ROW.format(me)}[data-bundles]")
    assert carried(page, me) == holding
    assert page.text_content("#network") == "offline"
    page.wait_for_selector(f"{series} svg.plot circle.pt")
    widths = page.evaluate(
        "({page: document.documentElement.scrollWidth, view: window.innerWidth,"
        " widest: Math.max(...[...document.querySelectorAll('main *')]"
        ".map(e => e.getBoundingClientRect().right))})"
    )
    _shoot(page, "field-phone.png", tmp_path)
    assert widths["page"] <= widths["view"] == 390, widths  # nothing scrolls sideways
    assert widths["widest"] <= widths["view"] + 0.5, widths

    # online again, the cloud back: the app uploads by itself and keeps the receipts
    with start_cloud(cloud_home, "--http", f"127.0.0.1:{port}", wait=False) as cloud_process:
        cloud_process.wait(lambda: cloud_process.status()["cloud"]["sink_ready"], what="sink")
        context.set_offline(False)
        _wait(page, "s => { const r = document.querySelector(s);"
              " return r && r.dataset.bundles === '0' && +r.dataset.receipts > 0; }",
              ROW.format(me))  # fmt: skip
        _code, body, _ = http_get(cloud_process.http + "/v1/feeds")
        page.set_viewport_size({"width": 1280, "height": 900})
        _shoot(page, "field-desktop.png", tmp_path, full_page=True)
    feeds = {f["node_id"]: f for f in json.loads(body)["feeds"]}
    key = NodeId.parse(me).key
    held = entries_by(cloud_home, key)
    assert held == holding["entries"], (held, holding)  # every entry carried, stored once
    acked = feeds[me]["acked_seq"]
    assert acked == feeds[me]["head_seq"] and acked >= held  # no gap: the resume lost nothing

    # the next visit hands the receipts back; the board prunes what they cover
    assert entries_by(board, cloud.node_id.key) == 0
    visit(page, me)
    assert carried(page, me)["receipts"] == 0
    assert entries_by(board, cloud.node_id.key) >= 2  # the receipt and a time beacon
    wait_for("the acknowledged readings pruned", lambda: own_seqs_held(board, me)[0] > acked,
             log=board / "agent.log", process=process)  # fmt: skip
    context.close()
    stop([process])
    assert process.returncode == 0, (board / "agent.log").read_text()[-3000:]
