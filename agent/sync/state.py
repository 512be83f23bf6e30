"""The sync protocol's state machine: everything that changes state lives here.

The protocol is symmetric, so this file does not know which side is ours:
both sides run the same machine, and :class:`ConnectionState` keeps one state
per side. A side's state is the state of its *provider role* — the round in
which it offers its entries (HAVE … HAVE_END), the peer answers (WANT …
WANT_END), and it streams (ENTRY … DONE). The receiver's messages (WANT,
WANT_END, CREDIT) never change the sender's own state; WANT and WANT_END move
the *other* side's round instead. The rules are two tables (data, not nested
``if``\\ s), rendered in ``docs/protocol.md``:

* :data:`SENDER_TRANSITIONS`: the sender's state → message → its new state;
* :data:`OTHER_TRANSITIONS`: the other side's state → message → its new state.

A message that is in neither table for the states at hand is out of order
and raises :class:`~agent.errors.LocalProtocolError` (the connection re-raises
it as :class:`~agent.errors.RemoteProtocolError` when the peer sent it);
nothing changes. ERROR is accepted in every state but ERROR, and ends there.

>>> s = ConnectionState()
>>> s.process(Side.REMOTE, Hello)
>>> s.states[Side.REMOTE]
<State.IDLE: 'idle'>
>>> s.process(Side.LOCAL, Want)
Traceback (most recent call last):
...
agent.errors.LocalProtocolError: WANT before HELLO: HELLO must be the first message
"""

from __future__ import annotations

import enum

from ..errors import LocalProtocolError
from .events import (
    Bye,
    Credit,
    Done,
    EntryData,
    ErrorMessage,
    Have,
    HaveEnd,
    Hello,
    Live,
    Message,
    Want,
    WantEnd,
)

__all__ = [
    "OTHER_TRANSITIONS",
    "SENDER_TRANSITIONS",
    "ConnectionState",
    "Side",
    "State",
    "render_tables",
]


class Side(enum.Enum):
    LOCAL = "local"
    REMOTE = "remote"

    __hash__ = object.__hash__  # Enum's hashes the name in Python: several per ENTRY

    @property
    def other(self) -> Side:
        return Side.REMOTE if self is Side.LOCAL else Side.LOCAL


class State(enum.Enum):
    START = "start"  # nothing sent yet: HELLO comes first
    IDLE = "idle"  # no round of this side's in progress
    OFFERING = "offering"  # HAVE sent, HAVE_END not yet
    AWAIT_WANTS = "await-wants"  # HAVE_END sent; the other side answers WANT … WANT_END
    SENDING = "sending"  # WANT_END received; streaming ENTRY until DONE
    CLOSED = "closed"  # BYE sent: no more rounds, but still answers the other side's
    ERROR = "error"  # ERROR sent, or the side broke the protocol

    __hash__ = object.__hash__  # members are singletons: identity is enough


def _answers(state: State, moves: dict[type[Message], State]) -> dict[type[Message], State]:
    """``moves`` plus the receiver's messages, which leave the sender where it is."""
    return {**moves, Want: state, WantEnd: state, Credit: state}


SENDER_TRANSITIONS: dict[State, dict[type[Message], State]] = {
    State.START: {Hello: State.IDLE},
    State.IDLE: _answers(
        State.IDLE,
        {Have: State.OFFERING, HaveEnd: State.AWAIT_WANTS, Live: State.IDLE, Bye: State.CLOSED},
    ),
    State.OFFERING: _answers(
        State.OFFERING,
        {
            Have: State.OFFERING,
            HaveEnd: State.AWAIT_WANTS,
            Live: State.OFFERING,
            Bye: State.CLOSED,
        },
    ),
    State.AWAIT_WANTS: _answers(State.AWAIT_WANTS, {Live: State.AWAIT_WANTS, Bye: State.CLOSED}),
    State.SENDING: _answers(
        State.SENDING,
        {EntryData: State.SENDING, Done: State.IDLE, Live: State.SENDING, Bye: State.CLOSED},
    ),
    State.CLOSED: _answers(State.CLOSED, {}),
    State.ERROR: {},
}
"""The sending side's state → message → its next state."""

OTHER_TRANSITIONS: dict[State, dict[type[Message], State]] = {
    State.AWAIT_WANTS: {Want: State.AWAIT_WANTS, WantEnd: State.SENDING},
    # The provider said BYE while the answer was on its way: accepted, ignored.
    State.CLOSED: {Want: State.CLOSED, WantEnd: State.CLOSED},
}
"""For WANT and WANT_END: the state of the round they answer → its next state."""

