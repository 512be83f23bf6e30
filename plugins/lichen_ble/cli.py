"""``lichen ble …``: the BLE plugin's commands (entry point ``lichen.commands``: ``ble``).

* ``lichen ble scan`` lists the Lichen nodes nearby: node (the id when this
  node knows it, else the hint), RSSI, room, and whether it holds anything
  this node lacks or lacks anything it holds (its heads digest against ours,
  and against the one of the last sync with it);
* ``lichen ble controllers`` serves emulated controllers (see
  :mod:`lichen_ble.controllers`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from typing import Any

import click

from agent import NodeId
from agent.errors import ConfigError
from agent.plugin_api import NodeView, json_option, node_view, print_json, require_module

from .service import HINT_SIZE, digest_bytes

__all__ = ["ble_group"]


@click.group("ble")
def ble_group() -> None:
    """Bluetooth Low Energy: nodes nearby, emulated controllers."""


@ble_group.command("scan")
@json_option
@click.option("--seconds", default=5.0, show_default=True, help="How long to listen.")
@click.option("--hci", default=None, help="The Bumble HCI transport ([[transports.ble]] hci).")
def scan_command(seconds: float, hci: str | None, as_json: bool) -> None:
    """List the Lichen nodes advertising nearby, with RSSI and whether they hold
    anything new. Uses the radio of the first [[transports.ble]] table (or
    --hci): with the bumble back end not while the agent runs on it; with
    bluez (BlueZ shares its adapter) at any time."""
    node = node_view()
    adapter = None
    if hci is None:
        tables = node.instances("transports", "ble")
        hci = str(tables[0].get("hci", "")) if tables else ""
        if tables and tables[0].get("backend") == "bluez":
            adapter = str(tables[0].get("adapter", "hci0"))
    if not hci and adapter is None:
        raise ConfigError(
            "no radio to scan with",
            file=node.config_file,
            key="[[transports.ble]] hci",
            fix='add a [[transports.ble]] table with hci = "usb:0" or backend = "bluez" '
            "(or pass --hci)",
        )
    me = NodeId.parse(node.node_id).key
    heard = asyncio.run(_scan(hci, me, seconds, adapter=adapter))
    rows = [_row(nearby, node) for nearby in sorted(heard, key=lambda n: -n.rssi)]
    if as_json:
        print_json(rows)
    elif not rows:
        click.echo(f"no Lichen node heard in {seconds:g} s")
    for row in [] if as_json else rows:
        trust = "trusted" if row["trusted"] else "unknown"
        click.echo(
            f"{row['node']}  {row['rssi']:>4} dBm  room {row['room']:>2}  "
            f"{row['new']:<10}  {trust}  {row['address']}"
        )


def _row(nearby: Any, node: NodeView) -> dict[str, Any]:
    """One node heard: its id when this node knows it (trusted), else its hint."""
    hint = nearby.advert.node_hint
    known = [n for n in node.trusted if NodeId.parse(n).key[:HINT_SIZE] == hint]
    name = known[0] if len(known) == 1 else None
    digest = nearby.advert.digest
    synced = node.synced_digest(name) if name else None
    if digest == digest_bytes(node.heads_digest):
        news = "same heads"  # nothing either way
    elif synced is not None and digest_bytes(synced) == digest:
        news = "lacks ours"  # unchanged since our last sync with it: we hold more
    else:
        news = "has new"  # changed since the last sync, or never synced
    return {
        "node": name or f"lc1{base64.b32encode(hint).decode().lower()}…",
        "trusted": name is not None,
        "address": nearby.address,
        "rssi": nearby.rssi,
        "room": nearby.advert.room,
        "digest": digest.hex(),
        "new": news,
    }


async def _scan(hci: str, node: bytes, seconds: float, *, adapter: str | None = None) -> list[Any]:
    """What ``node``'s radio — the Bumble ``hci``, or the BlueZ ``adapter`` —
    hears of other Lichen nodes in ``seconds``."""
    from .radio import RadioHooks
    from .service import AdvertError, parse_advertising_data
    from .transport import Nearby

    found: dict[str, Nearby] = {}

    def heard(sighted: Any) -> None:
        with contextlib.suppress(AdvertError):
            advert = parse_advertising_data(sighted.data)
            if advert is not None and advert.node_hint != node[:HINT_SIZE]:
                found[sighted.address] = Nearby(sighted.address, advert, sighted.rssi, 0.0)

    radio: Any
    hooks = RadioHooks(info=lambda: b"", on_stream=lambda _s: None, on_advert=heard,
                       log=logging.getLogger("lichen.ble.scan"))  # fmt: skip
    if adapter is not None:
        require_module("bleak", install="'lichen[ble]'", purpose="lichen ble scan on BlueZ")
        from .bluez_radio import BluezRadio

        radio = BluezRadio(adapter, hooks, listen=False)
    else:
        require_module("bumble", install="'lichen[ble-hci]'", purpose="lichen ble scan")
        from .bumble_radio import BumbleRadio

        radio = BumbleRadio(hci, node, hooks)
    await radio.start()
    try:
        await radio.scan(True)
        await asyncio.sleep(seconds)
    finally:
        await radio.close()
    return list(found.values())


@ble_group.command("controllers")
@click.argument("endpoints", nargs=-1, required=True)
@click.option("--rate", type=float, default=None, help="Bytes/s per controller (pacing).")
@click.option("--loss", type=float, default=0.0, help="Share of GATT PDUs dropped.")
@click.option("--seed", type=int, default=0, help="Seed of the loss.")
def controllers_command(
    endpoints: tuple[str, ...], rate: float | None, loss: float, seed: int
) -> None:
    """Serve emulated BLE controllers, one per ENDPOINT (tcp-server:HOST:PORT or
    unix-server:PATH), all on one emulated radio, until interrupted. Nodes use
    them with hci = "tcp-client:HOST:PORT". A host that goes away drops its
    links (its peers see a connection timeout) and may come back."""
    from . import controllers

    try:
        parsed = [controllers.parse_endpoint(e) for e in endpoints]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ENDPOINTS") from None
    require_module("bumble", install="'lichen[ble-hci]'", purpose="lichen ble controllers")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(controllers.run(parsed, rate=rate, loss=loss, seed=seed))
