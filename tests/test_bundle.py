"""Bundles on real SQLite logs: export, import, idempotence, selections, size limits,
sealing, and every way a bundle can be bad — each refused with its reason while
the importing store stays byte-identical."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from nacl.public import PrivateKey, SealedBox
from nacl.signing import SigningKey

from agent.bundle import BundleError, BundleReader, BundleWriter
from agent.bundle.export import Selection, export_bundle
from agent.bundle.format import (
    CHUNK_HEAD,
    FRAME_HEAD,
    KIND_CHUNK,
    MAGIC,
    MAX_CHUNK,
)
from agent.bundle.importer import (
    check_room,
    import_into_store,
    read_manifest,
    verify_bundle,
)
from agent.bundle.seal import Opener, seal_content_key, x25519_public
from agent.clock import HybridClock
from agent.entry import decode_entry, sign_entry
from agent.identity import Identity
from agent.sansio import NEED_DATA
from agent.store.log_store import Draft, LogStore


def make_store(path: Path, identity: Identity, n: int, collection: str = "readings/x") -> LogStore:
    store = LogStore(path)
    clock = HybridClock()
    for start in range(0, n, 200):
        drafts = [
            Draft(collection, {"i": i, "pad": "p" * 60}) for i in range(start, min(n, start + 200))
        ]
        store.append(identity, clock, drafts)
    return store


def store_digest(store: LogStore) -> str:
    """Everything an import could change: entries, feeds, collections, forks, documents."""
    h = hashlib.sha256()
    conn = store.connection
    for table, order in (
        ("entries", "change"),
        ("feeds", "author"),
        ("collections", "id"),
        ("forks", "id"),
        ("doc_versions", "change"),
    ):
        for row in conn.execute(f"SELECT * FROM {table} ORDER BY {order}"):
            h.update(repr(row).encode())
    return h.hexdigest()


@pytest.fixture
def board(tmp_path: Path) -> tuple[Identity, LogStore]:
    identity = Identity.generate()
    return identity, make_store(tmp_path / "a.db", identity, 1000)


@pytest.fixture
def other(tmp_path: Path) -> tuple[Identity, LogStore]:
    """The importing node, already holding data of its own."""
    identity = Identity.generate()
    return identity, make_store(tmp_path / "b.db", identity, 50, "notes")


@pytest.mark.slow
def test_round_trip_stores_every_entry_once_and_twice_is_a_no_op(board, other, tmp_path):
    a_id, a = board
    b_id, b = other
    report = export_bundle(a, a_id, tmp_path / "x.lcb", chunk_target=4096)
    assert report.manifest.entries == 1000 and report.manifest.chunks > 20
    assert not (tmp_path / "x.lcb.part").exists()
    first = import_into_store(tmp_path / "x.lcb", b, opener=Opener(b_id))
    assert (first.stored, first.held, first.refused) == (1000, 0, 0)
    assert [bytes(r) for (r,) in b.connection.execute(
        "SELECT raw FROM entries e JOIN feeds f ON f.id = e.feed WHERE f.author = ? ORDER BY seq",
        (a_id.node_id.key,),
    )] == [e.raw for e in a.feed(a_id.node_id.key)]  # fmt: skip
    before = store_digest(b)
    again = import_into_store(tmp_path / "x.lcb", b, opener=Opener(b_id))
    assert (again.stored, again.held, again.refused) == (0, 1000, 0)
    assert store_digest(b) == before


def test_an_interrupted_import_goes_on_where_it_stopped(board, other, tmp_path):
    """Half the entries already held (an import cut short): the rest are stored,
    the held ones counted, nothing twice."""
    a_id, a = board
    b_id, b = other
    export_bundle(a, a_id, tmp_path / "x.lcb")
    for entry in a.feed(a_id.node_id.key, 1, 400):
        b.insert(entry)
    report = import_into_store(tmp_path / "x.lcb", b, opener=Opener(b_id))
    assert (report.stored, report.held) == (600, 400)


def test_since_a_previous_bundle_and_max_size_split_an_export(board, other, tmp_path):
    a_id, a = board
    b_id, b = other
    first = export_bundle(a, a_id, tmp_path / "1.lcb", max_size=40_000)
    assert not first.complete and 0 < first.manifest.entries < 1000
    assert (tmp_path / "1.lcb").stat().st_size <= 40_000
    parts = [tmp_path / "1.lcb"]
    while True:
        _, previous = read_manifest(parts[-1])
        nxt = tmp_path / f"{len(parts) + 1}.lcb"
        report = export_bundle(a, a_id, nxt, Selection.continuing(previous), max_size=40_000)
        assert nxt.stat().st_size <= 40_000
        parts.append(nxt)
        if report.complete:
            break
    with pytest.raises(BundleError, match="no room for the first entry"):
        export_bundle(a, a_id, tmp_path / "tiny.lcb", max_size=300)
    assert not (tmp_path / "tiny.lcb").exists() and not (tmp_path / "tiny.lcb.part").exists()
    counts = [read_manifest(p)[1].entries for p in parts]
    assert sum(counts) == 1000, counts
    for p in parts:
        import_into_store(p, b, opener=Opener(b_id))
    assert b.head(a_id.node_id.key).entries == 1000


def test_collections_and_time_select_entries(tmp_path, other):
    b_id, b = other
    a_id = Identity.generate()
    a = LogStore(tmp_path / "a.db")
    clock = HybridClock()
    a.append(a_id, clock, [Draft("readings/x", {"i": i}) for i in range(10)])
    head = a.head(a_id.node_id.key)
    assert head is not None
    middle = head.ts
    a.append(a_id, clock, [Draft("events/door", {"i": i}) for i in range(5)])
    a.append(a_id, clock, [Draft("readings/y", {"i": i}) for i in range(3)])
    one = export_bundle(a, a_id, tmp_path / "r.lcb", Selection(("readings/*",)))
    assert one.manifest.entries == 13 and one.manifest.feeds[0].count == 13
    assert one.manifest.feeds[0].last - one.manifest.feeds[0].first + 1 == 18  # a gap inside
    two = export_bundle(a, a_id, tmp_path / "t.lcb", Selection(since_ts=middle + 1))
    assert two.manifest.entries == 8
    report = import_into_store(tmp_path / "r.lcb", b, opener=Opener(b_id))
    assert report.stored == 13


def test_a_sealed_bundle_opens_only_for_its_cloud(board, other, tmp_path):
    a_id, a = board
    cloud = Identity.generate()
    export_bundle(a, a_id, tmp_path / "s.lcb", seal_to=cloud.node_id)
    data = (tmp_path / "s.lcb").read_bytes()
    some_body = next(a.feed(a_id.node_id.key, 5, 5)).content
    assert some_body not in data  # whoever carries it cannot read it
    b_id, b = other
    before = store_digest(b)
    with pytest.raises(BundleError, match=r"sealed to lc1.*not to this node"):
        import_into_store(tmp_path / "s.lcb", b, opener=Opener(b_id))
    assert store_digest(b) == before
    cloud_store = LogStore(tmp_path / "cloud.db")
    report = import_into_store(tmp_path / "s.lcb", cloud_store, opener=Opener(cloud))
    assert report.stored == 1000


def test_the_sealed_key_is_a_libsodium_sealed_box_to_the_ed25519_derived_key():
    cloud = Identity.generate()
    key = bytes(range(32))
    sealed = seal_content_key(key, cloud.node_id.key)
    private = SigningKey(cloud.seed).to_curve25519_private_key()
    assert SealedBox(private).decrypt(sealed) == key
    assert bytes(private.public_key) == x25519_public(cloud.node_id.key)
    assert isinstance(PrivateKey(bytes(private)), PrivateKey)


def test_a_key_that_is_no_curve_point_cannot_be_sealed_to():
    with pytest.raises(BundleError, match="no X25519 key"):
        x25519_public(bytes(32))


def test_there_must_be_room_on_the_disk(tmp_path):
    with pytest.raises(BundleError, match="MiB free in"):
        check_room(2**62, tmp_path)
    check_room(1, tmp_path)


# ------------------------------------------------------------- bad bundles


def _frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each frame after the magic, the trailer left out."""
    out, at = [], len(MAGIC)
    while at < len(data) - 8:
        size = FRAME_HEAD + int.from_bytes(data[at + 1 : at + 5], "big")
        out.append((at, size))
        at += size
    return out


