"""RQ-KMeans (Res-KMeans) baseline: k-means on the embeddings, then k-means on each level's residual.

No learning beyond k-means and no item attributes: the codes depend on the embedding only. Same
codebook sizes as HGIT (``tokenizer.codebook_sizes``), same interface.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lgsid.tokenizer.base import CodebookStackMixin, ResidualTables, SIDTokenizer, check_embeddings, fit_kmeans, nearest_centre

_MAX_FIT_ROWS = 50000


class RQKMeansTokenizer(CodebookStackMixin, SIDTokenizer):
    """Residual k-means: level l's codebook = k-means centres of the residuals after levels < l."""

    kind = "rqkmeans"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.codebooks: list[np.ndarray] = []

    def fit(self, embeddings: np.ndarray, features: pd.DataFrame | None = None, progress: bool = False) -> "RQKMeansTokenizer":
        from sklearn.cluster import KMeans, MiniBatchKMeans

        x = self._fit_input(embeddings, features)
        rng = np.random.default_rng(self.cfg.seed)
        r = x.copy()
        self.codebooks = []
        for l, k in enumerate(self.codebook_sizes):
            if len(r) > _MAX_FIT_ROWS:
                km = MiniBatchKMeans(n_clusters=k, random_state=self.cfg.seed + l, batch_size=4096, n_init=3)
                fit_kmeans(km, r[rng.choice(len(r), _MAX_FIT_ROWS, replace=False)])
            else:
                km = fit_kmeans(KMeans(n_clusters=k, n_init=1, max_iter=100, random_state=self.cfg.seed + l), r)
            cb = km.cluster_centers_.astype(np.float32)
            r -= cb[nearest_centre(r, cb)]
            self.codebooks.append(cb)
        self._tables = None
        self.fitted = True
        return self

    def encode(self, embeddings: np.ndarray, features: pd.DataFrame | None = None) -> np.ndarray:
        self._require_fitted()
        ids = features.get("item_id") if features is not None else None
        if getattr(self, "_tables", None) is None:
            self._tables = ResidualTables(self.codebooks)
        return self._tables.encode(check_embeddings(embeddings, self.dim, ids=ids))  # == residual_encode, one matmul

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {f"codebook_{l + 1}": c for l, c in enumerate(self.codebooks)}, {}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.codebooks = [arrays[f"codebook_{l}"] for l in range(1, 1 + len(arrays))]
        self._tables = None
