"""Two link cores joined by a simulated air on a virtual clock, with faults.

No event loop, no sleeping: time jumps to the next arrival or timer, so a
run with retransmission timeouts takes milliseconds. Each value either
arrives, is lost, arrives twice, or swaps places with the next one, as the
test's fault list says (the list is used up value by value, both
directions drawing from their own list; once it is empty, values arrive).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from lichen_ble.link import (
    NEED_DATA,
    DataReceived,
    EndOfStream,
    GattLink,
    LinkClosed,
    LinkOpened,
    Role,
)
from lichen_ble.segments import MIN_VALUE

DELIVER, LOSE, DUPLICATE, SWAP = range(4)


@dataclass
class Side:
    link: GattLink
    to_send: bytes
    read_size: int
    faults: list[int]
    sent: int = 0
    received: bytearray = field(default_factory=bytearray)
    eof: bool = False
    closed: LinkClosed | None = None
    held: bytes | None = None  # a value waiting to swap with the next
    values: int = 0


@dataclass
class Outcome:
    a: Side
    b: Side
    time: float
    values: int


def simulate(
    a_data: bytes,
    b_data: bytes,
    *,
    a_faults: list[int] = (),  # type: ignore[assignment]
    b_faults: list[int] = (),  # type: ignore[assignment]
    mtu: int = 185,
    read_size: int = 1000,
    latency: float = 0.01,
    buffer: int = 4096,
    limit: float = 600.0,
    eof: bool = True,
) -> Outcome:
    """Run until both sides have read the other's data and its FIN (or a link
    closed, or ``limit`` virtual seconds passed)."""
    a = Side(GattLink(Role.CENTRAL, mtu=mtu, buffer=buffer, send_buffer=buffer,
                      link_timeout=limit), a_data, read_size, list(a_faults))  # fmt: skip
    b = Side(GattLink(Role.PERIPHERAL, mtu=mtu, buffer=buffer, send_buffer=buffer,
                      link_timeout=limit), b_data, read_size, list(b_faults))  # fmt: skip
    air: list[tuple[float, int, int, bytes]] = []  # (arrival, order, to side 0/1, value)
    order = 0
    now = 0.0
    a.link.start(now)
    b.link.start(now)
    sides = (a, b)

    def put(to: int, value: bytes, sender: Side) -> None:
        nonlocal order
        cap = sender.link.send_value if sender.link.opened else MIN_VALUE
        assert len(value) <= max(cap, MIN_VALUE), f"a {len(value)}-byte value over {cap}"
        sender.values += 1
        action = sender.faults.pop(0) if sender.faults else DELIVER
        if sender.held is not None:  # the swapped value goes after this one
            held, sender.held = sender.held, None
            for v in (value, held):
                order += 1
                heapq.heappush(air, (now + latency, order, to, v))
            return
        if action == SWAP:
            sender.held = value
            return
        for _ in range({DELIVER: 1, LOSE: 0, DUPLICATE: 2}[action]):
            order += 1
            heapq.heappush(air, (now + latency, order, to, value))

    while now <= limit:
        for i, side in enumerate(sides):
            link = side.link
            if link.opened and link.closed is None:
                if side.sent < len(side.to_send) and link.send_room:
                    n = min(link.send_room, len(side.to_send) - side.sent)
                    link.send(side.to_send[side.sent : side.sent + n])
                    side.sent += n
                if side.sent == len(side.to_send) and eof:
                    link.send_eof()
            for value in link.data_to_send(now):
                put(1 - i, value, side)
            if side.held is not None and not air:  # nothing to swap with: let it go
                held, side.held = side.held, None
                order += 1
                heapq.heappush(air, (now + latency, order, 1 - i, held))
            while (event := link.next_event(side.read_size)) is not NEED_DATA:
                if isinstance(event, DataReceived):
                    side.received += event.data
                elif isinstance(event, EndOfStream):
                    side.eof = True
                elif isinstance(event, LinkClosed):
                    side.closed = event
                else:
                    assert isinstance(event, LinkOpened)
        done = all(s.eof and s.link.flushed for s in sides) or (not eof and _all_read(a, b))
        if done or any(s.closed for s in sides):
            break
        pending = [t for s in sides if (t := s.link.next_timer()) is not None]
        if air:
            pending.append(air[0][0])
        if not pending:
            break
        now = max(now, min(pending))
        while air and air[0][0] <= now:
            _, _, to, value = heapq.heappop(air)
            sides[to].link.receive_data(value, now)
        for side in sides:
            due = side.link.next_timer()
            if due is not None and due <= now:
                side.link.handle_timer(now)
    return Outcome(a, b, now, a.values + b.values)


def _all_read(a: Side, b: Side) -> bool:
    return len(a.received) == len(b.to_send) and len(b.received) == len(a.to_send)