_BEFORE = {
    State.START: "before the offering side's HELLO",
    State.IDLE: "with no offer waiting for wants (WANT follows HAVE_END)",
    State.OFFERING: "before HAVE_END (WANT follows HAVE_END)",
    State.SENDING: "after WANT_END",
    State.ERROR: "after ERROR",
}


class ConnectionState:
    """Both sides' states, and whether each has asked for LIVE.

    :meth:`process` checks a message against the tables and applies it, or
    raises :class:`~agent.errors.LocalProtocolError` and changes nothing::

        state = ConnectionState()
        state.process(Side.LOCAL, Hello)      # we said HELLO
        state.states[Side.LOCAL]              # State.IDLE
    """

    def __init__(self) -> None:
        self.states: dict[Side, State] = {Side.LOCAL: State.START, Side.REMOTE: State.START}
        self.live: dict[Side, bool] = {Side.LOCAL: False, Side.REMOTE: False}

    def check(self, side: Side, kind: type[Message]) -> tuple[State, State]:
        """The ``(sender, other)`` states after ``side`` sends ``kind``; raise if not allowed."""
        mine, theirs = self.states[side], self.states[side.other]
        name = kind.NAME
        if kind is ErrorMessage:
            if mine is State.ERROR:
                raise LocalProtocolError("ERROR after ERROR")
            return State.ERROR, theirs
        moves = SENDER_TRANSITIONS[mine]
        if kind not in moves:
            raise LocalProtocolError(_refusal(name, mine))
        if kind is Live and self.live[side]:
            raise LocalProtocolError("LIVE sent twice")
        if kind is Want or kind is WantEnd:
            answered = OTHER_TRANSITIONS.get(theirs, {})
            if kind not in answered:
                raise LocalProtocolError(f"{name} out of order: sent {_BEFORE[theirs]}")
            theirs = answered[kind]
        return moves[kind], theirs

    def process(self, side: Side, kind: type[Message]) -> None:
        """Apply ``side`` sending a ``kind`` message (see :meth:`check`)."""
        self.commit(side, kind, self.check(side, kind))

    def commit(self, side: Side, kind: type[Message], states: tuple[State, State]) -> None:
        """Apply states computed by :meth:`check` (after other checks passed)."""
        self.states[side], self.states[side.other] = states
        if kind is Live:
            self.live[side] = True
        elif kind is Bye:
            self.live[side] = False

    def fail(self, side: Side) -> None:
        """``side`` broke the protocol: it is in ERROR from now on."""
        self.states[side] = State.ERROR

    @property
    def closed(self) -> bool:
        """Both sides said BYE: the session is over."""
        return self.states[Side.LOCAL] is State.CLOSED and self.states[Side.REMOTE] is State.CLOSED


def _refusal(name: str, state: State) -> str:
    if state is State.START:
        return f"{name} before HELLO: HELLO must be the first message"
    if name == "HELLO":
        return "HELLO sent twice"
    if state is State.CLOSED:
        return f"{name} after BYE"
    if state is State.ERROR:
        return f"{name} after ERROR"
    if name == "ENTRY":
        return f"ENTRY out of order: entries follow WANT_END (the sender is {state.value})"
    if name in ("HAVE", "HAVE_END"):
        return (
            f"{name} out of order: a new offer starts only after DONE (the sender is {state.value})"
        )
    return f"{name} out of order: the sender is {state.value}"


def render_tables() -> str:
    """Both tables as Markdown (``docs/protocol.md`` shows exactly this)."""
    kinds: list[type[Message]] = [
        Hello,
        Have,
        HaveEnd,
        Want,
        WantEnd,
        EntryData,
        Credit,
        Done,
        Live,
        Bye,
    ]
    head = "| sender's state | " + " | ".join(k.NAME for k in kinds) + " |"
    lines = [head, "|" + "---|" * (len(kinds) + 1)]
    for state, moves in SENDER_TRANSITIONS.items():
        if state is State.ERROR:
            continue
        cells = [moves[k].value if k in moves else "—" for k in kinds]
        lines.append(f"| {state.value} | " + " | ".join(cells) + " |")
    lines += ["", "| answered round's state | WANT | WANT_END |", "|---|---|---|"]
    for state, moves in OTHER_TRANSITIONS.items():
        lines.append(f"| {state.value} | {moves[Want].value} | {moves[WantEnd].value} |")
    return "\n".join(lines)
