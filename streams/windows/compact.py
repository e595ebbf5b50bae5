"""The compact stored form of a window's sample buffers and baselines, and of the document.

A sample buffer (``(event time ms, value)`` pairs, oldest first, whole seconds, values of at
most two decimals) is stored relative to the window's watermark:

- a short one (up to ``SHORT`` samples, most patients' most of the time) as two msgpack
  integer lists, second offsets and hundredths: ``["l", offsets, hundredths]``;
- a longer one delta-encoded, each column in the smallest integer type that holds its
  steps: ``["d", first offset, first hundredths, type, steps, type, steps]``; a day of
  5-minute heart rate is 288 one-byte steps of time and of value before compression;
- values that are not finite or beyond 2**53 hundredths (never clinical; hostile input
  that got this far) as raw float64: ``["r", offsets int64, values float64]``.

Every form gives back exactly the pairs it was given. A baseline's hours are stored as
steps from the newest hour with their integer sums and counts. The document (a dict by field
name) is msgpack, prefixed by its format byte and a codec byte (0: plain, 1: zlib, used
from ``COMPRESS_FROM`` bytes on, where it pays).
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

SHORT = 16
COMPRESS_FROM = 512  # bytes of msgpack
PLAIN, ZLIB = 0, 1
SECOND_MS = 1000
_EXACT = 2**53  # hundredths beyond this would not round-trip through float64
_TYPES = tuple((int(np.iinfo(kind).max), kind, code) for kind, code in (
    (np.int8, "b"), (np.int16, "h"), (np.int32, "i"), (np.int64, "q")
))  # fmt: skip

Samples = Sequence[tuple[int, float]]


def _steps(column: np.ndarray) -> tuple[str, bytes]:
    """Differences between neighbours, in the smallest type that holds them."""
    steps = np.diff(column)
    largest = int(np.abs(steps).max()) if len(steps) else 0
    for most, kind, code in _TYPES:
        if largest <= most:
            return code, steps.astype(kind).tobytes()
    msg = "steps beyond int64"  # cannot happen: both columns are bounded by 2**53
    raise ValueError(msg)


def pack_samples(watermark: int, samples: Samples) -> list[Any]:
    """A sample buffer's compact form (see the module docstring)."""
    if len(samples) <= SHORT:
        values = [v * 100 for _, v in samples]
        if all(math.isfinite(v) and abs(v) < _EXACT for v in values):
            offsets = [(watermark - t) // SECOND_MS for t, _ in samples]
            return ["l", offsets, [round(v) for v in values]]
    flat = itertools.chain.from_iterable(samples)
    pairs = np.fromiter(flat, dtype=np.float64, count=2 * len(samples)).reshape(-1, 2)
    offsets_col = (watermark - pairs[:, 0].astype(np.int64)) // SECOND_MS
    scaled = pairs[:, 1] * 100
    if not (np.isfinite(scaled).all() and (np.abs(scaled) < _EXACT).all()):
        return ["r", offsets_col.tobytes(), pairs[:, 1].tobytes()]
    hundredths = np.rint(scaled).astype(np.int64)
    return [
        "d",
        int(offsets_col[0]),
        int(hundredths[0]),
        *_steps(offsets_col),
        *_steps(hundredths),
    ]


def unpack_samples(watermark: int, packed: list[Any] | None) -> list[tuple[int, float]]:
    """The sample buffer ``pack_samples`` stored (empty for None)."""
    if not packed:
        return []
    form = packed[0]
    if form == "l":
        _, offsets, hundredths = packed
        return [
            (watermark - o * SECOND_MS, h / 100) for o, h in zip(offsets, hundredths, strict=True)
        ]
    if form == "r":
        offsets_col = np.frombuffer(packed[1], dtype=np.int64)
        values = np.frombuffer(packed[2], dtype=np.float64)
        times = watermark - offsets_col * SECOND_MS
        return list(zip(times.tolist(), values.tolist(), strict=True))
    if form != "d":
        msg = f"unknown sample buffer form {form!r}"
        raise ValueError(msg)
    _, first_offset, first_value, offset_type, offset_steps, value_type, value_steps = packed
    offsets_col = _cumulative(first_offset, offset_type, offset_steps)
    hundredths = _cumulative(first_value, value_type, value_steps)
    times = watermark - offsets_col * SECOND_MS
    return list(zip(times.tolist(), (hundredths / 100).tolist(), strict=True))


def _cumulative(first: int, code: str, steps: bytes) -> np.ndarray:
    column = np.empty(len(steps) // np.dtype(code).itemsize + 1, dtype=np.int64)
    column[0] = first
    np.cumsum(np.frombuffer(steps, dtype=code), out=column[1:])
    column[1:] += first
    return column


def pack_hours(hours: dict[int, tuple[int, int]]) -> list[Any]:
    """A baseline's hourly sums: [newest hour, steps back from it, sums, counts]."""
    if not hours:
        return []
    ordered = sorted(hours)
    newest = ordered[-1]
    return [
        newest,
        [newest - h for h in ordered],
        [hours[h][0] for h in ordered],
        [hours[h][1] for h in ordered],
    ]


def unpack_hours(packed: list[Any]) -> dict[int, tuple[int, int]]:
    if not packed:
        return {}
    newest, back, sums, counts = packed
    return {newest - b: (total, count) for b, total, count in zip(back, sums, counts, strict=True)}


def encode_document(version: int, data: dict[str, Any]) -> bytes:
    """Format byte, codec byte, msgpack (zlib-compressed from ``COMPRESS_FROM`` bytes)."""
    body: bytes = msgpack.packb(data)
    if len(body) >= COMPRESS_FROM:
        return bytes((version, ZLIB)) + zlib.compress(body, 1)
    return bytes((version, PLAIN)) + body


def decode_document(version: int, raw: bytes) -> Any:
    """The document ``encode_document`` wrote; anything else as msgpack (earlier formats
    were bare msgpack, whose first byte is never a small integer like ``version``)."""
    if len(raw) >= 2 and raw[0] == version:
        body = raw[2:]
        if raw[1] == ZLIB:
            body = zlib.decompress(body)
        elif raw[1] != PLAIN:
            msg = f"unknown codec {raw[1]} of a format-{version} window"
            raise ValueError(msg)
        return msgpack.unpackb(body, strict_map_key=False)
    return msgpack.unpackb(raw, strict_map_key=False)
