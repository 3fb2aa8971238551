"""Property-based tests (hypothesis) of the wire decoder and the gateway's validator.

- Any bytes decode to a chunk or raise a ChunkError with a code; nothing else escapes.
- A sealed chunk with any burst of up to 32 changed bits is refused (CRC-32C's guarantee).
- In any session streamed with lost chunks filled in later, one outlier (a wild sequence
  number or a timestamp moved) is refused and every chunk after it is still accepted.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ingest.registry import DeviceEntry, hash_token
from ingest.validation import ChunkValidator, Outcome
from justwalk.wire import (
    CRC_BYTES,
    HEADER_BYTES,
    ChunkError,
    ChunkFlags,
    ImuChunk,
    Placement,
    decode_chunk,
    encode_chunk,
    seal,
)

NOW_US = 1_750_000_000_000_000
ENTRY = DeviceEntry("dev-1", "ms-0001", "clinic-a", hash_token("secret"))
FAST = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def chunk(seq: int, *, n: int = 50, fs: float = 100.0, start_us: int = NOW_US - 3_600_000_000,
          t0_us: int | None = None) -> ImuChunk:
    samples = np.zeros((n, 6), dtype=np.float32)
    samples[:, 0] = 9.81
    samples[:, 1] = (seq % 1000) / 100
    if t0_us is None:
        t0_us = start_us + seq * round(n * 1e6 / fs)
    return ImuChunk(patient_id="ms-0001", device_id="dev-1", session_id="s1", sequence=seq,
                    t0_us=t0_us, sample_rate_hz=fs, placement=Placement.LOWER_BACK,
                    samples=samples)


VALID = encode_chunk(chunk(7))


def decodes_or_names_its_fault(data: bytes) -> ImuChunk | None:
    try:
        return decode_chunk(data)
    except ChunkError as exc:
        assert exc.code and exc.code.isidentifier(), exc
        assert exc.reason
        return None


@FAST
@given(st.binary(max_size=3000))
def test_any_bytes_decode_or_raise_a_named_chunk_error(data: bytes) -> None:
    decodes_or_names_its_fault(data)


@FAST
@given(st.binary(max_size=200))
def test_bytes_behind_a_valid_header_decode_or_raise_a_named_chunk_error(tail: bytes) -> None:
    decodes_or_names_its_fault(VALID[:HEADER_BYTES] + tail)
    decodes_or_names_its_fault(seal(VALID[:HEADER_BYTES] + tail))  # sealed: deeper checks


@FAST
@given(st.integers(0, len(VALID) - 1), st.binary(min_size=1, max_size=4))
def test_a_changed_burst_of_up_to_32_bits_is_always_refused(at: int, new: bytes) -> None:
    data = bytearray(VALID)
    data[at:at + len(new)] = new
    data = data[:len(VALID)]
    assume(bytes(data) != VALID)
    assert decodes_or_names_its_fault(bytes(data)) is None


@FAST
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8),
       st.integers(-20, 20))
def test_mutated_and_resealed_chunks_decode_or_raise_a_named_chunk_error(
    changes: list[tuple[int, int]], resize: int,
) -> None:
    # what a buggy device sends: wrong fields, sealed with a correct checksum
    body = bytearray(VALID[:-CRC_BYTES])
    for at, value in changes:
        body[at % len(body)] = value
    body = body + bytes(resize) if resize > 0 else body[:len(body) + resize]
    decoded = decodes_or_names_its_fault(seal(bytes(body)))
    if decoded is not None:
        assert decoded.n_samples >= 1 and np.isfinite(decoded.samples).all()


@st.composite
def streams_with_an_outlier(draw: st.DrawFn) -> tuple[list[ImuChunk], int]:
    """A session's chunks in arrival order, with one outlier; (chunks, index of outlier).

    The stream loses some stretches (device offline) that are uploaded later, as store and
    forward does; the outlier is a copy of a chunk with a wild sequence number or a moved
    timestamp, sent after the session's first chunk.
    """
    n = draw(st.integers(8, 120))
    chunks = [chunk(i) for i in range(n)]
    lost: set[int] = set()
    for _ in range(draw(st.integers(0, 3))):
        a = draw(st.integers(1, n - 2))
        lost.update(range(a, min(n - 1, a + draw(st.integers(1, 40)))))
    live = [c for c in chunks if c.sequence not in lost]
    late = [c for c in chunks if c.sequence in lost]
    if draw(st.booleans()):
        late.reverse()
    order = live + late
    at = draw(st.integers(1, len(order)))  # the outlier goes before order[at]
    base = order[draw(st.integers(0, at - 1)) if draw(st.booleans()) else at % len(order)]
    if draw(st.booleans()):
        wild = draw(st.one_of(st.just(2**32 - 1), st.integers(1, 2**32 - 1 - base.sequence)))
        outlier = dataclasses.replace(base, sequence=min(base.sequence + wild, 2**32 - 1))
    else:
        shift_us = draw(st.integers(100_000, 299_000_000))
        sign = draw(st.sampled_from([-1, 1]))
        outlier = dataclasses.replace(base, t0_us=base.t0_us + sign * shift_us)
    return [*order[:at], outlier, *order[at:]], at


@FAST
@given(streams_with_an_outlier())
def test_an_outlier_is_refused_and_never_its_successors(case: tuple[list[ImuChunk], int]) -> None:
    stream, at = case
    v = ChunkValidator(max_clock_skew_s=300.0, max_upload_age_s=86400.0)
    for i, c in enumerate(stream):
        verdict = v.check(c, ENTRY, NOW_US)
        if i == at:
            assert verdict.outcome is Outcome.REJECT, (c.sequence, c.t0_us)
            assert verdict.code in ("off_timeline", "timestamp_overlap", "stale_sequence",
                                    "future_timestamp"), verdict
        else:
            assert verdict.outcome is Outcome.ACCEPT, (i, c.sequence, verdict)


@FAST
@given(st.lists(st.integers(0, 59), min_size=1, max_size=120))
def test_any_resend_order_of_a_clean_stream_is_accepted_once_then_duplicate(
    arrivals: list[int],
) -> None:
    # chunks of one clean session arriving in any order, any number of times
    v = ChunkValidator(max_clock_skew_s=300.0, max_upload_age_s=86400.0)
    seen: set[int] = set()
    for seq in arrivals:
        c = chunk(seq)
        if seq == 59:
            c = dataclasses.replace(c, flags=ChunkFlags.LAST)
        verdict = v.check(c, ENTRY, NOW_US)
        expected = Outcome.DUPLICATE if seq in seen else Outcome.ACCEPT
        assert verdict.outcome is expected, (seq, verdict)
        seen.add(seq)
