"""Hypothesis settings for when this folder runs alone (``pytest plugins/lichen_serial``).

In the whole suite ``tests/conftest.py`` chooses the profile (``default``,
``ci`` or ``soak``, from ``HYPOTHESIS_PROFILE``); alone, this mirrors its
choice, so a property test never fails on a slow machine's deadline.
"""

from __future__ import annotations

import os
import sys

from hypothesis import HealthCheck, settings

if "tests.conftest" not in sys.modules:
    _name = os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
    settings.register_profile(
        "lichen_serial",
        deadline=None,
        max_examples=2000 if _name == "soak" else 60,
        derandomize=_name == "ci",
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("lichen_serial")
