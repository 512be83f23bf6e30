"""The log as the uplink's outbox: passes, acknowledgements, retention, the wire.

Plain code over the store and bytes: what goes next (:mod:`.outbox`), whose
acknowledgements count (:mod:`.acks`), what may go (:mod:`.retention`), the
backlog (:mod:`.backlog`), the board ⇄ cloud wire contract (:mod:`.wire`) and
the ``[uplink]`` and ``[retention]`` tables (:mod:`.config`). The tasks that
run uplink plugins over them are the runtime's (:mod:`agent.runtime.uplinks`).
"""
