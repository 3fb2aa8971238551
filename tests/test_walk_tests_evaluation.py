"""Regression: walk-test distances on the real Mobilise-D straight walks vs INDIP."""

from __future__ import annotations

import pytest

from justwalk.evaluation.gait import DEFAULT_DATA
from justwalk.evaluation.walk_tests import STRAIGHT_TEST, evaluate, main, summary

pytestmark = pytest.mark.skipif(not DEFAULT_DATA.exists(), reason="no Mobilise-D data")


def test_straight_walk_distances_are_within_the_stated_error() -> None:
    scores = evaluate(DEFAULT_DATA)
    straight = [s for s in scores if s.test == STRAIGHT_TEST]
    assert len(straight) == 4  # HA/001 and MS/001, two trials each (HA/002: no INDIP)
    m = summary(straight)
    # README "Walk tests" figures: MAE 0.24 m (4.9 %), speed 0.083 m/s
    assert m["distance_mape_pct"] <= 8.0, m
    assert m["speed_mae_mps"] <= 0.12, m
    assert all(s.steps >= 6 for s in straight)
    assert len(scores) == 19


def test_the_command_prints_its_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "straight walks (Test5) | 4 |" in out
    assert main(["--data", "/nonexistent"]) == 2
