"""The MQTT layer: one paho-mqtt client per connection, bridged to asyncio, and TLS.

Used by every MQTT client of the project — a board's uplink (the
``lichen_mqtt`` plugin) and the cloud role (:mod:`agent.cloud.mqtt`) — so both
connect, set TLS up, publish within a window and acknowledge what they
received the same way. paho-mqtt is imported only when a session is made
(``pip install 'lichen[mqtt]'``; :func:`require_paho` names the extra when
it is missing).

=================  ==========================================================
``session``        :class:`BrokerSession`: one connection
``settings``       its :class:`SessionSettings`, :class:`Message` (to
                   publish), :class:`Incoming` (received),
                   :class:`ConnectFailed`, :class:`SessionLost`
``tls``            :func:`tls_context`, :func:`describe_error`
=================  ==========================================================

The reconnection loop around sessions is the caller's, with
:class:`agent.backoff.Backoff`.
"""

from __future__ import annotations

# The package's API is its modules' APIs (as in agent.sync): each module's
# ``__all__`` names what it exports, once.
from . import session, settings, tls
from .session import *
from .settings import *
from .tls import *

__all__: list[str] = []
__all__ += session.__all__
__all__ += settings.__all__
__all__ += tls.__all__
