"""Metadata: the msgpack map of str to scalar, its validation, and the pre-encoded template."""

from __future__ import annotations

import math
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshkit.errors import MalformedFrame
from meshkit.protocol import metadata as md
from meshkit.protocol.metadata import Metadata, MetadataTemplate, decode_metadata, encode_metadata

keys = st.text(max_size=20)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=50),
)
metadata_maps = st.dictionaries(keys, scalars, max_size=20)


def _same(a: Metadata, b: Metadata) -> bool:
    """Equal, with bool/int kept apart (True == 1 in Python, but not on the wire)."""
    return a == b and all(type(a[k]) is type(b[k]) for k in a)


# -- encode / decode ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"service": "greeter", "method": "hello"},
        {"deadline": 250},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "a=b"},
        {"authorization": "Bearer x", "caller": "web", "request-id": "r-1"},
        {"ünïcødé 🔑": "välue ✓", "": ""},
        {"i64-min": -(2**63), "u64-max": 2**64 - 1, "zero": 0},
        {"float": 1.5, "neg": -0.0, "inf": math.inf},
        {"true": True, "false": False, "none": None},
        {"long": "x" * 70_000},
        {f"k{i}": i for i in range(100)},
    ],
    ids=lambda v: ",".join(list(v)[:3]) or "empty",
)
def test_round_trip_table(value: Metadata) -> None:
    decoded = decode_metadata(encode_metadata(value))
    assert _same(decoded, value)


@given(value=metadata_maps)
def test_round_trip_any_map(value: Metadata) -> None:
    assert _same(decode_metadata(encode_metadata(value)), value)


def test_empty_bytes_mean_no_metadata() -> None:
    assert decode_metadata(b"") == {}


def test_empty_map_encodes_to_one_byte() -> None:
    assert encode_metadata({}) == b"\x80"
    assert decode_metadata(b"\x80") == {}


def test_well_known_keys() -> None:
    assert (md.SERVICE, md.METHOD, md.DEADLINE) == ("service", "method", "deadline")
    assert (md.TRACEPARENT, md.TRACESTATE) == ("traceparent", "tracestate")
    assert (md.AUTHORIZATION, md.CALLER, md.REQUEST_ID) == ("authorization", "caller", "request-id")


# -- malformed --------------------------------------------------------------------------------

