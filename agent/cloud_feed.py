"""What a cloud's own feed carries to boards, and what boards answer: collection names.

A cloud node speaks to its boards only through signed entries of its own feed,
so whatever carries entries carries them: the MQTT ack topic, gossip (a phone
or a neighbour that replicates the cloud's feed), bundles (``lichen bundle
import``) and the mule exchange. A board takes these entries into account only
when their author is a cloud it accepts (``[retention] ack_from``).

========================  =========================================  ==========
Collection                What                                       Written by
========================  =========================================  ==========
``_acks``                 custody receipts: doc id = feed, ``seq``   the cloud
``_time``                 time beacons (doc id ``beacon``)           the cloud
``_commands``             signed, expiring commands (doc id = id)    the cloud
``_commands_result``      a command's outcome on a board             the board
``_clock``                a correction of the board's clock          the board
========================  =========================================  ==========

The formats are in ``docs/format.md``; the rules in ``docs/uplink.md`` and
``docs/time.md``.
"""

from __future__ import annotations

__all__ = [
    "ACKS_COLLECTION",
    "BEACON_DOC_ID",
    "CLOCK_COLLECTION",
    "COMMANDS_COLLECTION",
    "COMMAND_RESULTS_COLLECTION",
    "FROM_CLOUD",
    "TIME_COLLECTION",
]

#: the cloud's acknowledgements (custody receipts): doc id = the acknowledged feed
ACKS_COLLECTION = "_acks"
#: the cloud's time beacons: one document (:data:`BEACON_DOC_ID`), a new version each time
TIME_COLLECTION = "_time"
#: the document id of every beacon, so a compacted cloud feed keeps only the newest
BEACON_DOC_ID = "beacon"
#: the cloud's commands to boards: doc id = the command id
COMMANDS_COLLECTION = "_commands"
#: a board's record of what it did with a command: doc id = the command id
COMMAND_RESULTS_COLLECTION = "_commands_result"
#: a board's record of each correction of its clock by a beacon
CLOCK_COLLECTION = "_clock"
#: the collections a board takes from an accepted cloud, by any path (the ack
#: topic included); a carrier (a mule) takes these of the cloud's feed for a board
FROM_CLOUD = (ACKS_COLLECTION, TIME_COLLECTION, COMMANDS_COLLECTION)
