"""Sealed collections: key generations in the fold, sealing and opening entries,
carriers, rotation on revocation, forged handouts, and the exact bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import encoding
from agent.entry import Entry, sign_entry
from agent.fleet import FleetPolicy, FleetView, Keyring, Membership, SealedError, fold, op_body
from agent.fleet.rules import Rule
from agent.fleet.sealing import apply_key, generation_body, is_sealed_body, key_id, stale
from agent.identity import Identity

from .test_fleet_access import Log
from .test_fleet_document import ADMIN, ADMIN2, STRANGER, B, C, Feeds, founded, key

RELAY = Identity(bytes([6]) * 32)

# The vector (docs/fleet.md, "Sealed collections"): fixed keys -> exact bytes.
V_FLEET = bytes([0x11]) * 16
V_SECRET, V_EPHEMERAL, V_NONCE = bytes([0x42]) * 32, bytes([0x43]) * 32, bytes([0x24]) * 24
V_KEY_BODY = bytes.fromhex(
    "a6626f70636b65796367656e01646b65797381825820ed4928c628d1c2c6eae90338905995612959273a"
    "5c63f93636c14614ac8737d15850cdefd8783a91b446640e2e1f95599db35e484a0071bd2182b3b60d08"
    "12c10c700281b6f928321896b8eaaa157277106c9e4cba4600f75d97e46c69b1d41abf4ddcbb3653f321"
    "d6e62482d78c8f01acfd65666c6565745011111111111111111111111111111111667075626c69635820"
    "132c442be010fbd57e72603328aa76e71fccc1503aae219327d14d9c9993f4726a636f6c6c656374696f"
    "6e6a72656164696e67732f2a"
)
V_SEALED_BODY = bytes.fromhex(
    "a1667365616c65645836968cbbacd68877fe242424242424242424242424242424242424242424242424"
    "ec9040626ac7543eb32cedd0041ca42e80d97299ab35"
)


def sealed_rule(fleet: bytes, pattern: str = "readings/*") -> dict[str, object]:
    return op_body(
        "rule", fleet, collection=pattern, write=["sensors"], read=["ops"], carry=["relays"],
        sealed=True,
    )  # fmt: skip


def keys(
    fleet: bytes, gen: int, readers: list[Identity], pattern: str = "readings/*"
) -> dict[str, object]:
    return op_body("key", fleet, **generation_body(pattern, gen, [key(r) for r in readers]))


def fleet_of(feeds: Feeds, genesis: Entry, fleet: bytes) -> list[Entry]:
    """B reads (ops), C writes (sensors), RELAY carries (relays), ADMIN2 reads too."""
    entries = [genesis]
    ts = 110
    for who, group in ((B, "ops"), (C, "sensors"), (RELAY, "relays"), (ADMIN2, "ops")):
        entries.append(feeds.write(ADMIN, ts, op_body("add", fleet, key(who), groups=[group])))
        entries.append(feeds.write(ADMIN, ts + 1, op_body("approve", fleet, key(who))))
        ts += 2
    entries.append(feeds.write(ADMIN, 130, sealed_rule(fleet)))
    return entries


def test_the_vector_key_entry_and_sealed_body_have_exact_bytes() -> None:
    fields = generation_body("readings/*", 1, [key(B)], secret=V_SECRET, ephemerals=[V_EPHEMERAL])
    body = op_body("key", V_FLEET, **fields)
    assert encoding.dumps(body) == V_KEY_BODY
    assert key_id(fields["public"]).hex() == "968cbbacd68877fe"
    m = Membership(V_FLEET, rules={"readings/*": Rule("readings/*", read=("ops",), sealed=True)})
    assert apply_key(m.keys, body, key(ADMIN), 1) == ""
    sealed = Keyring(C).seal(m, "readings/climate", {"t": 21.5}, nonce=V_NONCE)
    assert encoding.dumps(sealed) == V_SEALED_BODY
    assert len(V_SEALED_BODY) - len(encoding.dumps({"t": 21.5})) == 58  # the overhead
    entry = sign_entry(C, seq=1, prev=None, ts=1 << 16, collection="readings/climate", body=sealed)
    assert Keyring(B).open(m, entry).body == {"t": 21.5}


def test_a_writer_seals_readers_open_and_a_carrier_relays_what_it_cannot_read(
    tmp_path: Path,
) -> None:
    feeds, genesis, fleet = founded()
    entries = fleet_of(feeds, genesis, fleet)
    entries.append(feeds.write(ADMIN, 140, keys(fleet, 1, [B, ADMIN2])))
    m = fold(entries, fleet)
    assert not m.ignored and stale(m) == []
    body = Keyring(C).seal(m, "readings/climate", {"v": {"t": [21.5]}})
    assert is_sealed_body(body) and Keyring(C).seal(m, "pumps", {"on": 1}) == {"on": 1}
    reading = feeds.write(C, 150, body, collection="readings/climate")
    assert Keyring(B).open(m, reading).body == {"v": {"t": [21.5]}}
    assert Keyring(ADMIN2).open(m, reading).body == {"v": {"t": [21.5]}}
    assert Keyring(C).open(m, reading).body == {"v": {"t": [21.5]}}  # its own
    with pytest.raises(SealedError, match=r"not handed key generation 1 of readings/\*.*"
                       r"carries these entries but may not read them"):  # fmt: skip
        Keyring(RELAY).open(m, reading)
    with pytest.raises(SealedError, match="not handed"):  # a writer reads no one else's
        Keyring(C).open(m, feeds.write(B, 151, Keyring(B).seal(m, "readings/x", 1), "readings/x"))
    keyring = Keyring(RELAY)
    assert list(keyring.readable(m, [reading])) == [] and keyring.unreadable == 1
    # the access policy on a real log: the carrier is sent them, a stranger is not
    log = Log(tmp_path / "log.db")
    for e in entries:
        log.store.insert(e)
    policy = FleetPolicy(FleetView(log.store, fleet))
    sent = {n for n in (ADMIN, B, C, RELAY, STRANGER) if policy.may_read(key(n), "readings/x")}
    assert sent == {B, RELAY}  # a reader and a carrier; not the writer, the founder, a stranger
    assert policy.may_write(key(C), "readings/x", 1)
    assert not policy.may_write(key(RELAY), "readings/x", 1)
    # an altered ciphertext is refused, not mis-read
    bad = dict(body)
    bad["sealed"] = body["sealed"][:-1] + bytes([body["sealed"][-1] ^ 1])
    forged = feeds.write(C, 152, bad, collection="readings/climate")
    with pytest.raises(SealedError, match="does not decrypt under key generation 1"):
        Keyring(B).open(m, forged)


def test_a_revoked_reader_keeps_the_old_generation_but_not_the_rotated_one() -> None:
    feeds, genesis, fleet = founded()
    entries = fleet_of(feeds, genesis, fleet)
    entries.append(feeds.write(ADMIN, 140, keys(fleet, 1, [B, ADMIN2])))
    old = feeds.write(C, 150, Keyring(C).seal(fold(entries, fleet), "readings/a", 1), "readings/a")
    entries.append(feeds.write(ADMIN, 160, op_body("revoke", fleet, key(ADMIN2), upto=0)))
    m = fold(entries, fleet)
    ((rule, gen, readers),) = stale(m)  # a reader left: the generation must rotate
    assert (rule.pattern, gen, readers) == ("readings/*", 2, [key(B)])
    entries.append(feeds.write(ADMIN, 170, op_body("key", fleet, **generation_body(
        rule.pattern, gen, readers))))  # fmt: skip
    m = fold(entries, fleet)
    assert stale(m) == [] and [g.gen for g in m.keys["readings/*"]] == [1, 2]
    assert key(ADMIN2) not in m.keys["readings/*"][-1].boxes
    new = feeds.write(C, 180, Keyring(C).seal(m, "readings/a", 2), "readings/a")
    assert Keyring(B).open(m, old).body == 1 and Keyring(B).open(m, new).body == 2
    revoked = Keyring(ADMIN2)
    assert revoked.open(m, old).body == 1  # what it already had stays readable to it
    with pytest.raises(SealedError, match="not handed key generation 2"):
        revoked.open(m, new)
    # a joining reader makes the generation stale too
    entries.append(feeds.write(ADMIN, 190, op_body("add", fleet, key(STRANGER), groups=["ops"])))
    entries.append(feeds.write(ADMIN, 191, op_body("approve", fleet, key(STRANGER))))
    assert [(r.pattern, g) for r, g, _ in stale(fold(entries, fleet))] == [("readings/*", 3)]


def test_a_forged_or_malformed_key_handout_is_ignored_with_a_reason() -> None:
    feeds, genesis, fleet = founded()
    entries = fleet_of(feeds, genesis, fleet)
    entries.append(feeds.write(ADMIN, 140, keys(fleet, 1, [B])))
    # a carrier, and a stranger, hand themselves a generation of their own
    entries.append(feeds.write(RELAY, 141, keys(fleet, 2, [RELAY, B])))
    entries.append(feeds.write(STRANGER, 142, keys(fleet, 5, [STRANGER])))
    entries.append(feeds.write(ADMIN, 143, keys(fleet, 1, [B, RELAY])))  # not after 1
    bad = keys(fleet, 3, [B])
    bad["keys"] = [[key(B), b"short"]]
    entries.append(feeds.write(ADMIN, 144, bad))
    m = fold(entries, fleet)
    assert [g.gen for g in m.keys["readings/*"]] == [1]
    assert sorted(i.reason for i in m.ignored) == [
        "generation 1 of readings/* is not after generation 1",
        "keys is not a list of at most 128 [node, 80-byte box] pairs",
        "signed by a node that is not an admin",
        "signed by a node that is not an admin",
    ]
    # the writer seals to the admin's generation; the carrier's forged one does not help it
    reading = feeds.write(C, 150, Keyring(C).seal(m, "readings/a", 7), "readings/a")
    with pytest.raises(SealedError, match="not handed key generation 1"):
        Keyring(RELAY).open(m, reading)
    assert Keyring(B).open(m, reading).body == 7


def test_a_sealed_collection_without_a_generation_refuses_to_write_in_the_clear() -> None:
    feeds, genesis, fleet = founded()
    m = fold(fleet_of(feeds, genesis, fleet), fleet)
    with pytest.raises(SealedError, match="no key generation has reached this node"):
        Keyring(C).seal(m, "readings/a", 1)
    assert [(r.pattern, g, len(n)) for r, g, n in stale(m)] == [("readings/*", 1, 2)]


async def test_a_nodes_writer_seals_sealed_collections_only_and_its_dashboard_opens_them(
    tmp_path: Path,
) -> None:
    """The agent's path: the node's LogWriter with the fleet's sealing (as `lichen run`
    sets it) seals a reading batch of a sealed collection, leaves the rest as it
    was, and refuses to write one in the clear before a key generation is here."""
    from agent.fleet import fleet_sealing, write_fleet_file
    from agent.node import Node
    from agent.web.readings import ReadingsRequest, latest_readings

    feeds, genesis, fleet = founded()
    entries = fleet_of(feeds, genesis, fleet)
    write_fleet_file(tmp_path / "fleet.json", fleet)
    batch = {"t": [1_000], "v": {"level": [40.5]}}
    async with Node(tmp_path / "log.db", C) as node:
        for e in entries:
            await node.writer.insert(e)
        node.writer.seal = fleet_sealing(tmp_path / "fleet.json", node.reader, C)
        with pytest.raises(SealedError, match="no key generation has reached this node"):
            await node.writer.append("readings/tank", batch)
        assert node.reader.head(key(C)) is None  # nothing written in the clear
        gen1 = feeds.write(ADMIN, 140, keys(fleet, 1, [B]))
        await node.writer.insert(gen1)
        sealed = await node.writer.append("readings/tank", batch)
        plain = await node.writer.append("pumps", batch)
        assert is_sealed_body(sealed.body) and plain.body == batch
        sealing = node.writer.seal
        assert sealing is not None
        me = str(C.node_id)
        opened = latest_readings(node.reader, key(C), me, ReadingsRequest("readings/tank"),
                                 readable=sealing.readable)  # fmt: skip
        shut = latest_readings(node.reader, key(C), me, ReadingsRequest("readings/tank"))
    assert [r["values"] for r in opened["readings"]] == [{"level": 40.5}]
    assert shut["readings"] == []
    assert Keyring(B).open(fold([*entries, gen1], fleet), sealed).body == batch
