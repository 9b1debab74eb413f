"""Suite-wide settings: Hypothesis runs derandomized, so every run (and CI) is deterministic.

Set ``HYPOTHESIS_PROFILE=explore`` to search with fresh random seeds and more examples locally
(that is how the state machine once found a lost-batch bug in the durable store).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "deterministic",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "explore",
    derandomize=False,
    deadline=None,
    max_examples=500,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

# Every canonical report the suite builds is validated against proto/'s JSON Schema (before any
# store, servicer or exporter module binds build_report by name).
from . import report_schema  # noqa: E402

report_schema.install()
