"""Commands from the cloud: the format and the judge (agent.commands), the overlay
file (agent.runtime.overrides) and a running agent applying them (agent.runtime)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent.clock import HybridClock
from agent.cloud_feed import COMMANDS_COLLECTION
from agent.commands import (
    Command,
    CommandJudge,
    check_key,
    command_body,
    parse_assignment,
    result_body,
    result_doc_id,
)
from agent.config import parse_config
from agent.entry import Entry
from agent.errors import ConfigError
from agent.identity import Identity, NodeId
from agent.runtime.overrides import Overrides, render

from .helpers.cloud import Feed

NOW = 1_795_000_000_000
ME = str(NodeId(Identity.generate().node_id.key))
OTHER = str(Identity.generate().node_id)


def command(cloud: Feed, ident: str = "c-1", **kw: Any) -> Entry:
    body = {"id": ident, "to": [ME], "expires_ms": NOW + 60_000,
            "set": {"sensors.climate.interval": 2.0}} | kw  # fmt: skip
    return cloud.add(COMMANDS_COLLECTION, body, doc_id=body.get("id", ident))


def test_the_judge_checks_in_order_and_acts_on_an_id_once() -> None:
    cloud, stranger = Feed(Identity.generate()), Feed(Identity.generate())
    judge = CommandJudge(ME)
    clouds = {cloud.author}

    def reason(entry: Entry, now: int = NOW) -> str | None:
        verdict = judge.judge(entry, clouds, now)
        return "execute" if verdict.execute else verdict.reason

    assert reason(command(stranger, "c-9")) == "untrusted"  # a forged one takes no id
    assert reason(command(cloud, "c-9")) == "execute"
    assert reason(command(cloud, "c-9")) == "replayed"  # another entry, the same id
    assert reason(command(cloud, "c-2", to=[OTHER])) == "not_for_me"
    assert reason(command(cloud, "c-3", expires_ms=NOW)) == "expired"
    assert reason(command(cloud, "c-3", expires_ms=NOW + 1)) == "replayed"
    assert reason(command(cloud, "c-4", set={"mesh.accept": "any"})) == "not_allowed"
    assert reason(command(cloud, "c-5", set={})) == "malformed"
    assert reason(command(cloud, "c 6")) == "malformed"
    assert reason(command(cloud, "c-7", to=["nobody"])) == "malformed"
    assert reason(command(cloud, "c-8", extra=1)) == "malformed"
    entry = cloud.add(
        COMMANDS_COLLECTION,
        {"id": "c-10", "to": [ME], "expires_ms": NOW + 1, "set": {"log.flush_interval": 1}},
        doc_id="c-11",
    )
    assert reason(entry) == "malformed"  # the document id is not the command id


def test_result_bodies() -> None:
    cloud = Feed(Identity.generate())
    judge = CommandJudge(ME)
    entry = command(cloud, "c-1")
    verdict = judge.judge(entry, {cloud.author}, NOW)
    assert result_body(entry, verdict, NOW) == {
        "id": "c-1", "cloud": cloud.node, "seq": 1, "outcome": "executed", "reason": None,
        "detail": "applied", "at_ms": NOW}  # fmt: skip
    failed = result_body(entry, verdict, NOW, failed="no sensor named 'climate'")
    assert (failed["outcome"], failed["reason"]) == ("refused", "invalid")
    bad = cloud.add(COMMANDS_COLLECTION, "not a map", doc_id="x")
    refused = result_body(bad, judge.judge(bad, {cloud.author}, NOW), NOW)
    assert (refused["id"], refused["reason"]) == (None, "malformed")


def test_assignments_and_keys() -> None:
    assert parse_assignment("sensors.climate.interval=2.5") == ("sensors.climate.interval", 2.5)
    assert parse_assignment(" log.flush_interval = 5 ") == ("log.flush_interval", 5)
    for bad in ("sensors.climate.interval", "=2", "mesh.accept=any", "log.flush_interval=two"):
        with pytest.raises(ValueError):
            parse_assignment(bad)
    with pytest.raises(ValueError, match=r"sensors\.NAME\.interval"):
        check_key("sensors.climate.kind")
    with pytest.raises(ValueError):
        command_body(Command("c-1", (), NOW, {"log.flush_interval": 1.0}))


def test_overrides_lay_over_the_configuration_and_survive(tmp_path: Path) -> None:
    path = tmp_path / "overrides.toml"
    config = parse_config(
        '[log]\nflush_interval = 2.0\n[[sensors.sim]]\nname = "climate"\ninterval = 0.2\n'
        '[[sensors.sim]]\nname = "door"\nkind = "door"\ninterval = 0.5\n'
    )
    overrides = Overrides(path)
    assert overrides.apply(config) is config
    overrides.set({"sensors.climate.interval": 1.0, "log.flush_interval": 0.5})
    text = path.read_text()
    assert tomllib.loads(text) == {"log": {"flush_interval": 0.5},
                                   "sensors": {"climate": {"interval": 1.0}}}  # fmt: skip
    applied = Overrides(path).apply(config)
    assert applied.log.flush_interval == 0.5
    tables = {t["name"]: t for t in applied.plugins["sensors"]["sim"]}
    assert tables["climate"]["interval"] == 1.0 and tables["door"]["interval"] == 0.5
    assert config.plugins["sensors"]["sim"][0]["interval"] == 0.2  # the original is untouched
    assert "[sensors.my-sensor]" not in render({"sensors.my-sensor.interval": 1.0})
    path.write_text("[mesh]\naccept = 'any'\n")
    with pytest.raises(ConfigError, match=r"mesh\.accept"):
        Overrides(path)


def test_a_running_agent_applies_settings_all_or_nothing(tmp_path: Path) -> None:
    from agent.runtime.agent import Agent
    from agent.testing import AgentHarness

    text = '[[sensors.sim]]\nname = "climate"\ninterval = 0.2\n'
    with AgentHarness(text, tmp_path) as h:
        agent: Agent = h.agent
        with pytest.raises(ValueError, match="no sensor instance named 'rain'"):
            agent.apply_settings({"log.flush_interval": 0.5, "sensors.rain.interval": 1.0})
        assert agent.config.log.flush_interval != 0.5  # nothing applied
        with pytest.raises(ConfigError) as refused:
            agent.apply_settings({"sensors.climate.interval": 0})
        assert str(refused.value) == (
            'the command: [[sensors.sim]] "climate" interval = 0: must be at least 0.001. '
            "Fix: seconds between samples, e.g. 1.0"
        )
        agent.apply_settings({"sensors.climate.interval": 1.5, "log.flush_interval": 0.5})
        assert agent.config.log.flush_interval == 0.5
        h.wait_for(lambda: agent.runners[0].configured.config.interval == 1.5)
        assert "interval = 1.5" in (h.home.path / "overrides.toml").read_text()


def test_the_cloud_sends_a_command_until_its_board_answers_or_it_expires(tmp_path: Path) -> None:
    from agent.cloud.orders import OpenCommands, command_outcomes
    from agent.cloud_feed import COMMAND_RESULTS_COLLECTION
    from agent.store.log_store import Draft, LogStore

    cloud, board = Identity.generate(), Identity.generate()
    me, other = str(board.node_id), OTHER
    store = LogStore(tmp_path / "log.db")
    try:
        clock = HybridClock()
        drafts = [
            Draft(
                COMMANDS_COLLECTION,
                command_body(Command(i, (me, other), NOW + ttl, {"log.flush_interval": 1.0})),
                i,
            )
            for i, ttl in (("c-1", 60_000), ("c-2", 1))
        ]
        first, second = store.append(cloud, clock, drafts)
        orders = OpenCommands(cloud.node_id.key)
        orders.refresh(store)
        assert orders.for_board(me, NOW) == [second.raw, first.raw]  # newest first
        assert orders.for_board(me, NOW + 1) == [first.raw]  # c-2 expired
        # the board answers c-1 (its result comes back with its entries)
        answer = CommandJudge(me).judge(first, {cloud.node_id.key}, NOW)
        store.append(board, HybridClock(), [Draft(COMMAND_RESULTS_COLLECTION,
                     result_body(first, answer, NOW), result_doc_id(first))])  # fmt: skip
        orders.refresh(store)
        assert orders.for_board(me, NOW) == [] and orders.for_board(other, NOW) == [first.raw]
        (shown, late) = command_outcomes(store, cloud.node_id.key)
        result = shown.results[me]
        assert result is not None and result["outcome"] == "executed"
        assert shown.results[other] is None and late.results == {me: None, other: None}
    finally:
        store.close()
