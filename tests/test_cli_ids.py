"""Identifiers given on the command line or in a credentials file are matched whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from justwalk.cli import build_parser
from justwalk.device_protocol import load_credentials

REPLAY = ["replay", "data.mat", "--devices", "creds.json"]


def test_replay_refuses_a_patient_id_ending_in_a_newline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert build_parser().parse_args([*REPLAY, "--patient-id", "abc"]).patient_id == "abc"
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*REPLAY, "--patient-id", "abc\n"])
    assert exit_.value.code == 2
    assert "'abc\\n' is not an id" in capsys.readouterr().err


@pytest.mark.parametrize("field", ["device_id", "patient_id", "clinic_id"])
def test_a_credentials_file_with_an_id_ending_in_a_newline_is_refused(
    tmp_path: Path, field: str,
) -> None:
    device = {"device_id": "dev-1", "patient_id": "ms-0001", "clinic_id": "c", "token": "t"}
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"devices": [device]}))
    assert load_credentials(path)[0].patient_id == "ms-0001"
    path.write_text(json.dumps({"devices": [device | {field: "abc\n"}]}))
    with pytest.raises(ValueError, match=f"{field} 'abc\\\\n' is not an id"):
        load_credentials(path)
