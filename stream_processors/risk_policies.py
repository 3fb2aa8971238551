"""Clinics' fall-risk settings, read from a JSON file at the processor's edge.

File (``Settings.risk_policies``; optional: without it every clinic gets the defaults of
``justwalk.risk.RiskAlertPolicy``)::

    {"default": {"threshold": 50},
     "clinics": {"clinic-a": {"threshold": 40, "weekly_rise": 8, "utc_offset_min": 60}}}

Per clinic: any field of ``RiskAlertPolicy`` (threshold and weekly rise in points of the
0-100 score, min_days, hysteresis, min_r2) plus ``utc_offset_min``, the clinic's offset
from UTC that decides where its patients' days begin. Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from justwalk.risk import FallRiskScorer, RiskAlertPolicy
from stream_processors.config_files import load_json_file

_POLICY_FIELDS = {f.name for f in dataclasses.fields(RiskAlertPolicy)}


class RiskPolicyError(ValueError):
    """The policy file is malformed; the message names the key."""


def _scorer(where: str, d: Mapping[str, Any], base: Mapping[str, Any]) -> FallRiskScorer:
    if not isinstance(d, Mapping):
        raise RiskPolicyError(f"{where}: expected an object")
    unknown = set(d) - _POLICY_FIELDS - {"utc_offset_min"}
    if unknown:
        raise RiskPolicyError(f"{where}: unknown keys {sorted(unknown)}")
    merged = {**base, **d}
    try:
        policy = RiskAlertPolicy(**{k: v for k, v in merged.items() if k in _POLICY_FIELDS})
        return FallRiskScorer(policy=policy, utc_offset_min=int(merged.get("utc_offset_min", 0)))
    except (TypeError, ValueError) as exc:
        raise RiskPolicyError(f"{where}: {exc}") from exc


def parse_risk_policies(
    data: Mapping[str, Any],
) -> tuple[FallRiskScorer, dict[str, FallRiskScorer]]:
    """The default scorer and one scorer per configured clinic."""
    unknown = set(data) - {"default", "clinics"}
    if unknown:
        raise RiskPolicyError(f"unknown top-level keys {sorted(unknown)}")
    base = data.get("default", {})
    default = _scorer("default", base, {})
    clinics = data.get("clinics", {})
    if not isinstance(clinics, Mapping):
        raise RiskPolicyError("clinics: expected an object")
    return default, {c: _scorer(f"clinics.{c}", d, base) for c, d in clinics.items()}


def load_risk_policies(path: Path) -> tuple[FallRiskScorer, dict[str, FallRiskScorer]]:
    """Read the file; a missing file means defaults for every clinic."""
    return load_json_file(path, parse_risk_policies, RiskPolicyError,
                          lambda: (FallRiskScorer(), {}))
