"""Board profiles, as data: one ``<board>.toml`` per board (see ``agent.board``)."""
