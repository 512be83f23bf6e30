"""Lichen uplink to an MQTT broker (placeholder until the plugin lands)."""
