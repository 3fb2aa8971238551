"""Daily digital mobility outcomes (Mobilise-D DMOs) from walking bouts: I/O-free core.

- ``_definitions``: the DMOs (bins, statistics, Mobilise-D names) and ``compute_dmos``;
- ``_limits``: per-cohort plausibility limits (Mobilise-D's table, via mobgap);
- ``_daily``: ``DailyMobility``, the streaming per-patient reducer (per bout, final at
  the clinic's day end) and its serialisable ``DmoState``;
- ``_errors``: the expected measurement error of each bout value and DMO
  (``uncertainty.json``, made by ``justwalk evaluate gait --uncertainty-out``).
"""

from justwalk.mobility._daily import DailyDmos, DailyMobility, DmoDay, DmoState
from justwalk.mobility._definitions import BINS, DMOS, QUANTITIES, Dmo, WalkingBout, compute_dmos
from justwalk.mobility._errors import BOUT_VALUES, ErrorTable, load_error_table, shipped_error
from justwalk.mobility._limits import COHORTS, PlausibilityLimits, max_stride_length_m

__all__ = [
    "BINS",
    "BOUT_VALUES",
    "COHORTS",
    "DMOS",
    "QUANTITIES",
    "DailyDmos",
    "DailyMobility",
    "Dmo",
    "DmoDay",
    "DmoState",
    "ErrorTable",
    "PlausibilityLimits",
    "WalkingBout",
    "compute_dmos",
    "load_error_table",
    "max_stride_length_m",
    "shipped_error",
]
