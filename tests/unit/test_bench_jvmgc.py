"""The broker's GC counters read from a HotSpot performance-data buffer: the layout walked the
way perfMemory.hpp lays it out (prologue, then self-describing entries)."""

from __future__ import annotations

import struct

import pytest

from bench.jvmgc import perf_offsets

ENTRY = "<iiibbbbi"  # length, name offset, vector length, type, flags, units, variability, data offset


def buffer(counters: dict[str, int], strings: dict[str, bytes]) -> bytes:
    """A little-endian buffer as a JVM writes it: 64-bit scalars ('J') and byte vectors ('B')."""
    entries = b""
    for name, value in counters.items():
        head = struct.calcsize(ENTRY)
        named = name.encode() + b"\0"
        padded = named + b"\0" * (-(head + len(named)) % 8)
        entries += struct.pack(ENTRY, head + len(padded) + 8, head, 0, ord("J"), 0, 0, 0, head + len(padded))
        entries += padded + struct.pack("<q", value)
    for name, text in strings.items():
        head = struct.calcsize(ENTRY)
        named = name.encode() + b"\0"
        entries += struct.pack(ENTRY, head + len(named) + len(text), head, len(text), ord("B"), 0, 0, 0,
                               head + len(named))  # fmt: skip
        entries += named + text
    count = len(counters) + len(strings)
    prologue = bytes.fromhex("cafec0c0") + bytes([1, 2, 0, 1]) + struct.pack("<iiqii", 0, 0, 0, 32, count)
    return prologue + entries


def test_every_scalar_counter_is_found_where_its_entry_points():
    counters = {"sun.gc.collector.0.invocations": 462, "sun.gc.collector.0.time": 13_362_590_766,
                "sun.os.hrt.frequency": 1_000_000_000}  # fmt: skip
    data = buffer(counters, {"sun.gc.collector.0.name": b"G1 young collection pauses\0"})
    order, offsets = perf_offsets(data)
    assert order == "<"
    assert set(offsets) == set(counters)  # the byte vector (a name) is not a counter
    assert {name: struct.unpack_from("<q", data, at)[0] for name, at in offsets.items()} == counters


def test_anything_else_is_refused():
    with pytest.raises(ValueError, match="not a HotSpot performance-data file"):
        perf_offsets(b"\0" * 64)