def _swap_chunks(data: bytes) -> bytes:
    frames = _frames(data)
    (a, sa), (b, sb) = frames[1], frames[2]
    return data[:a] + data[b : b + sb] + data[a : a + sa] + data[b + sb :]


def _drop_frame(index: int):
    def mutate(data: bytes) -> bytes:
        at, size = _frames(data)[index]
        return data[:at] + data[at + size :]

    return mutate


def _flip(offset_of):
    def mutate(data: bytes) -> bytes:
        at = offset_of(data)
        return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]

    return mutate


def _huge_frame(data: bytes) -> bytes:
    at, _ = _frames(data)[1]
    return data[: at + 1] + (2**31).to_bytes(4, "big") + data[at + 5 :]


def _in_chunk(data: bytes) -> int:
    at, size = _frames(data)[2]
    return at + FRAME_HEAD + CHUNK_HEAD + size // 2


BAD = {
    "empty file": (lambda d: b"", "not a Lichen bundle"),
    "another file": (lambda d: b"PK\x03\x04" + d[4:], "not a Lichen bundle"),
    "cut in the header": (lambda d: d[:20], "truncated"),
    "cut mid-chunk": (lambda d: d[: len(d) // 2], "truncated"),
    "cut before the manifest": (lambda d: d[: _frames(d)[-1][0]], "truncated"),
    "one byte short": (lambda d: d[:-1], "truncated"),
    "a byte more": (lambda d: d + b"\x00", "truncated|trailer"),
    "a flipped entry byte": (_flip(_in_chunk), "forged or corrupt entry|does not decode"),
    "a flipped chunk number": (_flip(lambda d: _frames(d)[2][0] + FRAME_HEAD + 3), "chunk 0 where"),
    "chunks swapped": (_swap_chunks, "chunk 1 where chunk 0 was due"),
    "a chunk removed": (_drop_frame(2), "chunk 2 where chunk 1 was due"),
    "the last chunk removed": (_drop_frame(-2), "not marked last"),
    "a flipped manifest byte": (_flip(lambda d: len(d) - 40), "signature does not verify"),
    "a 2 GiB frame": (_huge_frame, "exceeds the limit"),
}


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_bundle_is_refused_with_its_reason_and_nothing_is_touched(
    name, sealed, board, other, tmp_path
):
    a_id, a = board
    b_id, b = other
    export_bundle(
        a, a_id, tmp_path / "good.lcb", seal_to=b_id.node_id if sealed else None, chunk_target=4096
    )
    mutate, reason = BAD[name]
    bad = tmp_path / "bad.lcb"
    bad.write_bytes(mutate((tmp_path / "good.lcb").read_bytes()))
    before = store_digest(b)
    if sealed and name == "a flipped entry byte":
        reason = "does not decrypt"
    with pytest.raises(BundleError, match=reason) as refused:
        import_into_store(bad, b, opener=Opener(b_id))
    assert "\n" not in str(refused.value)
    assert store_digest(b) == before


def _bundle(exporter: Identity, entries, **kw) -> bytes:
    writer = BundleWriter(exporter.node_id.key, created_ms=1, **kw)
    for e in entries:
        writer.add(e.author, e.seq, e.raw)
    writer.finish(exporter.sign)
    return writer.data_to_send()


def _chain(identity: Identity, n: int, *, start_ts: int = 1 << 40):
    out, prev = [], None
    for seq in range(1, n + 1):
        e = sign_entry(
            identity, seq=seq, prev=prev, ts=start_ts + seq, collection="notes", body={"n": seq}
        )
        out.append(e)
        prev = e.hash
    return out


def test_a_forged_entry_in_a_validly_signed_bundle_is_refused(other, tmp_path):
    """The exporter signs the manifest, but an entry's own signature is false."""
    b_id, b = other
    author, forger = Identity.generate(), Identity.generate()
    entries = _chain(author, 3)
    bad = bytearray(entries[1].raw)
    bad[-1] ^= 1
    forged = decode_entry(bytes(bad))  # decodes: only its signature is false
    path = tmp_path / "f.lcb"
    path.write_bytes(_bundle(forger, [entries[0], forged, entries[2]]))
    before = store_digest(b)
    with pytest.raises(BundleError, match=r"forged or corrupt entry.*signature"):
        import_into_store(path, b, opener=Opener(b_id))
    assert store_digest(b) == before


def test_a_bundle_holding_two_histories_of_a_feed_is_refused(other, tmp_path):
    b_id, b = other
    author = Identity.generate()
    one, two = _chain(author, 2), _chain(author, 3, start_ts=1 << 41)
    path = tmp_path / "fork.lcb"
    path.write_bytes(_bundle(author, [one[0], two[1], two[2]]))
    before = store_digest(b)
    with pytest.raises(BundleError, match="does not chain"):
        import_into_store(path, b, opener=Opener(b_id))
    assert store_digest(b) == before


def test_a_manifest_resigned_by_someone_else_is_refused(board, other, tmp_path):
    a_id, a = board
    b_id, b = other
    export_bundle(a, a_id, tmp_path / "x.lcb")
    data = bytearray((tmp_path / "x.lcb").read_bytes())
    # another key signs the same manifest: the signature no longer names the exporter
    from agent.bundle.format import decode_manifest_frame, manifest_frame, signing_input
    from agent.encoding import loads

    at, size = _frames(bytes(data))[-1]
    content, _ = loads(bytes(data[at + FRAME_HEAD : at + size]))
    resigned = manifest_frame(content, Identity.generate().sign(signing_input(content)))
    path = tmp_path / "r.lcb"
    path.write_bytes(bytes(data[:at]) + resigned + bytes(data[at + size :]))
    with pytest.raises(BundleError, match="signature does not verify"):
        decode_manifest_frame(resigned[FRAME_HEAD:])
    before = store_digest(b)
    with pytest.raises(BundleError, match="signature does not verify"):
        import_into_store(path, b, opener=Opener(b_id))
    assert store_digest(b) == before


def test_an_entry_that_forks_what_is_stored_is_refused_alone_and_recorded(other, tmp_path):
    """Valid on its own, but its author signed another entry at that seq which is
    stored here: refused as a fork (evidence kept), the rest of the bundle stored."""
    b_id, b = other
    author = Identity.generate()
    held = _chain(author, 1)
    b.insert(held[0])
    other_history = _chain(author, 3, start_ts=1 << 41)
    path = tmp_path / "x.lcb"
    path.write_bytes(_bundle(author, other_history))
    report = import_into_store(path, b, opener=Opener(b_id))
    # 1 contradicts what is held, 2 names the other 1 as prev: both forks; 3 is stored
    assert (report.refused, report.stored) == (2, 1)
    assert "fork" in report.reasons[0] and "fork" in report.reasons[1]
    assert b.get(author.node_id.key, 1) == held[0]
    assert [f.seq for f in b.forks()] == [1, 2]


def test_the_reader_keeps_at_most_one_frame_whatever_the_bundle_size():
    """Fed a chunk frame header that claims a large body, it refuses at once; fed
    a plausible one, it waits without decoding anything."""
    reader = BundleReader(max_entry_size=MAX_CHUNK)
    writer = BundleWriter(bytes(32), created_ms=0)
    reader.receive_data(writer.data_to_send())
    assert reader.next_event() is not NEED_DATA  # the header
    reader.receive_data(bytes([KIND_CHUNK]) + (MAX_CHUNK + 1).to_bytes(4, "big"))
    with pytest.raises(BundleError, match="exceeds the limit"):
        reader.next_event()


def test_verify_reports_each_chunk_digest(board, tmp_path):
    a_id, a = board
    export_bundle(a, a_id, tmp_path / "x.lcb", chunk_target=8192)
    header, manifest, digests = verify_bundle(tmp_path / "x.lcb", opener=None)
    assert len(digests) == manifest.chunks and not header.sealed


def test_an_interrupted_export_leaves_no_bundle_and_a_stale_part_is_replaced(board, tmp_path):
    a_id, a = board
    target = tmp_path / "x.lcb"

    def interrupt(done: int) -> None:
        if done > 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_bundle(a, a_id, target, chunk_target=4096, progress=interrupt)
    assert not target.exists() and not (tmp_path / "x.lcb.part").exists()
    (tmp_path / "x.lcb.part").write_bytes(b"left by a power cut")
    report = export_bundle(a, a_id, target)
    assert report.manifest.entries == 1000 and not (tmp_path / "x.lcb.part").exists()
    with pytest.raises(BundleError, match="exists"):
        export_bundle(a, a_id, target)
    with pytest.raises(BundleError, match="cannot write"):
        export_bundle(a, a_id, tmp_path / "no" / "such" / "dir.lcb")


def test_a_frame_of_unknown_kind_is_refused_from_its_head():
    """Its length has no limit to check against: waiting for its body would let a
    corrupt length of gigabytes be buffered."""
    reader = BundleReader(max_entry_size=MAX_CHUNK)
    writer = BundleWriter(bytes(32), created_ms=0)
    reader.receive_data(writer.data_to_send())
    assert reader.next_event() is not NEED_DATA  # the header
    reader.receive_data(b"Z" + (2**31).to_bytes(4, "big"))
    with pytest.raises(BundleError, match="unknown kind 0x5a"):
        reader.next_event()
