from __future__ import annotations

import copy

import numpy as np
import pytest

from ingest.registry import DeviceEntry, hash_token
from ingest.validation import ChunkValidator, Outcome, Verdict
from justwalk.wire import ChunkFlags, ImuChunk, Placement

NOW_US = 1_750_000_000_000_000
FS = 100.0
N = 100  # one second per chunk at FS
ENTRY = DeviceEntry("dev-1", "ms-0001", "clinic-a", hash_token("secret"))


def chunk(seq: int, t0_us: int | None = None, *, n: int = N, fs: float = FS,
          samples: np.ndarray | None = None, session: str = "s1",
          device: str = "dev-1", patient: str = "ms-0001", last: bool = False) -> ImuChunk:
    """Chunk ``seq`` of a gapless stream that starts 60 s before NOW_US, by default."""
    if t0_us is None:
        t0_us = NOW_US - 60_000_000 + seq * round(n * 1e6 / fs)
    if samples is None:
        samples = np.zeros((n, 6), dtype=np.float32)
        samples[:, 0] = 9.81
    return ImuChunk(patient_id=patient, device_id=device, session_id=session, sequence=seq,
                    t0_us=t0_us, sample_rate_hz=fs, placement=Placement.LOWER_BACK,
                    samples=samples, flags=ChunkFlags.LAST if last else ChunkFlags.NONE)


@pytest.fixture
def v() -> ChunkValidator:
    return ChunkValidator(max_clock_skew_s=300.0, max_upload_age_s=86400.0)


def accept_all(v: ChunkValidator, *chunks: ImuChunk) -> None:
    for c in chunks:
        assert v.check(c, ENTRY, NOW_US) == Verdict(Outcome.ACCEPT)


def assert_rejected(v: ChunkValidator, c: ImuChunk, code: str, *words: str) -> Verdict:
    """The chunk is rejected with ``code``, the reason names ``words``, and state is intact."""
    before = copy.deepcopy(v.session(c.device_id, c.session_id))
    verdict = v.check(c, ENTRY, NOW_US)
    assert verdict.outcome is Outcome.REJECT, verdict
    assert verdict.code == code, verdict
    for word in words:
        assert word in verdict.reason, (word, verdict.reason)
    assert v.session(c.device_id, c.session_id) == before
    return verdict


def test_a_gapless_stream_is_accepted_and_remembered(v: ChunkValidator) -> None:
    accept_all(v, *(chunk(i) for i in range(5)))
    state = v.session("dev-1", "s1")
    assert state is not None
    assert state.sample_rate_hz == FS
    assert state.last_sequence == 4
    assert state.last_end_us == chunk(4).end_us
    assert len(state.runs) == 1


def test_sessions_are_kept_per_device_and_session(v: ChunkValidator) -> None:
    accept_all(v, chunk(5), chunk(0, session="s2"))
    assert len(v) == 2


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"device": "dev-2"}, ["'dev-2'", "'dev-1'"]),
     ({"patient": "ms-0002"}, ["'ms-0002'", "'ms-0001'"])],
)
def test_forbidden_identity(v: ChunkValidator, kwargs: dict[str, str], words: list[str]) -> None:
    assert_rejected(v, chunk(0, **kwargs), "forbidden_identity", *words)  # type: ignore[arg-type]
    assert len(v) == 0


@pytest.mark.parametrize("fs", [10.0, 19.9, 400.5, 1000.0])
def test_sample_rate_outside_limits(v: ChunkValidator, fs: float) -> None:
    assert_rejected(v, chunk(0, fs=fs), "bad_sample_rate", f"{fs:g} Hz", "20..400 Hz")


@pytest.mark.parametrize("fs", [20.0, 400.0])
def test_sample_rate_limits_are_inclusive(v: ChunkValidator, fs: float) -> None:
    accept_all(v, chunk(0, fs=fs))


