"""agent.testing's fake link contexts behave as the agent's: the outbox's passes and
resends, acknowledgements by a cloud's signed entries, the recorded link state;
and the plugin guide's example of testing a transport and an uplink runs."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import re
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from agent.clock import HybridClock
from agent.entry import decode_entry, sign_entry, verify_entry
from agent.identity import Identity
from agent.link_api import SensorReading, TransportContext, UplinkContext
from agent.testing import FakeTransportContext, FakeUplinkContext, wait_until
from agent.uplink.wire import ACKS_COLLECTION, ack_body, batch_size

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def as_transport_context(fake: FakeTransportContext) -> TransportContext:
    return fake  # mypy checks the fake is what a transport gets


def as_uplink_context(fake: FakeUplinkContext) -> UplinkContext:
    return fake  # and what an uplink gets


def signed_ack(cloud: Identity, node_id: str, seq: int) -> bytes:
    return sign_entry(
        cloud, seq=1, prev=None, ts=HybridClock().now(), collection=ACKS_COLLECTION,
        doc_id=node_id, body=ack_body(seq),
    ).raw  # fmt: skip


@contextlib.asynccontextmanager
async def collecting(
    outbox: AsyncIterator[Sequence[bytes]], into: list[Sequence[bytes]]
) -> AsyncIterator[None]:
    async def collect() -> None:
        async for batch in outbox:
            into.append(batch)

    task = asyncio.create_task(collect())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_the_transport_context_answers_what_a_transport_asks() -> None:
    context = as_transport_context(FakeTransportContext(digest="aa" * 8))
    assert context.node_id.startswith("lc1") and context.heads_digest() == "aa" * 8
    fake = FakeTransportContext("lc1given")
    fake.digest = "bb" * 8
    assert (fake.node_id, fake.heads_digest(), fake.digest_reads) == ("lc1given", "bb" * 8, 1)


@pytest.mark.slow
async def test_a_pass_sends_each_entry_once_within_the_size_then_again_until_acknowledged() -> None:
    context = FakeUplinkContext(resend_after=1.0)
    context.append(30, size=100)
    held = context.held()
    for raw in held.values():
        verify_entry(decode_entry(raw))  # real, signed entries of one chain
    batches: list[Sequence[bytes]] = []
    async with collecting(context.outbox(1000), batches):
        await wait_until(lambda: sum(map(len, batches)) >= 30, what="the first round")
        assert all(batch_size(batch) <= 1000 for batch in batches)
        first = [raw for batch in batches for raw in batch][:30]
        assert sorted(first) == sorted(held.values())  # each once
        context.acknowledge(*list(held)[:20])
        await wait_until(lambda: sum(map(len, batches)) >= 40, what="the resends")
        resent = [raw for batch in batches for raw in batch][30:40]
        assert set(resent) == {held[key] for key in list(held)[20:]}
    assert context.passes == 1
    batches.clear()
    async with collecting(context.outbox(1000), batches):  # a fresh pass: the unacknowledged
        await wait_until(lambda: sum(map(len, batches)) >= 10, what="the second pass")
    assert context.passes == 2
    assert {raw for batch in batches for raw in batch} == set(resent)


async def test_a_clouds_signed_acknowledgement_takes_effect_in_receive() -> None:
    trusted, stranger = Identity.generate(), Identity.generate()
    context = FakeUplinkContext(clouds=[trusted.node_id.key])
    context.append(5)
    good = signed_ack(trusted, context.node_id, 3)
    assert await context.receive([signed_ack(stranger, context.node_id, 5), b"junk"]) == 0
    assert context.acked == set()
    assert await context.receive([good]) == 1
    own = context.identity.node_id.key
    assert context.acked == {(own, 1), (own, 2), (own, 3)}
    assert context.received[-1] == [good] and len(context.received) == 2


async def test_link_state_and_readings_are_the_tests_to_see_and_give() -> None:
    fake = FakeUplinkContext()
    context = as_uplink_context(fake)
    context.set_connected(False, "mqtt://broker: refused")
    context.set_connected(True, "mqtt://broker")
    assert fake.connected and fake.states[0] == (False, "mqtt://broker: refused")
    reading = SensorReading("readings/t", "t", "sim", 1, {"t": 20.5}, {})
    fake.add_reading(reading)
    readings = context.readings()
    assert await asyncio.wait_for(anext(readings), 5) == reading


def guide_examples() -> str:
    section = GUIDE.read_text("utf-8").split("### Testing a transport or an uplink", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert blocks, "the guide shows no example"
    return "\n".join(blocks)


@pytest.mark.slow
async def test_the_plugin_guides_example_runs(tmp_path: Path) -> None:
    """The guide's code, as a test module of its own, and each of its tests run."""
    source = tmp_path / "test_guide_example.py"
    source.write_text(guide_examples())
    spec = importlib.util.spec_from_file_location("test_guide_example", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        tests = {n: f for n, f in vars(module).items() if n.startswith("test_")}
        assert len(tests) == 2
        for name, test in tests.items():
            assert inspect.iscoroutinefunction(test)
            folder = tmp_path / name
            folder.mkdir()
            wanted = inspect.signature(test).parameters
            await test(**({"tmp_path": folder} if "tmp_path" in wanted else {}))
    finally:
        del sys.modules[spec.name]
