"""Exact order statistics of many rows of posterior draws, without sorting every row.

Used by :mod:`rechallenge.predict` for medians, equal-tailed intervals and the bands of
PFS2 curves: :func:`order_statistics` selects a few ranks per row (a radix sort of
monotone 16-bit keys, then only the draws sharing a wanted key), and :func:`median_eti`
lets NumPy's own ``median``/``quantile`` run on stand-in rows holding exactly those order
statistics, so the numbers are NumPy's by construction.
"""

from __future__ import annotations

import threading

import numpy as np

BLOCK_ROWS = 16  # rows per block of order_statistics: its work arrays stay in cache
_OS_GROUP = 32  # groups of draws sharing a key up to this size are sorted together


class _OrderWork:
    """Work arrays of :func:`order_statistics_block` for up to ``rows`` rows of ``n`` draws,
    kept per thread (:func:`order_work`): fresh memory for every block or call (page
    faults) costs more than the work itself."""

    def __init__(self, rows: int, n: int):
        self.rows, self.n = rows, n
        self.x = np.empty((rows, n))
        self.values = np.empty((rows, n))
        self.key = np.empty((rows, n), dtype=np.uint16)
        self.sorted_key = np.empty(rows * n, dtype=np.uint16)
        self.flat = np.empty(rows * n, dtype=np.int64)
        self.row_key = np.repeat(np.arange(rows, dtype=np.int64) << 16, n)  # rows one after another


_WORK = threading.local()


def order_work(n: int) -> _OrderWork:
    """This thread's work arrays for :data:`BLOCK_ROWS` rows of ``n`` draws."""
    work = getattr(_WORK, "work", None)
    if work is None or work.n != n:
        work = _WORK.work = _OrderWork(BLOCK_ROWS, n)
    return work