def test_sample_rate_must_match_the_session(v: ChunkValidator) -> None:
    accept_all(v, chunk(0))
    assert_rejected(v, chunk(1, chunk(0).end_us, fs=50.0), "bad_sample_rate",
                    "50 Hz", "100 Hz", "'s1'")
    accept_all(v, chunk(1))


@pytest.mark.parametrize(
    ("row", "col", "value", "words"),
    [(7, 1, 200.0, ["sample 7", "acc_y", "200", "160 m/s^2"]),
     (0, 2, -161.0, ["sample 0", "acc_z", "-161", "160 m/s^2"]),
     (99, 5, -40.5, ["sample 99", "gyr_z", "-40.5", "40 rad/s"]),
     (3, 3, 41.0, ["sample 3", "gyr_x", "41", "40 rad/s"])],
)
def test_out_of_range(v: ChunkValidator, row: int, col: int, value: float,
                      words: list[str]) -> None:
    samples = np.zeros((N, 6), dtype=np.float32)
    samples[row, col] = value
    assert_rejected(v, chunk(0, samples=samples), "out_of_range", *words)


def test_values_at_the_limits_are_accepted(v: ChunkValidator) -> None:
    samples = np.zeros((N, 6), dtype=np.float32)
    samples[0, :3] = [160.0, -160.0, 156.9]  # 16 g
    samples[1, 3:] = [40.0, -40.0, 34.9]  # 2000 deg/s
    accept_all(v, chunk(0, samples=samples))


def test_resend_is_a_duplicate_and_changes_nothing(v: ChunkValidator) -> None:
    accept_all(v, chunk(0), chunk(1), chunk(2))
    before = copy.deepcopy(v.session("dev-1", "s1"))
    for seq in (0, 1, 2):
        assert v.check(chunk(seq), ENTRY, NOW_US).outcome is Outcome.DUPLICATE
    assert v.session("dev-1", "s1") == before
    accept_all(v, chunk(3))


def test_lower_sequence_with_other_times_is_stale(v: ChunkValidator) -> None:
    accept_all(v, chunk(0), chunk(1), chunk(2))
    # A device that restarted its counter but kept the session id, sending current data.
    assert_rejected(v, chunk(1, chunk(5).t0_us), "stale_sequence", "sequence 1")


def test_a_sequence_below_the_session_with_later_data_is_stale(v: ChunkValidator) -> None:
    accept_all(v, chunk(10), chunk(11))
    assert_rejected(v, chunk(3, chunk(11).t0_us), "stale_sequence", "sequence 3", "10")


def test_timestamp_overlap(v: ChunkValidator) -> None:
    accept_all(v, chunk(0))
    end = chunk(0).end_us
    verdict = assert_rejected(v, chunk(1, end - 20_000), "timestamp_overlap",
                              str(end - 20_000), "20.0 ms", "5.0 ms")
    assert "chunk 0" in verdict.reason
    accept_all(v, chunk(1, end - 4_000))  # under half a sample (5 ms) is clock jitter


def test_gaps_are_allowed(v: ChunkValidator) -> None:
    # chunks 1-4 lost: the time between 0 and 5 is what they covered
    accept_all(v, chunk(0), chunk(5), chunk(6), chunk(9))


def test_a_pause_without_missing_chunks_is_off_timeline(v: ChunkValidator) -> None:
    accept_all(v, chunk(0), chunk(5))
    # a recording that stopped and went on under the same session and the next number
    assert_rejected(v, chunk(6, chunk(6).t0_us + 3_000_000), "off_timeline", "chunk 6",
                    "3.0 s after the end of the accepted chunk 5", "right after it")
    accept_all(v, chunk(6))


POISON = 2**32 - 1


def test_a_wild_sequence_number_costs_only_its_own_chunk(v: ChunkValidator) -> None:
    accept_all(v, *(chunk(i) for i in range(5)))
    verdict = assert_rejected(v, chunk(POISON, chunk(5).t0_us), "off_timeline",
                              f"chunk {POISON}", "accepted chunk 4", f"{POISON - 5} chunks")
    assert "not stored" in verdict.reason
    accept_all(v, *(chunk(i) for i in range(5, 25)))  # the next 20 are not poisoned


