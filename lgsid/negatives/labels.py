"""Soft relevance labels of a reward list (Eq. 3, arXiv 2511.14221)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lgsid.errors import ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column


def soft_labels(ranks, k: int) -> np.ndarray:
    """Soft relevance labels of a reward list from distance ranks.

    ``p(rank) = (K - rank + 1) / (K + 1)``  (Eq. 3, arXiv 2511.14221).

    The paper gives the un-normalised score ``K - rank + 1`` for the candidate at position ``rank``
    of the near->far list; we include the true location as rank 0 and divide by ``K + 1`` so the
    true location gets 1.0 and the farthest candidate ``1 / (K + 1)``; the list-wise loss only
    needs the ordering and relative sizes.

    Args:
        ranks: (L,) ints, 0 for the true location, 1..K for candidates near -> far.
        k: K, the number of candidates in a full list.

    Returns:
        (L,) float32 labels in (0, 1].

    Raises:
        ValidationError: a rank outside [0, K].
    """
    r = np.asarray(ranks, dtype=np.float64)
    if r.size and (r.min() < 0 or r.max() > k):
        raise ValidationError(f"soft labels: ranks must be in [0, K={k}], got [{r.min():g}, {r.max():g}]")
    return ((k - r + 1.0) / (k + 1.0)).astype(np.float32)


def soft_labels_col(ranks: "Column", k: int) -> "Column":
    """:func:`soft_labels` over an ``ARRAY<INT>`` Spark column (``ARRAY<FLOAT>``)."""
    from pyspark.sql import functions as F

    return F.transform(ranks, lambda r: ((F.lit(k) - r + 1) / F.lit(float(k + 1))).cast("float"))
