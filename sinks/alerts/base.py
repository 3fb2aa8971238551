"""Small contracts shared by the alert service's parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DELIVERED", "FAILED", "RETRY", "Outcome"]

DELIVERED = "delivered"
FAILED = "failed"
RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one delivery attempt.

    ``delivered``: the receiver has it. ``failed``: it will never take it (permanent; the
    job is kept in the outbox as failed). ``retry``: try again later, after at least
    ``retry_after_s`` if the receiver asked for that.
    """

    status: Literal["delivered", "failed", "retry"]
    detail: str
    retry_after_s: float | None = None

    @classmethod
    def delivered(cls, detail: str = "") -> Outcome:
        """The receiver accepted it."""
        return cls("delivered", detail)

    @classmethod
    def failed(cls, detail: str) -> Outcome:
        """Permanent failure."""
        return cls("failed", detail)

    @classmethod
    def retry(cls, detail: str, *, retry_after_s: float | None = None) -> Outcome:
        """Transient failure."""
        return cls("retry", detail, retry_after_s)