@pytest.mark.parametrize("jump", [2, 3, 50, 10_000])
def test_a_sequence_jump_without_the_time_is_off_timeline(v: ChunkValidator, jump: int) -> None:
    accept_all(v, chunk(0), chunk(1))
    assert_rejected(v, chunk(1 + jump, chunk(2).t0_us), "off_timeline")
    accept_all(v, chunk(2), chunk(3))


def test_a_timestamp_minutes_ahead_costs_only_its_own_chunk(v: ChunkValidator) -> None:
    accept_all(v, *(chunk(i) for i in range(5)))
    ahead = chunk(5, chunk(5).t0_us + 250_000_000)  # inside the 300 s clock skew allowed
    assert_rejected(v, ahead, "off_timeline", "chunk 5", "4.2 min", "right after it")
    accept_all(v, *(chunk(i) for i in range(5, 35)))  # the next 30 are not poisoned


def test_an_outlier_filling_a_gap_is_judged_against_both_sides(v: ChunkValidator) -> None:
    accept_all(v, chunk(0), chunk(10))
    assert_rejected(v, chunk(4, chunk(2).t0_us), "off_timeline", "accepted chunk 0")
    accept_all(v, *(chunk(i) for i in range(1, 10)))


def test_a_resend_of_an_outlier_is_refused_again_and_duplicates_stay_duplicates(
    v: ChunkValidator,
) -> None:
    accept_all(v, chunk(0), chunk(1))
    outlier = chunk(2, chunk(2).t0_us + 60_000_000)
    for _ in range(2):
        assert_rejected(v, outlier, "off_timeline")
    assert v.check(chunk(1), ENTRY, NOW_US).outcome is Outcome.DUPLICATE
    accept_all(v, chunk(2))


def test_chunks_of_other_lengths_fill_a_gap_within_the_lengths_seen(v: ChunkValidator) -> None:
    # 1 s chunks and 0.5 s chunks in one session: a gap of three chunks may hold 1.5..3 s
    accept_all(v, chunk(0), chunk(1, chunk(0).end_us, n=50))
    end = chunk(1, chunk(0).end_us, n=50).end_us
    accept_all(v, chunk(5, end + 2_000_000))
    assert_rejected(v, chunk(9, chunk(5, end + 2_000_000).end_us + 3_100_000), "off_timeline")


def test_a_clock_stepped_forward_is_followed_after_three_agreeing_chunks(
    v: ChunkValidator,
) -> None:
    accept_all(v, chunk(0), chunk(1))
    step = 2_000_000
    stepped = [chunk(i, chunk(i).t0_us + step) for i in range(2, 8)]
    assert_rejected(v, stepped[0], "off_timeline")
    assert_rejected(v, stepped[1], "off_timeline")
    accept_all(v, *stepped[2:])  # the third in a row that agrees: the clock moved
    state = v.session("dev-1", "s1")
    assert state is not None and state.last_sequence == 7
    # an interrupted streak starts over; one outlier never moves the session
    v2 = ChunkValidator()
    accept_all(v2, chunk(0), chunk(1))
    assert_rejected(v2, chunk(2, chunk(2).t0_us + step), "off_timeline")
    assert_rejected(v2, chunk(3, chunk(3).t0_us + step), "off_timeline")
    accept_all(v2, chunk(2), chunk(3))
    assert_rejected(v2, chunk(4, chunk(4).t0_us + step), "off_timeline")


def test_a_gap_filled_later_is_accepted_not_taken_for_a_resend(v: ChunkValidator) -> None:
    # Live streaming lost 2..4; store-and-forward uploads them after 5..6 arrived.
    accept_all(v, chunk(0), chunk(1), chunk(5), chunk(6))
    accept_all(v, chunk(3), chunk(2), chunk(4))
    state = v.session("dev-1", "s1")
    assert state is not None and len(state.runs) == 1
    for seq in range(7):
        assert v.check(chunk(seq), ENTRY, NOW_US).outcome is Outcome.DUPLICATE


