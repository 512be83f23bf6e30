"""Hypothesis strategies for values of Lichen's encoding model."""

from __future__ import annotations

from hypothesis import strategies as st

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)

values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.text(max_size=12) | st.integers(-1000, 1000), children, max_size=6)
    ),
    max_leaves=30,
)

collections = st.from_regex(r"[a-z0-9_]{1,12}(/[a-z0-9_.:\-]{1,12}){0,2}", fullmatch=True)
doc_ids = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_characters="\x7f"),
    min_size=1,
    max_size=20,
)
