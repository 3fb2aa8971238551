"""The gateway's device registry: which token belongs to which device, patient and clinic.

File format (JSON)::

    {"devices": [{"device_id": "...", "patient_id": "...", "clinic_id": "...",
                  "token_sha256": "<hex>"}]}

Only the SHA-256 of each token is stored; the plain tokens live in the devices'
credentials file (``justwalk.device_protocol.save_credentials``). Patient ids are
pseudonymous. Tokens are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from justwalk.device_protocol import DeviceCredential, save_credentials
from justwalk.wire import ID_PATTERN

TOKEN_BYTES = 32


def hash_token(token: str) -> str:
    """SHA-256 of a device token, lowercase hex (what the registry stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """One registered device and the identity its chunks must carry."""

    device_id: str
    patient_id: str
    clinic_id: str
    token_sha256: str


class DeviceRegistry:
    """Registered devices, looked up by token."""

    def __init__(self, entries: Iterable[DeviceEntry]) -> None:
        self._by_hash: dict[str, DeviceEntry] = {}
        device_ids: set[str] = set()
        for entry in entries:
            _check_entry(entry)
            if entry.device_id in device_ids:
                raise ValueError(f"device_id {entry.device_id!r} is registered twice")
            if entry.token_sha256 in self._by_hash:
                raise ValueError(f"device {entry.device_id!r} shares its token with another")
            device_ids.add(entry.device_id)
            self._by_hash[entry.token_sha256] = entry

    @classmethod
    def load(cls, path: Path) -> DeviceRegistry:
        """Read a registry file; raises ValueError naming the problem if it is malformed."""
        data = json.loads(Path(path).read_text())
        try:
            return cls(DeviceEntry(**d) for d in data["devices"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a device registry ({exc})") from None

    def save(self, path: Path) -> None:
        """Write the registry atomically (hashes only)."""
        body = json.dumps({"devices": [asdict(e) for e in self.entries]}, indent=2)
        _write_atomic(Path(path), body, mode=0o600)

    @property
    def entries(self) -> list[DeviceEntry]:
        """All entries, in registration order."""
        return list(self._by_hash.values())

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, token: str) -> DeviceEntry | None:
        """The entry whose token hash matches ``token``, or None.

        The lookup is by digest, so its timing reveals nothing usable about the token;
        the final comparison is constant-time all the same.
        """
        if not token:
            return None
        digest = hash_token(token)
        entry = self._by_hash.get(digest)
        if entry is None or not hmac.compare_digest(entry.token_sha256, digest):
            return None
        return entry


def provision(
    registry_path: Path,
    credentials_path: Path,
    devices: list[tuple[str, str, str]],
) -> list[DeviceCredential]:
    """Create fresh tokens for ``(device_id, patient_id, clinic_id)`` triples.

    Writes the hashed registry to ``registry_path`` and the plain tokens to
    ``credentials_path`` (mode 0600), replacing both files. Returns the credentials.
    """
    credentials = [
        DeviceCredential(device_id=d, patient_id=p, clinic_id=c,
                         token=secrets.token_urlsafe(TOKEN_BYTES))
        for d, p, c in devices
    ]
    registry = DeviceRegistry(
        DeviceEntry(device_id=c.device_id, patient_id=c.patient_id, clinic_id=c.clinic_id,
                    token_sha256=hash_token(c.token))
        for c in credentials
    )
    registry.save(registry_path)
    save_credentials(credentials_path, credentials)
    return credentials


def _check_entry(entry: DeviceEntry) -> None:
    for name in ("device_id", "patient_id", "clinic_id"):
        value = getattr(entry, name)
        if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
            raise ValueError(
                f"{name} {value!r} must be 1-64 characters of letters, digits, "
                "'_', '.', ':' or '-'"
            )
    digest = entry.token_sha256
    if not (isinstance(digest, str) and len(digest) == 64
            and all(ch in "0123456789abcdef" for ch in digest)):
        raise ValueError(f"device {entry.device_id!r}: token_sha256 must be 64 lowercase hex")


def _write_atomic(path: Path, body: str, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
