"""Uplink to the cloud: outbox, acknowledgements, retention."""