MALFORMED = {
    "invalid-opcode": b"\xc1",
    "truncated-map": b"\x82\xa1k\x01",
    "truncated-str": b"\x81\xa5ab",
    "array-not-map": b"\x92\x01\x02",
    "scalar-not-map": b"\x01",
    "string-not-map": b"\xa3abc",
    "nil-not-map": b"\xc0",
    "int-key": b"\x81\x01\x01",
    "nil-key": b"\x81\xc0\x01",
    "binary-key": b"\x81\xc4\x01k\x01",
    "nested-map-value": b"\x81\xa1k\x81\xa1j\x01",
    "array-value": b"\x81\xa1k\x91\x01",
    "binary-value": b"\x81\xa1k\xc4\x01x",
    "ext-value": b"\x81\xa1k\xd4\x01\x01",
    "timestamp-value": b"\x81\xa1k\xd6\xff\x00\x00\x00\x00",
    "trailing-bytes": encode_metadata({"a": 1}) + b"\x00",
    "two-maps": encode_metadata({"a": 1}) * 2,
    "str32-claims-4gib": b"\x81\xdb\xff\xff\xff\xffk",
    "array32-value-claims-4g-items": b"\x81\xa1k\xdd\xff\xff\xff\xff",
}


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_metadata_raises_malformed_frame(raw: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decode_metadata(raw)


# msgspec reports these as UnicodeDecodeError, not DecodeError: they must still be MalformedFrame.
INVALID_UTF8 = {
    "key": b"\x81\xa2\xff\xfe\x01",
    "value": b"\x81\xa1k\xa2\xff\xfe",
    "surrogate-in-key": b"\x81\xa3\xed\xa0\x80\x01",
}


@pytest.mark.parametrize("raw", list(INVALID_UTF8.values()), ids=list(INVALID_UTF8))
def test_invalid_utf8_metadata_raises_malformed_frame(raw: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decode_metadata(raw)


@settings(max_examples=500)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_malformed_frame(raw: bytes) -> None:
    try:
        value = decode_metadata(raw)
    except MalformedFrame:
        return
    assert isinstance(value, dict)
    assert all(isinstance(k, str) for k in value)
    assert all(v is None or isinstance(v, (str, int, float, bool)) for v in value.values())


@pytest.mark.parametrize(
    "raw",
    [
        b"\xdf" + (10**9).to_bytes(4, "big"),  # map32 of 10^9 entries, and nothing after it
        b"\xdf" + (10**9).to_bytes(4, "big") + b"\xa1k\x01" * 1000,  # ... and 1000 real ones
        b"\xdf\xff\xff\xff\xff",  # map32 of 2^32-1 entries
        b"\xde\xff\xff",  # map16 of 65535 entries
    ],
    ids=["1e9-empty", "1e9-then-1000", "u32-max", "map16-max"],
)
def test_huge_map_header_is_refused_quickly_without_allocating(raw: bytes) -> None:
    tracemalloc.start()
    started = time.thread_time()  # this thread's CPU time: a busy machine does not inflate it
    try:
        with pytest.raises(MalformedFrame):
            decode_metadata(raw)
        elapsed = time.thread_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 10^9 preallocated dict slots would be gigabytes and seconds; a streaming decoder needs ~nothing.
    assert peak < 1_000_000, f"peak {peak} bytes"
    assert elapsed < 1.0, f"{elapsed:.2f} s of CPU"


# -- MetadataTemplate ------------------------------------------------------------------------

FIXED = {"service": "greeter", "method": "hello"}


def test_render_without_deadline_or_extra_is_the_fixed_map() -> None:
    rendered = MetadataTemplate(FIXED).render()
    assert rendered == encode_metadata(FIXED)
    assert decode_metadata(rendered) == FIXED


@pytest.mark.parametrize("deadline_ms", [0, 1, 127, 128, 65_535, 65_536, 2**31, 2**40])
def test_render_with_deadline(deadline_ms: int) -> None:
    rendered = MetadataTemplate(FIXED).render(deadline_ms)
    assert rendered == encode_metadata({**FIXED, "deadline": deadline_ms})
    assert decode_metadata(rendered) == {**FIXED, "deadline": deadline_ms}


def test_render_with_extra_keys() -> None:
    extra = {"caller": "web", "credit": 64, "trace": None, "flag": True}
    rendered = MetadataTemplate(FIXED).render(None, extra)
    assert rendered == encode_metadata({**FIXED, **extra})
    assert _same(decode_metadata(rendered), {**FIXED, **extra})


def test_render_with_deadline_and_extra_keys() -> None:
    rendered = MetadataTemplate(FIXED).render(500, {"request-id": "r1"})
    assert decode_metadata(rendered) == {**FIXED, "deadline": 500, "request-id": "r1"}


def test_empty_extra_is_no_extra() -> None:
    tpl = MetadataTemplate(FIXED)
    assert tpl.render(5, {}) == tpl.render(5)


def test_empty_template() -> None:
    tpl = MetadataTemplate({})
    assert tpl.render() == b"\x80"
    assert decode_metadata(tpl.render(7)) == {"deadline": 7}


@pytest.mark.parametrize(
    ("n_fixed", "deadline", "n_extra", "first_byte"),
    [
        (15, False, 0, 0x8F),  # fixmap, the largest
        (15, True, 0, 0xDE),  # the deadline makes it 16: map16
        (14, True, 1, 0xDE),
        (2, False, 14, 0xDE),  # extra keys make it 16
        (1, True, 13, 0x8F),  # 15 in all: still a fixmap
        (20, True, 20, 0xDE),  # every part bigger than a fixmap
        (0, False, 16, 0xDE),
    ],
)
def test_render_map_header_switches_to_map16_past_15_keys(
    n_fixed: int, deadline: bool, n_extra: int, first_byte: int
) -> None:
    fixed: Metadata = {f"f{i}": i for i in range(n_fixed)}
    extra: Metadata = {f"x{i}": f"v{i}" for i in range(n_extra)}
    rendered = MetadataTemplate(fixed).render(123 if deadline else None, extra)
    expected = {**fixed, **({"deadline": 123} if deadline else {}), **extra}
    count = len(expected)
    assert rendered[0] == first_byte
    if first_byte == 0xDE:
        assert rendered[1:3] == count.to_bytes(2, "big")
    else:
        assert rendered[0] == 0x80 | count
    assert rendered == encode_metadata(expected)
    assert decode_metadata(rendered) == expected


def test_render_map32_past_65535_keys() -> None:
    extra: Metadata = {f"x{i}": i for i in range(70_000)}
    rendered = MetadataTemplate(FIXED).render(1, extra)
    assert rendered[0] == 0xDF
    assert int.from_bytes(rendered[1:5], "big") == 70_003
    assert rendered == encode_metadata({**FIXED, "deadline": 1, **extra})


@settings(max_examples=200)
@given(
    fixed=st.dictionaries(keys.map(lambda k: "f" + k), scalars, max_size=20),
    extra=st.dictionaries(keys.map(lambda k: "x" + k), scalars, max_size=20),
    deadline=st.none() | st.integers(0, 2**63 - 1),
)
def test_render_equals_encoding_the_merged_map(fixed: Metadata, extra: Metadata, deadline: int | None) -> None:
    merged: Metadata = dict(fixed)
    if deadline is not None:
        merged["deadline"] = deadline
    merged.update(extra)
    rendered = MetadataTemplate(fixed).render(deadline, extra)
    assert rendered == encode_metadata(merged)
    assert _same(decode_metadata(rendered), merged)


def test_template_is_reusable() -> None:
    tpl = MetadataTemplate(FIXED)
    first = tpl.render(10, {"a": 1})
    assert tpl.render() == encode_metadata(FIXED)
    assert tpl.render(10, {"a": 1}) == first
