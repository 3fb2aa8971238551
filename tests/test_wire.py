"""The IMU chunk wire format: round trip and every structural fault named."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from justwalk.wire import (
    CHANNELS,
    CRC_BYTES,
    HEADER_BYTES,
    KAFKA_HEADER_CLINIC,
    MAX_SAMPLES,
    VERSION,
    ChunkError,
    ChunkFlags,
    ImuChunk,
    Placement,
    clinic_from_headers,
    decode_chunk,
    encode_chunk,
    frame_upload,
    seal,
    split_upload,
)


def reseal(data: bytes | bytearray) -> bytes:
    """A changed message sealed again, as a device that built it so would send it."""
    return seal(bytes(data[:-CRC_BYTES]))


def make(n: int = 50, **kw) -> ImuChunk:
    rng = np.random.default_rng(0)
    args = dict(patient_id="pt-001", device_id="dev-001", session_id="2026-11-24T08:00",
                sequence=7, t0_us=1_795_000_000_123_456, sample_rate_hz=100.0,
                placement=Placement.LOWER_BACK,
                samples=rng.normal(0, 3, (n, 6)).astype(np.float32), clinic_id="")
    args.update(kw)
    return ImuChunk(**args)


def test_round_trip_is_exact():
    c = make(clinic_id="clinic-a")
    d = decode_chunk(encode_chunk(c))
    assert (d.patient_id, d.device_id, d.session_id, d.clinic_id) == (
        "pt-001", "dev-001", "2026-11-24T08:00", "clinic-a")
    assert (d.sequence, d.t0_us, d.sample_rate_hz, d.placement) == (
        7, 1_795_000_000_123_456, 100.0, Placement.LOWER_BACK)
    np.testing.assert_array_equal(d.samples, c.samples)
    assert d.end_us - d.t0_us == 500_000
    assert d.acc_mps2.shape == (50, 3) and d.gyr_radps.shape == (50, 3)


def test_a_decoded_chunk_is_the_chunk_the_constructor_makes():
    """``decode_chunk`` builds the chunk through its slots; it is the same object, frozen,
    with every field of the same type, and the samples a read-only view of the message."""
    c = make(clinic_id="clinic-a", flags=ChunkFlags.LAST)
    data = encode_chunk(c)
    d = decode_chunk(data)
    built = ImuChunk(**{f.name: getattr(d, f.name) for f in dataclasses.fields(ImuChunk)})
    assert d == built and repr(d) == repr(built)
    assert [type(getattr(d, f.name)) for f in dataclasses.fields(ImuChunk)] == [
        str, str, str, int, int, float, Placement, np.ndarray, str, ChunkFlags]
    assert d.samples.dtype == np.float32 and d.samples.shape == (50, 6)
    assert not d.samples.flags.writeable and d.samples.flags.c_contiguous
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.sequence = 8  # type: ignore[misc]
    other = decode_chunk(data, clinic_id="clinic-b")
    assert other == dataclasses.replace(d, clinic_id="clinic-b", samples=other.samples)
    np.testing.assert_array_equal(other.samples, c.samples)


def test_ids_accepted_before_do_not_let_changed_ids_through():
    """Checked ids are remembered by their bytes and lengths: the same bytes cut at other
    lengths are other ids, and a changed id is checked again."""
    data = encode_chunk(make(clinic_id="clinic-a"))
    first = decode_chunk(data)
    assert decode_chunk(data).patient_id == first.patient_id == "pt-001"
    moved = bytearray(data)
    moved[HEADER_BYTES - 4] += 1  # patient id one byte longer, device id one shorter
    moved[HEADER_BYTES - 3] -= 1
    d = decode_chunk(reseal(moved))
    assert (d.patient_id, d.device_id, d.session_id) == ("pt-001d", "ev-001",
                                                          "2026-11-24T08:00")
    for bad, reason in ((b" ", "'pt 001'"), (b"\xe9", "ASCII")):
        changed = bytearray(data)
        changed[HEADER_BYTES + 2] = bad[0]
        for _ in range(2):  # a refused id is refused every time
            with pytest.raises(ChunkError) as e:
                decode_chunk(reseal(changed))
            assert e.value.code == "bad_id" and reason in e.value.reason
    empty = bytearray(data)
    empty[HEADER_BYTES - 4] = 0  # no patient id: the bytes now start the device id
    empty[HEADER_BYTES - 3] += 6
    with pytest.raises(ChunkError, match="bad_id: patient_id ''"):
        decode_chunk(reseal(empty))


def test_the_clinic_header_is_checked_every_time():
    assert clinic_from_headers([(KAFKA_HEADER_CLINIC, b"clinic-a")]) == "clinic-a"
    assert clinic_from_headers({KAFKA_HEADER_CLINIC: b"clinic-a"}) == "clinic-a"
    assert clinic_from_headers([(KAFKA_HEADER_CLINIC, bytearray(b"clinic-a"))]) == "clinic-a"
    for bad in (b"clinic a", b"clinic-\xe9", b"", b"a\n"):
        assert clinic_from_headers([(KAFKA_HEADER_CLINIC, bad)]) is None
        assert clinic_from_headers([(KAFKA_HEADER_CLINIC, bad)]) is None
    assert clinic_from_headers([("other", b"clinic-a")]) is None
    assert clinic_from_headers(None) is None


def test_compact_size():
    # 0.5 s at 100 Hz: 50 samples x 6 channels x 4 bytes plus a small header
    size = len(encode_chunk(make(50)))
    assert size == HEADER_BYTES + len("pt-001dev-0012026-11-24T08:00") + 50 * 24 + CRC_BYTES


def test_the_trailer_is_the_crc32c_of_everything_before_it():
    data = encode_chunk(make())
    assert data[2] == VERSION == 2
    # the standard CRC-32C check value (RFC 3720 B.4): "123456789" -> 0xE3069283
    assert seal(b"123456789")[-4:] == struct.pack("<I", 0xE3069283)
    assert seal(data[:-4]) == data


@pytest.mark.parametrize("position", [0, 2, 5, 9, 17, 30, 100, -5, -1])
def test_any_flipped_bit_is_a_bad_checksum(position):
    data = bytearray(encode_chunk(make()))
    data[position] ^= 0x10
    with pytest.raises(ChunkError) as e:
        decode_chunk(bytes(data))
    # a flip in the magic or the version is named as such; anything else by the checksum
    expected = {0: "bad_magic", 2: "unsupported_version"}.get(position, "bad_checksum")
    assert e.value.code == expected
    if expected == "bad_checksum":
        assert "send the chunk again" in e.value.reason.lower()


def test_truncated_or_extended_in_transit_is_a_bad_checksum_naming_the_lengths():
    data = encode_chunk(make())
    for bad in (data[:-7], data + bytes(24), data[:HEADER_BYTES + 2]):
        with pytest.raises(ChunkError) as e:
            decode_chunk(bad)
        assert e.value.code == "bad_checksum"
        assert "50 samples" in e.value.reason and f"has {len(bad)} bytes" in e.value.reason


def test_version_1_is_still_read_but_can_be_refused():
    c = make()
    v1 = bytearray(encode_chunk(c)[:-CRC_BYTES])
    v1[2] = 1  # the same layout without the trailer
    d = decode_chunk(bytes(v1))  # what Kafka may still hold from before the upgrade
    np.testing.assert_array_equal(d.samples, c.samples)
    with pytest.raises(ChunkError) as e:
        decode_chunk(bytes(v1), versions=(VERSION,))  # what the gateway does
    assert e.value.code == "unsupported_version"
    assert "no checksum" in e.value.reason and "send version 2" in e.value.reason


def test_truncated_message_is_named():
    data = encode_chunk(make())
    with pytest.raises(ChunkError) as e:  # a device that sealed a short message
        decode_chunk(reseal(data[:-10]))
    assert e.value.code == "truncated" and "50 samples" in e.value.reason
    with pytest.raises(ChunkError) as e:
        decode_chunk(data[:10])
    assert e.value.code == "truncated"


def test_wrong_sample_count_is_named():
    data = bytearray(encode_chunk(make(50)))
    struct.pack_into("<H", data, 6, 40)  # header claims 40 samples, payload has 50
    with pytest.raises(ChunkError) as e:
        decode_chunk(reseal(data))
    assert e.value.code == "sample_count_mismatch"
    assert "40 samples" in e.value.reason


def test_nan_and_inf_are_named_with_sample_and_channel():
    c = make()
    c.samples[12, 4] = np.nan
    with pytest.raises(ChunkError) as e:
        decode_chunk(encode_chunk(c))
    assert e.value.code == "non_finite" and "sample 12" in e.value.reason
    assert "gyr_y" in e.value.reason


@pytest.mark.parametrize("bits", [
    0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FFFFFFF, 0xFFFFFFFF,
    0x7F7FFFFF, 0xFF7FFFFF, 0x7F000000, 0x7E800000, 0x00000001, 0x80000000, 0x3F800000])
@pytest.mark.parametrize("where", [(0, 0), (12, 4), (49, 5)])
def test_every_non_finite_float32_is_named_and_every_finite_one_taken(bits, where):
    """inf, -inf and NaNs (any payload, either sign) are refused where they are; the
    largest finite values (whose last byte is that of inf's), subnormals and -0 pass."""
    c = make()
    value = np.array([bits], dtype="<u4").view("<f4")[0]
    c.samples[where] = value
    data = encode_chunk(c)
    if np.isfinite(value):
        d = decode_chunk(data)
        assert d.samples.view("<u4")[where] == bits
        np.testing.assert_array_equal(d.samples, c.samples)
    else:
        with pytest.raises(ChunkError) as e:
            decode_chunk(data)
        assert e.value.code == "non_finite"
        assert e.value.reason.startswith(f"sample {where[0]} channel {CHANNELS[where[1]]} is ")


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "code"),
    [(0, "<2s", b"XX", "bad_magic"), (2, "<B", 9, "unsupported_version"),
     (3, "<B", 77, "bad_placement"), (6, "<H", 0, "bad_sample_count"),
     (8, "<f", -100.0, "bad_sample_rate")],
)
def test_header_faults(offset, fmt, value, code):
    data = bytearray(encode_chunk(make()))
    struct.pack_into(fmt, data, offset, value)
    with pytest.raises(ChunkError) as e:
        decode_chunk(reseal(data))
    assert e.value.code == code


