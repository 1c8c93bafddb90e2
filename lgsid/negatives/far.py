"""The far set of Eq. 1: random towns in other counties, drawn by a counter-based hash."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from lgsid.negatives.search import TownIndex

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 (a counter-based hash: same input, same draw, on any worker)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def far_draws(index: TownIndex, a_hash: np.ndarray, a_county: np.ndarray, exclude: np.ndarray, n_want: np.ndarray,
              seed: int, draws_per: int) -> np.ndarray:
    """Far negatives: random towns in other counties, drawn by a counter-based hash (no cross join).

    Draw ``j`` of an anchor is representative ``mix64(mix64(seed ^ anchor_hash) + j·φ) mod R``
    (``j = 0, 1, ...``; R = number of towns; φ the golden-ratio constant). The far set is the first
    ``n_want`` draws that are in another county (``state|county`` differs), not in ``exclude`` (the
    near set) and not drawn before. The draw depends only on (seed, anchor, j), so it does not depend
    on Spark partitioning. Draws run in blocks of ``draws_per · max(n_want)``; an anchor whose
    eligible towns are too few stops after ``max(4 blocks, 32 R)`` draws with what it has.

    Args:
        index: The :class:`TownIndex`.
        a_hash: (N,) int64 anchor hashes (``xxhash64(item_id)``).
        a_county: (N,) county code of each anchor (``index.lookup(county_keys, "county_key")``, -1 when none).
        exclude: (N, E) positions never to draw (the near set), -1 padded.
        n_want: (N,) far negatives wanted per anchor.
        seed: ``negatives.seed``.
        draws_per: ``negatives.far_draws`` (oversampling per wanted negative).

    Returns:
        (N, max(n_want)) positions, -1 past what was drawn.
    """
    n, R = len(a_hash), len(index)
    width = int(n_want.max()) if n else 0
    out = np.full((n, width), -1, dtype=np.int64)
    if width == 0 or R == 0:
        return out
    got = np.zeros(n, dtype=np.int64)
    block = draws_per * width
    limit = max(4 * block, 32 * R)
    base = _mix64(np.uint64(seed) ^ a_hash.astype(np.uint64))
    rows = np.flatnonzero(n_want > 0)
    j0 = 0
    while rows.size and j0 < limit:
        j = np.arange(j0, j0 + block, dtype=np.uint64)
        with np.errstate(over="ignore"):
            cand = (_mix64(base[rows][:, None] + j[None, :] * _GOLDEN) % np.uint64(R)).astype(np.int64)  # (r, block)
        valid = index.county[cand] != a_county[rows][:, None]
        taken = np.concatenate([exclude[rows], out[rows]], axis=1)
        valid &= ~(cand[:, :, None] == taken[:, None, :]).any(axis=2)
        o = np.argsort(cand, axis=1, kind="stable")  # first occurrence within the block
        sc = np.take_along_axis(cand, o, axis=1)
        dup = np.zeros_like(valid)
        np.put_along_axis(dup, o, np.concatenate([np.zeros((len(rows), 1), bool), sc[:, 1:] == sc[:, :-1]], axis=1), axis=1)
        valid &= ~dup
        csum = np.cumsum(valid, axis=1)
        take = valid & (csum <= (n_want[rows] - got[rows])[:, None])
        rr, cc = np.nonzero(take)
        out[rows[rr], got[rows][rr] + csum[rr, cc] - 1] = cand[rr, cc]
        got[rows] += take.sum(axis=1)
        rows = rows[got[rows] < n_want[rows]]
        j0 += block
    return out
