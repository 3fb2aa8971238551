from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ingest.registry import DeviceEntry, DeviceRegistry, hash_token, provision
from justwalk.device_protocol import load_credentials

DEVICES = [("dev-1", "ms-0001", "clinic-a"), ("dev-2", "ms-0002", "clinic-b")]


@pytest.fixture
def provisioned(tmp_path: Path) -> tuple[Path, Path]:
    registry_path = tmp_path / "deploy" / "devices.json"
    credentials_path = tmp_path / "secrets" / "credentials.json"
    provision(registry_path, credentials_path, DEVICES)
    return registry_path, credentials_path


def test_provision_writes_hashes_only_and_credentials_with_tokens(
    provisioned: tuple[Path, Path],
) -> None:
    registry_path, credentials_path = provisioned
    credentials = load_credentials(credentials_path)
    assert [(c.device_id, c.patient_id, c.clinic_id) for c in credentials] == DEVICES
    assert len({c.token for c in credentials}) == 2
    assert all(len(c.token) >= 40 for c in credentials)

    registry_text = registry_path.read_text()
    for c in credentials:
        assert c.token not in registry_text
    stored = json.loads(registry_text)["devices"]
    assert set(stored[0]) == {"device_id", "patient_id", "clinic_id", "token_sha256"}
    assert [d["token_sha256"] for d in stored] == [hash_token(c.token) for c in credentials]
    assert stat.S_IMODE(credentials_path.stat().st_mode) == 0o600


def test_authenticate_maps_each_token_to_its_entry(provisioned: tuple[Path, Path]) -> None:
    registry_path, credentials_path = provisioned
    registry = DeviceRegistry.load(registry_path)
    assert len(registry) == 2
    for c in load_credentials(credentials_path):
        entry = registry.authenticate(c.token)
        assert entry is not None
        assert (entry.device_id, entry.patient_id, entry.clinic_id) == (
            c.device_id, c.patient_id, c.clinic_id)


@pytest.mark.parametrize("token", ["", "nope", "x" * 43, hash_token("nope")])
def test_authenticate_refuses_unknown_tokens(provisioned: tuple[Path, Path], token: str) -> None:
    registry = DeviceRegistry.load(provisioned[0])
    assert registry.authenticate(token) is None


def test_a_registered_hash_is_not_a_token(provisioned: tuple[Path, Path]) -> None:
    registry = DeviceRegistry.load(provisioned[0])
    for entry in registry.entries:
        assert registry.authenticate(entry.token_sha256) is None


def test_reprovisioning_replaces_tokens(tmp_path: Path) -> None:
    first = provision(tmp_path / "r.json", tmp_path / "c.json", DEVICES[:1])
    second = provision(tmp_path / "r.json", tmp_path / "c.json", DEVICES[:1])
    registry = DeviceRegistry.load(tmp_path / "r.json")
    assert registry.authenticate(first[0].token) is None
    assert registry.authenticate(second[0].token) is not None


def _entry(device_id: str = "dev-1", patient_id: str = "ms-0001",
           digest: str | None = None) -> DeviceEntry:
    return DeviceEntry(device_id, patient_id, "clinic-a", digest or hash_token(device_id))


def test_registry_refuses_duplicate_devices_and_tokens() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        DeviceRegistry([_entry(), _entry(digest=hash_token("other"))])
    with pytest.raises(ValueError, match="shares its token"):
        DeviceRegistry([_entry("dev-1"), _entry("dev-2", digest=hash_token("dev-1"))])


@pytest.mark.parametrize(
    "entry",
    [
        DeviceEntry("dev 1", "ms-0001", "clinic-a", hash_token("t")),
        DeviceEntry("dev-1", "", "clinic-a", hash_token("t")),
        DeviceEntry("dev-1", "ms-0001", "clinic-a", "plain-token"),
        DeviceEntry("dev-1", "ms-0001", "clinic-a", hash_token("t").upper()),
    ],
)
def test_registry_refuses_malformed_entries(entry: DeviceEntry) -> None:
    with pytest.raises(ValueError):
        DeviceRegistry([entry])


def test_load_names_a_file_that_is_not_a_registry(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"devices": [{"device_id": "dev-1", "token": "plain"}]}))
    with pytest.raises(ValueError, match="not a device registry"):
        DeviceRegistry.load(path)


def test_provision_refuses_ids_the_wire_format_cannot_carry(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="patient_id"):
        provision(tmp_path / "r.json", tmp_path / "c.json", [("dev-1", "Jane Doe", "c")])
    assert not (tmp_path / "r.json").exists()
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("field", ["device_id", "patient_id", "clinic_id"])
def test_an_id_ending_in_a_newline_is_refused(tmp_path: Path, field: str) -> None:
    # ``re.match`` with ``$`` lets "abc\n" through; the registry matches ids whole.
    ids = {"device_id": "dev-1", "patient_id": "ms-0001", "clinic_id": "clinic-a"}
    entry = DeviceEntry(**(ids | {field: "abc\n"}), token_sha256=hash_token("t"))
    with pytest.raises(ValueError, match=field):
        DeviceRegistry([entry])
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"devices": [ids | {field: "abc\n",
                                                   "token_sha256": hash_token("t")}]}))
    with pytest.raises(ValueError, match=field):
        DeviceRegistry.load(path)
    with pytest.raises(ValueError, match=field):
        provision(tmp_path / "r2.json", tmp_path / "c2.json",
                  [tuple((ids | {field: "abc\n"}).values())])  # type: ignore[list-item]