def order_statistics(x: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """``np.sort(x, axis=-1)[:, ranks]`` of a (rows, draws) float64 array, exactly, for a
    few ranks — less than half the time of sorting every row of 4,000 draws.

    Each row is mapped to 16-bit keys by a non-decreasing function, so the draws with a
    smaller key are all smaller: the key of the r-th smallest draw is the r-th smallest
    key (a radix sort of 16-bit keys), and the draw itself is found among the few draws
    that share its key. The keys are spread over the row's range of values, or of their
    bit patterns when the row is non-negative and skewed (hi > 16 lo: survival far out,
    where most draws are small). A row that is not finite or is constant is sorted.
    """
    ranks = np.asarray(ranks, dtype=np.intp)
    out = np.empty((x.shape[0], ranks.size))
    work = order_work(x.shape[1])
    for start in range(0, x.shape[0], BLOCK_ROWS):
        block = work.x[:min(BLOCK_ROWS, x.shape[0] - start)]
        np.copyto(block, x[start:start + BLOCK_ROWS])
        out[start:start + BLOCK_ROWS] = order_statistics_block(block, ranks, work)
    return out


def order_statistics_block(x: np.ndarray, ranks: np.ndarray, work: _OrderWork) -> np.ndarray:
    n_rows, n = x.shape
    out = np.empty((n_rows, ranks.size))
    with np.errstate(invalid="ignore"):
        lo, hi = x.min(axis=-1, keepdims=True), x.max(axis=-1, keepdims=True)
    keyed = (np.isfinite(lo) & np.isfinite(hi) & (hi > lo))[:, 0]
    if not keyed.all():  # not finite, or constant
        out[~keyed] = np.sort(x[~keyed], axis=-1)[:, ranks]
        if not keyed.any():
            return out
        x, lo, hi = x[keyed], lo[keyed], hi[keyed]
        n_rows = x.shape[0]
    # non-negative doubles (no -0.0) are ordered as their bit patterns: a log-like scale
    bits = (lo >= 0) & (hi / 16 > lo)
    zero = np.flatnonzero(bits[:, 0] & (lo[:, 0] == 0))  # may hold -0.0, whose bits are not in order
    if zero.size:
        bits[zero, 0] = ~np.signbit(x[zero]).any(axis=-1)
    lo = np.where(bits, lo.view(np.int64).astype(np.float64), lo)  # the bits of the least is the least bits
    hi = np.where(bits, hi.view(np.int64).astype(np.float64), hi)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        span = hi - lo
        scale = 65535.0 / span
    if not (np.isfinite(span) & (span > 0) & np.isfinite(scale) & (scale > 0)).all():
        out[keyed] = np.sort(x, axis=-1)[:, ranks]  # a span beyond the float range
        return out
    values = work.values[:n_rows]  # (x or its bits) - lo, in [0, span]: each step is non-decreasing in x
    if not bits.all():
        np.subtract(x, lo, out=values)
    if bits.any():
        np.subtract(x.view(np.int64), lo, out=values, where=bits)
    values *= scale
    np.minimum(values, 65535.0, out=values)
    key = work.key[:n_rows]
    np.copyto(key, values, casting="unsafe")
    order = np.argsort(key, axis=-1, kind="stable")  # a radix sort of 16-bit keys
    start = np.arange(0, n_rows * n, n)[:, None]
    order += start  # flat positions
    order = order.ravel()
    np.take(key.ravel(), order, out=work.sorted_key[:order.size])
    flat = np.add(work.sorted_key[:order.size], work.row_key[:order.size], out=work.flat[:order.size])
    # (one sorted array: rows one after another)
    want = flat[start + ranks]
    first = np.searchsorted(flat, want, side="left")  # the group of draws with that key
    width = np.searchsorted(flat, want, side="right") - first
    k = start + ranks - first  # rank within the group
    x = x.ravel()
    w = int(min(width.max(), _OS_GROUP))
    span = np.arange(w)
    group = np.where(span < width[..., None], x[order[np.minimum(first[..., None] + span, x.size - 1)]], np.inf)
    group.sort(axis=-1)
    found = np.take_along_axis(group, np.minimum(k, w - 1)[..., None], axis=-1)[..., 0]
    for i, j in zip(*np.nonzero(width > w)):  # large groups (ties, crowded values): select
        members = x[order[first[i, j]:first[i, j] + width[i, j]]]
        least = members.min()
        found[i, j] = least if least == members.max() else np.partition(members, k[i, j])[k[i, j]]
    out[keyed] = found
    return out


def median_eti(values: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.median`` and the equal-tailed interval ``np.quantile(…, [(1 - ci) / 2, (1 + ci) / 2])``
    of each row of ``values`` (k × draws), from one selection of a few order statistics
    instead of partitioning every row once per function.

    NumPy's functions still compute the numbers, on stand-in rows: sorted, and with the
    rows' own order statistics at every position they read — the medians' and quantiles'
    neighbouring ranks, the first and the last (NaN check) — each repeated up to the next
    of them (:func:`order_statistics`). Same numbers, whatever NumPy's formulas.
    """
    q = [(1 - ci) / 2, (1 + ci) / 2]
    k, n = values.shape
    if n < 64:
        return (np.median(values, axis=-1), *np.quantile(values, q, axis=-1))  # type: ignore[return-value]
    around = [n // 2 + d for d in (-2, -1, 0, 1)] + [int(np.floor(p * (n - 1))) + d for p in q for d in (-1, 0, 1, 2)]
    ranks = np.unique(np.clip([0, n - 1, *around], 0, n - 1))
    lengths = np.diff(np.append(ranks, n))
    est, lo, hi = np.empty(k), np.empty(k), np.empty(k)
    for start in range(0, k, BLOCK_ROWS):
        rows = slice(start, start + BLOCK_ROWS)
        stand_in = np.repeat(order_statistics(values[rows], ranks), lengths, axis=-1)
        est[rows] = np.median(stand_in, axis=-1)
        lo[rows], hi[rows] = np.quantile(stand_in, q, axis=-1)
    return est, lo, hi