def test_a_gap_fill_must_fit_in_the_gap(v: ChunkValidator) -> None:
    accept_all(v, chunk(0), chunk(5))
    assert_rejected(v, chunk(3, chunk(0).end_us - 50_000), "timestamp_overlap")
    assert_rejected(v, chunk(3, chunk(5).t0_us - 500_000), "stale_sequence")


def test_the_last_chunk_ends_the_session(v: ChunkValidator) -> None:
    accept_all(v, chunk(0), chunk(1), chunk(3), chunk(4, last=True))
    state = v.session("dev-1", "s1")
    assert state is not None and state.end_seq == 4
    # resending it, or any earlier chunk, is a duplicate; a gap may still be filled
    assert v.check(chunk(4, last=True), ENTRY, NOW_US).outcome is Outcome.DUPLICATE
    assert v.check(chunk(1), ENTRY, NOW_US).outcome is Outcome.DUPLICATE
    accept_all(v, chunk(2))
    # nothing after it: the device must start a new session
    assert_rejected(v, chunk(5), "session_ended", "'s1'", "ended with chunk 4", "chunk 5",
                    "new session id")
    accept_all(v, chunk(5, session="s2"))


def test_a_last_chunk_below_an_accepted_one_is_refused(v: ChunkValidator) -> None:
    accept_all(v, chunk(0), chunk(3))
    assert_rejected(v, chunk(1, last=True), "bad_flags", "chunk 1", "last", "chunk 3")
    accept_all(v, chunk(1), chunk(4, last=True))


def test_future_timestamp(v: ChunkValidator) -> None:
    assert_rejected(v, chunk(0, NOW_US + 301_000_000), "future_timestamp", "301.0 s", "300 s",
                    "ahead")
    accept_all(v, chunk(0, NOW_US + 299_000_000))


def test_too_old(v: ChunkValidator) -> None:
    old = NOW_US - 3 * 86400 * 1_000_000
    assert_rejected(v, chunk(0, old), "too_old", "3.0 days", "24.0 h")


def test_a_rejected_chunk_does_not_open_a_session(v: ChunkValidator) -> None:
    assert_rejected(v, chunk(0, fs=500.0), "bad_sample_rate")
    assert v.session("dev-1", "s1") is None
    accept_all(v, chunk(0, fs=50.0))


def test_evaluate_changes_nothing_and_record_commits(v: ChunkValidator) -> None:
    assert v.evaluate(chunk(0), ENTRY, NOW_US).accepted
    assert v.session("dev-1", "s1") is None
    v.record(chunk(0))
    assert v.evaluate(chunk(0), ENTRY, NOW_US).outcome is Outcome.DUPLICATE


def test_forget_lets_a_resend_through(v: ChunkValidator) -> None:
    accept_all(v, chunk(0))
    v.forget("dev-1", "s1")
    accept_all(v, chunk(0))


def test_sessions_are_bounded_lru() -> None:
    v = ChunkValidator(max_sessions=3)
    for s in ("a", "b", "c"):
        accept_all(v, chunk(0, session=s))
    accept_all(v, chunk(1, session="a"))  # "a" becomes most recent
    accept_all(v, chunk(0, session="d"))
    assert len(v) == 3
    assert v.session("dev-1", "b") is None
    assert v.session("dev-1", "a") is not None


def test_runs_per_session_are_bounded() -> None:
    v = ChunkValidator(max_runs_per_session=4)
    accept_all(v, *(chunk(seq) for seq in range(0, 20, 2)))  # every other chunk lost
    state = v.session("dev-1", "s1")
    assert state is not None and len(state.runs) == 4
    assert state.runs[0].first_seq == 12
    assert v.check(chunk(18), ENTRY, NOW_US).outcome is Outcome.DUPLICATE
