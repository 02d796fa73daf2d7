"""Mergeable quantile sketches for the rollups: DDSketch's logarithmic bins, stored sparsely.

A value x > 0 falls in bin k = ceil(log_gamma(x)) with gamma = (1 + a) / (1 - a); the bin is
read back as 2 gamma^k / (1 + gamma), which is within a relative a of every value in it
(DDSketch, Masson, Rim & Lee, VLDB 2019). With a = 1 %, the value answered for a quantile is
within 1 % of the exact one, for any distribution and any number of merges: merging is adding
bin counts, so a day's sketch is exactly the sum of its minutes'. The bin maths is the
`ddsketch` library's (`LogarithmicMapping`); its own stores are dense lists, which a rollup
row of one event cannot afford, so the bins are kept here as sorted (slot, count) pairs.

A slot orders all values on one integer line: 0 holds zero (and |x| below the smallest
indexable value), positive values sit at BIAS + k, negative ones at -(BIAS + k).

The encoding is little-endian (int32 slot, int64 count) pairs. Merging two sketches may
simply concatenate their bytes (the reader adds duplicate slots); `merge` compacts once a
sketch holds more pairs than COMPACT_AT, so a row written by many requests stays small.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from ddsketch.mapping import LogarithmicMapping

__all__ = [
    "COMPACT_BYTES",
    "RELATIVE_ACCURACY",
    "compact",
    "encode_slots",
    "grouped_quantiles",
    "merge",
    "quantiles",
    "slots_of",
    "value_of_slot",
]

RELATIVE_ACCURACY = 0.01
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
# |k| stays below 36,000 for every finite double, so slots never cross zero.
BIAS = 40_000
_ENTRY = np.dtype([("slot", "<i4"), ("count", "<i8")])
# Pairs; above this a merge re-sums duplicate slots. Well above the bins of most real
# distributions (latencies from 1 ms to a minute take ~550), so a compacted sketch grows for
# a while before it is compacted again; a row read stays below 12 KB.
COMPACT_AT = 1_024
COMPACT_BYTES = COMPACT_AT * _ENTRY.itemsize
_LOG2_MULTIPLIER = _MAPPING._multiplier  # ceil(log2(x) * m) is the library's key(x)


def slots_of(values: np.ndarray) -> np.ndarray:
    """The slot of each value (vectorised `LogarithmicMapping.key`, signed, zero at 0)."""
    values = np.asarray(values, dtype=np.float64)
    magnitude = np.abs(values)
    indexable = magnitude >= _MAPPING.min_possible
    clipped = np.clip(magnitude, _MAPPING.min_possible, _MAPPING.max_possible)
    keys = np.ceil(np.log2(clipped) * _LOG2_MULTIPLIER).astype(np.int64) + BIAS
    return np.where(indexable, np.where(values < 0, -keys, keys), 0).astype(np.int32)


def value_of_slot(slot: int) -> float:
    if slot == 0:
        return 0.0
    value = _MAPPING.value(abs(slot) - BIAS)
    return -value if slot < 0 else value


def encode_slots(slots: np.ndarray, counts: np.ndarray) -> bytes:
    pairs = np.empty(len(slots), dtype=_ENTRY)
    pairs["slot"] = slots
    pairs["count"] = counts
    return pairs.tobytes()


def _decode(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=_ENTRY)


def compact(blob: bytes) -> bytes:
    """The same sketch with each slot once, in slot order."""
    pairs = _decode(blob)
    slots, inverse = np.unique(pairs["slot"], return_inverse=True)
    return encode_slots(slots, np.bincount(inverse, weights=pairs["count"]).astype(np.int64))


def merge(first: bytes, second: bytes) -> bytes:
    joined = bytes(first) + bytes(second)
    return compact(joined) if len(joined) > COMPACT_BYTES else joined


def quantiles(blobs: Iterable[bytes], qs: Sequence[float]) -> list[float | None]:
    """The q-quantiles of the merged sketches, each the bin value of the element of rank
    floor(q (n - 1)) in sorted order (DDSketch's `get_quantile_value`), so within
    RELATIVE_ACCURACY of that element; None for an empty sketch."""
    pairs = _decode(b"".join(bytes(blob) for blob in blobs))
    if not len(pairs):
        return [None] * len(qs)
    slots, inverse = np.unique(pairs["slot"], return_inverse=True)
    cumulative = np.cumsum(np.bincount(inverse, weights=pairs["count"]))
    total = cumulative[-1]
    answers: list[float | None] = []
    for q in qs:
        rank = q * (total - 1)
        index = int(np.searchsorted(cumulative, rank, side="right"))
        answers.append(value_of_slot(int(slots[min(index, len(slots) - 1)])))
    return answers


def grouped_quantiles(
    blobs: Sequence[bytes], groups: Sequence[int], group_count: int, qs: Sequence[float]
) -> tuple[list[list[float | None]], list[float | None]]:
    """`quantiles` of many groups of sketches at once (a series' buckets; blob i belongs to
    group groups[i]), and of all of them together. Duplicate (group, slot) pairs are summed
    first with one sort, and the whole is computed from those sums, so a series of 1,000
    buckets costs a few numpy calls over its bins, not a few per bucket."""
    sizes = np.fromiter((len(blob) // _ENTRY.itemsize for blob in blobs), dtype=np.int64,
                        count=len(blobs))
    pairs = _decode(b"".join(bytes(blob) for blob in blobs))
    if not len(pairs):
        return [[None] * len(qs) for _ in range(group_count)], [None] * len(qs)
    # One int64 per pair orders by group, then slot (slots fit in 32 bits with an offset).
    keys = (np.repeat(np.asarray(groups, dtype=np.int64), sizes) << 32) + (
        pairs["slot"].astype(np.int64) + (1 << 31))
    unique, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse, weights=pairs["count"])
    group_of, slot_of = unique >> 32, (unique & 0xFFFFFFFF) - (1 << 31)
    answers: list[list[float | None]] = [[None] * len(qs) for _ in range(group_count)]
    cumulative = np.cumsum(counts)
    totals = np.bincount(group_of, weights=counts, minlength=group_count)
    starts = np.cumsum(totals) - totals
    present = np.flatnonzero(totals)
    for column, q in enumerate(qs):
        found = np.searchsorted(cumulative, starts[present] + q * (totals[present] - 1),
                                side="right")
        for group, index in zip(present.tolist(), found.tolist(), strict=True):
            answers[group][column] = value_of_slot(int(slot_of[index]))
    slots, inverse = np.unique(slot_of, return_inverse=True)
    overall = np.cumsum(np.bincount(inverse, weights=counts))
    whole = [
        value_of_slot(int(slots[np.searchsorted(overall, q * (overall[-1] - 1), side="right")]))
        for q in qs
    ]
    return answers, whole