def test_ids_are_restricted_and_limits_enforced():
    with pytest.raises(ChunkError, match="bad_id"):
        encode_chunk(make(patient_id="Jane Doe"))
    with pytest.raises(ChunkError, match="bad_sample_count"):
        encode_chunk(make(MAX_SAMPLES + 1))
    with pytest.raises(ChunkError, match="too_large"):
        decode_chunk(b"JW" + b"\0" * 100_000)
    with pytest.raises(ChunkError, match="bad_sequence"):
        encode_chunk(make(sequence=2**32))


@pytest.mark.parametrize("field", ["patient_id", "device_id", "session_id", "clinic_id"])
def test_an_id_ending_in_a_newline_is_refused(field):
    # ``re.match`` with ``$`` would let "abc\n" through; the ids are matched whole.
    with pytest.raises(ChunkError, match="bad_id"):
        encode_chunk(make(**{field: "abc\n"}))
    ok = make(**{field: "abcd"})
    data = encode_chunk(ok)
    at = data.index(b"abcd")
    sneaked = bytearray(data)
    sneaked[at + 3] = ord("\n")  # same length: "abc\n"
    with pytest.raises(ChunkError) as e:
        decode_chunk(reseal(sneaked))
    assert e.value.code == "bad_id" and "'abc\\n'" in e.value.reason


def test_the_last_chunk_flag_round_trips_and_reserved_bits_are_refused():
    assert not make().ends_session and decode_chunk(encode_chunk(make())).flags == 0
    last = make(flags=ChunkFlags.LAST)
    data = encode_chunk(last)
    assert struct.unpack_from("<H", data, 4) == (1,)  # bit 0 of the header's flags
    d = decode_chunk(data)
    assert d.ends_session and d.flags is ChunkFlags.LAST
    assert d.with_clinic("clinic-a").ends_session  # the gateway passes it through
    bad = bytearray(data)
    struct.pack_into("<H", bad, 4, 0b101)
    with pytest.raises(ChunkError) as e:
        decode_chunk(reseal(bad))
    assert e.value.code == "bad_flags" and "0x0004" in e.value.reason
    assert "bit 0 (last chunk of the session)" in e.value.reason
    with pytest.raises(ChunkError, match="bad_flags"):
        encode_chunk(make(flags=ChunkFlags(2)))


def test_upload_framing():
    msgs = [encode_chunk(make(sequence=i)) for i in range(3)]
    assert split_upload(frame_upload(msgs)) == msgs
    body = frame_upload(msgs)
    with pytest.raises(ChunkError, match="truncated"):
        split_upload(body[:-5])
