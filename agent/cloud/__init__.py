"""The cloud ingestion role (``lichen cloud``)."""
