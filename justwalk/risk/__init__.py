"""Per-patient fall-risk score: plain Python, no I/O, explicit serialisable state.

A transparent points score, 0..100, updated per walking bout and per detected event and
closed per clinic day; a screening aid for the clinic, not a diagnosis. The weights are
set from published associations and were NOT fitted to outcomes (we have no outcome data):
they are a documented expert choice, configurable per clinic (``FallRiskModel``).

Formula
-------
Five components; each maps its input onto a fraction of its weight with a clipped linear
ramp between a reference with no added risk ``x_0`` and one of full risk ``x_1``::

    points_k = w_k * clip((x_k - x_0,k) / (x_1,k - x_0,k), 0, 1)
    score    = sum_k points_k                        (sum_k w_k = 100 points)

==================== ============================================ ======= ======= =====
component            input                                         x_0     x_1     w_k
==================== ============================================ ======= ======= =====
walking speed        bout-duration-weighted mean speed, 3 days     1.0 m/s 0.6 m/s 25
stride-time CV       bout-duration-weighted mean CV, 3 days        2.5 %   7.0 %   20
step-time asymmetry  bout-duration-weighted mean, 3 days           3 %     10 %    10
near-falls           detected near-falls, last 14 days             0       3       25
falls                detected falls, last 14 days                  0       1       20
==================== ============================================ ======= ======= =====

Bouts count if they last >= 10 s with >= 10 steps; events if their confidence >= 0.5.
Windows are clinic days (UTC days of the device clock, shifted by a fixed clinic offset)
ending on the open day. Unknown inputs (no qualifying walking) give 0 points. Each
snapshot reports every component's points and its inputs, so the clinician sees why.

Trend: the least-squares slope (points/day) of the daily closing scores of the last 7
calendar days (days without data left out). Alerts (``RiskAlertPolicy``, per clinic):
the score reaches ``threshold`` (default 50) from below, with hysteresis (re-armed below
``threshold - hysteresis``); or, at a day's close, the 7-day line rises by at least
``weekly_rise`` points per week (default 10) with >= ``min_days`` (default 5) daily
scores and R^2 >= ``min_r2`` (default 0.5). Alert ids derive from patient, kind and day.

Sources (why these inputs, directions and reference values)
-----------------------------------------------------------
- Walking speed: slower gait speed predicted incident falls in 597 older adults, risk
  ratio 1.069 per 10 cm/s decrease (Verghese J, Holtzer R, Lipton RB, Wang C. J Gerontol
  A Biol Sci Med Sci 2009;64A(8):896-901); gait speed grades survival across its range
  (pooled mean 0.92 m/s, HR 0.88 per 0.1 m/s; Studenski S et al. JAMA 2011;305(1):50-58),
  where ~1.0 m/s and above marks healthy ageing and ~0.6 m/s poor prognosis. In MS,
  reduced walking speed is associated with recent falls (Ytterberg C et al. J Rehabil Med
  2013;45(5)) and fallers have worse mobility (Sosnoff JJ et al. PLoS One
  2011;6(11):e28021).
- Stride-time variability: stride-time SD 106 +- 30 ms in older adults who fell in the
  following year vs 49 +- 4 ms in those who did not (Hausdorff JM, Rios DA, Edelberg HK.
  Arch Phys Med Rehabil 2001;82:1050-1056), i.e. a CV of roughly 4-5 % vs 9-10 % at
  ~1.1 s strides; healthy adults are typically around 1-3 % (Hausdorff JM. J Neuroeng
  Rehabil 2005;2:19 [*]). In MS, stride-time CV correlates with physiological fall risk
  (rho 0.71; Moon Y, Wajda DA, Motl RW, Sosnoff JJ. Mult Scler Int 2015:964790) and gait
  variability rises with disability (Kalron A. J Neurol Sci 2016;361:1-6; Socie MJ,
  Sosnoff JJ. Mult Scler Int 2013:645197).
- Step-time asymmetry: gait asymmetry is higher in idiopathic elderly fallers than in
  controls (Yogev G, Plotnik M, Peretz C, Giladi N, Hausdorff JM. Exp Brain Res
  2007;177:336-346). The evidence is indirect and there is no validated cut-off, hence
  the smallest weight; 3 % / 10 % are our choice.
- Near-falls: older adults reporting multiple missteps were more likely to fall
  (relative risk 3.89; Srygley JM, Herman T, Giladi N, Hausdorff JM. Arch Phys Med
  Rehabil 2009;90:786-792); in MS, near-falls are among the predictors of falls
  (Nilsagard Y, Lundholm C, Denison E, Gunnarsson LG. Clin Rehabil 2009;23:259-269 [*]).
- Falls: in MS, a previous fall was the best single predictor of future falls (AUC 0.75;
  Cameron MH, Thielman E, Mazumder R, Bourdette D. Mult Scler Int 2013:496325).

[*] cited from the literature brief, not re-read against the paper when this was written.

Daily mobility outcomes (``justwalk.mobility``, issue #15) reach the scorer through
``FallRiskScorer.on_daily_dmos`` and are readable with ``dmo_features`` (``DMO_FEATURES``
per clinic day, kept with the state). They do not enter the points: without outcome data
there is nothing to weight them by, so the score is unchanged.

Stride-time CV and step-time asymmetry are those of ``justwalk.gait.variability``; the
studies above used walkways, insoles or shank sensors in the lab, so values from a
lower-back IMU in daily life are not directly interchangeable (see README.md).
"""

from justwalk.risk._alerts import (
    TREND_DAYS,
    RiskAlert,
    RiskAlertPolicy,
    Trend,
    fit_trend,
)
from justwalk.risk._model import COMPONENTS, FallRiskModel, ramp
from justwalk.risk._scorer import (
    DMO_FEATURES,
    INPUT_KEYS,
    US_PER_DAY,
    BoutSummary,
    DailyRiskScore,
    FallRiskScorer,
    RiskScore,
    RiskUpdate,
)
from justwalk.risk._state import DayAggregate, FallRiskState

__all__ = [
    "COMPONENTS",
    "DMO_FEATURES",
    "INPUT_KEYS",
    "TREND_DAYS",
    "US_PER_DAY",
    "BoutSummary",
    "DailyRiskScore",
    "DayAggregate",
    "FallRiskModel",
    "FallRiskScorer",
    "FallRiskState",
    "RiskAlert",
    "RiskAlertPolicy",
    "RiskScore",
    "RiskUpdate",
    "Trend",
    "fit_trend",
    "ramp",
]
