"""The tokenizer interface shared by HGIT and the baselines, plus the residual-quantisation core.

A tokenizer maps item embeddings (and, for HGIT, item attributes) to ``L`` integer codes per item.
Dedup suffixes are not part of a tokenizer (see :mod:`lgsid.tokenizer.dedup`). A fitted tokenizer
is fully described by NumPy arrays + a JSON header (kind, resolved config, codebook shapes), which
:func:`save_tokenizer` / :func:`load_tokenizer` write and read; inference is pure NumPy so the
MLflow pyfunc and the Spark UDF need no torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from lgsid.config import TokenizerConfig
from lgsid.errors import ModelError, ValidationError


CHUNK_BYTES = 32 << 20
"""Largest temporary the row-wise helpers below allocate at once (an (n, K) score block, an (n, D)
gather): item-scale arrays are processed in equal row chunks of at most this size, so a fit on a
large sample holds no (N, K_1) distance matrix or extra (N, D) copy."""


def row_chunks(n: int, row_bytes: int, budget: int | None = None) -> list[slice]:
    """``n`` rows as equal consecutive slices of about ``budget`` (default :data:`CHUNK_BYTES`) bytes or less each (``row_bytes`` per row); one slice when they fit."""
    budget = CHUNK_BYTES if budget is None else budget
    parts = max(1, math.ceil(n * max(row_bytes, 1) / budget))
    step = max(1, math.ceil(n / parts))
    return [slice(s, min(s + step, n)) for s in range(0, n, step)] or [slice(0, 0)]


def nearest_centre(x: np.ndarray, centres: np.ndarray, centres_sq: np.ndarray | None = None) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean) for every row; matmul-based.

    ``argmin_k ||x - e_k||² = argmin_k (||e_k||² - 2 x·e_k)`` (``||x||²`` is constant per row). The
    (N, K) scores are computed in equal row chunks of at most :data:`CHUNK_BYTES` (each row's scores
    and argmin are the same as in one matmul).

    Args:
        x: (N, D) rows. centres: (K, D). centres_sq: optional precomputed (K,) ``||e_k||²``.

    Returns:
        (N,) int64 codes.
    """
    if centres_sq is None:
        centres_sq = np.einsum("kd,kd->k", centres, centres)
    w = -2.0 * centres.T  # (D, K)
    chunks = row_chunks(x.shape[0], centres.shape[0] * np.result_type(x, w).itemsize)
    if len(chunks) == 1:
        scores = x @ w  # (N, K)
        scores += centres_sq
        return scores.argmin(axis=1).astype(np.int64)
    out = np.empty(x.shape[0], dtype=np.int64)
    for sl in chunks:
        scores = x[sl] @ w  # (n_chunk, K)
        scores += centres_sq
        out[sl] = scores.argmin(axis=1)
    return out


def subtract_rows(r: np.ndarray, table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``r -= table[codes]`` in place, gathering :data:`CHUNK_BYTES` of rows at a time (Eq. 12 without an (N, D) temporary). Returns ``r``."""
    for sl in row_chunks(len(r), r.shape[1] * r.itemsize if r.ndim == 2 else r.itemsize):
        r[sl] -= table[codes[sl]]
    return r


def residual_of(x: np.ndarray, table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``x - table[codes]`` as a new array, with one (N, D) allocation (the gather, then an in-place subtraction)."""
    r = table[codes]
    np.subtract(x, r, out=r)
    return r


def residual_encode(x: np.ndarray, codebooks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Residual quantisation (Eq. 10–12 applied level by level) with fixed codebooks.

    Args:
        x: (N, D) residuals entering the first of ``codebooks``.
        codebooks: L arrays (K_l, D).

    Returns:
        (codes (N, L) int64, final residual (N, D)).
    """
    r = np.array(x, dtype=codebooks[0].dtype if codebooks else np.float32, copy=True)
    codes = np.empty((r.shape[0], len(codebooks)), dtype=np.int64)
    for l, cb in enumerate(codebooks):
        c = nearest_centre(r, cb)
        codes[:, l] = c
        subtract_rows(r, cb, c)
    return codes, r



def fit_kmeans(km, x: np.ndarray):
    """``km.fit(x)`` (a scikit-learn ``KMeans`` / ``MiniBatchKMeans``) on one OpenMP thread, so a fit repeats bit for bit.

    scikit-learn's multi-threaded k-means adds its threads' partial centre sums in the order the threads
    finish, so two fits of the same rows and seed can differ in the last bits, and then in some codes.
    Only the k-means runs on one thread (OpenMP and BLAS); torch keeps its threads. With
    :func:`deterministic_torch` around the codebook training, two fits at 2 threads give the same codes.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return km.fit(x)


@contextlib.contextmanager
def deterministic_torch():
    """``torch.use_deterministic_algorithms(True)`` inside the block, the previous mode after it.

    Codebook training gathers rows of a codebook by their codes; the backward of that gather on CPU
    (``index_put_`` with ``accumulate=True``) adds the rows' gradients in thread order unless torch
    is in deterministic mode (torch's docs list it), so two fits at 2 threads drifted apart by ~1e-7 a
    step and then differed in some codes. ``warn_only``: an op without a deterministic version warns
    instead of failing the fit (CUDA matmuls without ``CUBLAS_WORKSPACE_CONFIG``).
    """
    import torch

    prev, prev_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)

class ResidualTables:
    """Precomputed tables that turn residual quantisation into one matmul plus table look-ups.

    With ``r⁽ˡ⁾ = x − b − Σ_{j<l} e⁽ʲ⁾_{c_j}`` (b: an optional per-row base such as μ⁽¹⁾), the argmin of
    Eq. 10 is ``argmin_k ‖e_k‖² − 2 (x·e_k − b·e_k − Σ_{j<l} e⁽ʲ⁾_{c_j}·e_k)``. ``x·e_k`` for every level
    comes from a single (N, D) × (D, ΣK) matmul; ``b·e_k`` and the cross-level products are small
    (K_j, K_l) tables. No (N, D) residual is materialised, so cost is one matmul + O(N·ΣK).
    Equal to :func:`residual_encode` up to float rounding (checked in the tests).

    Args:
        codebooks: L arrays (K_l, D).
        bases: optional (K0, D) table of per-row bases (HGIT's μ⁽¹⁾); rows pick one with ``base_codes``.
    """

    def __init__(self, codebooks: list[np.ndarray], bases: np.ndarray | None = None):
        self.codebooks = [np.asarray(c, dtype=np.float32) for c in codebooks]
        self.sizes = [c.shape[0] for c in self.codebooks]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.stacked_t = np.ascontiguousarray(np.concatenate(self.codebooks).T) if self.codebooks else None  # (D, ΣK)
        self.sq = [np.einsum("kd,kd->k", c, c).astype(np.float32) for c in self.codebooks]
        self.base_dot = [np.asarray(bases, dtype=np.float32) @ c.T for c in self.codebooks] if bases is not None else None  # (K0, K_l)
        self.cross = {(j, l): self.codebooks[j] @ self.codebooks[l].T for l in range(len(self.codebooks)) for j in range(l)}  # (K_j, K_l)

    def encode(self, x: np.ndarray, base_codes: np.ndarray | None = None) -> np.ndarray:
        """(N, D) rows (+ (N,) base codes) -> (N, L) int64 codes."""
        n = x.shape[0]
        codes = np.empty((n, len(self.codebooks)), dtype=np.int64)
        if not self.codebooks:
            return codes
        for sl in row_chunks(n, 4 * 4 * int(self.offsets[-1])):  # the (n, ΣK) dots and (n, K_l) temporaries of a chunk
            self._encode_rows(x[sl], None if base_codes is None else base_codes[sl], codes[sl])
        return codes

    def _encode_rows(self, x: np.ndarray, base_codes: np.ndarray | None, codes: np.ndarray) -> None:
        """:meth:`encode` of one row chunk, into ``codes`` ((n, L) view)."""
        dots = x @ self.stacked_t  # (n, ΣK): x·e_k for every level at once
        for l in range(len(self.codebooks)):
            s = dots[:, self.offsets[l]:self.offsets[l + 1]]  # (n, K_l)
            if self.base_dot is not None and base_codes is not None:
                s = s - self.base_dot[l][base_codes]
            for j in range(l):
                s = s - self.cross[(j, l)][codes[:, j]]
            codes[:, l] = (self.sq[l] - 2.0 * s).argmin(axis=1)


def check_embeddings(embeddings: Any, dim: int | None = None, ids: Any = None) -> np.ndarray:
    """Boundary check of an embedding matrix.

    Args:
        embeddings: (N, D) array-like.
        dim: Expected D (the dimension the tokenizer was fitted on), if known.
        ids: Item ids named in errors.

    Returns:
        (N, D) float32 array.

    Raises:
        ValidationError: not 2-D, wrong dimension, or non-finite values (names the first items).
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValidationError(f"embeddings must be a 2-D (N, D) array, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValidationError(f"embedding dimension {x.shape[1]} does not match the tokenizer's fitted dimension {dim} (column 'embedding')")
    bad = np.empty(len(x), dtype=bool)
    for sl in row_chunks(len(x), x.shape[1]):  # no (N, D) bool temporary
        bad[sl] = ~np.isfinite(x[sl]).all(axis=1)
    if bad.any():
        names = np.asarray(ids if ids is not None else np.arange(len(x)), dtype=object)[bad][:5]
        raise ValidationError(f"column 'embedding' holds NaN/inf for item(s) {list(names)}")
    return x


def stack_embeddings(col: pd.Series, ids: pd.Series | None = None) -> np.ndarray:
    """A column of equal-length float arrays -> (N, D) float32, naming the first bad row on error."""
    vals = col.to_numpy()
    if len(vals) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    nulls = np.fromiter((v is None or (isinstance(v, float) and np.isnan(v)) for v in vals), bool, len(vals))
    if nulls.any():
        names = (ids.to_numpy() if ids is not None else np.arange(len(vals)))[nulls][:5]
        raise ValidationError(f"column 'embedding' is null for item(s) {list(names)}")
    lens = np.fromiter((len(v) for v in vals), np.int64, len(vals))
    if (lens != lens[0]).any():
        bad = lens != np.bincount(lens).argmax()
        names = (ids.to_numpy() if ids is not None else np.arange(len(vals)))[bad][:5]
        raise ValidationError(f"column 'embedding' has inconsistent dimensions {sorted(set(lens.tolist()))} (item(s) {list(names)})")
    return np.concatenate(vals).astype(np.float32, copy=False).reshape(len(vals), int(lens[0]))


TOKENIZERS: dict[str, type["SIDTokenizer"]] = {}
"""Tokenizer classes by ``kind`` (``hgit``, ``rqvae``, ``rqkmeans``): a subclass with a ``kind`` registers itself."""


class SIDTokenizer(ABC):
    """Maps (embeddings, features) -> (N, L) codes. A subclass with a ``kind`` registers in :data:`TOKENIZERS`.

    Args:
        cfg: The tokenizer config section; ``cfg.codebook_sizes`` fixes L and each K_l.
    """

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            TOKENIZERS[cls.kind] = cls

    def __init__(self, cfg: TokenizerConfig):
        self.cfg = cfg
        self.codebook_sizes = [int(k) for k in cfg.codebook_sizes]
        self.dim: int | None = None
        self.n_catalogue: int | None = None  # N the codebooks are sized for; None: the rows fitted (set before fit)
        self.fitted = False
        self.history: dict[str, list[float]] = {}

    @property
    def n_levels(self) -> int:
        """L, the number of code levels (without the dedup suffix)."""
        return len(self.codebook_sizes)

    @property
    def local_last_level(self) -> bool:
        """Whether the deepest level is one codebook per level-1 code (only HGIT has such a level)."""
        return False

    @abstractmethod
    def fit(self, embeddings: np.ndarray, features: pd.DataFrame | None = None, progress: bool = False) -> "SIDTokenizer":
        """Train on (N, D) embeddings (+ N feature rows for HGIT; a tqdm bar when ``progress``). Returns self."""

    @abstractmethod
    def encode(self, embeddings: np.ndarray, features: pd.DataFrame | None = None) -> np.ndarray:
        """(N, D) embeddings (+ features) -> (N, L) int64 codes, without dedup suffix."""

    @abstractmethod
    def reconstruct(self, codes: np.ndarray, embeddings: np.ndarray | None = None) -> np.ndarray:
        """(N, L) codes -> (N, D') quantised vectors (the space the codes live in)."""

    @abstractmethod
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, JSON-able metadata) that fully describe the fitted tokenizer."""

    @abstractmethod
    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Inverse of :meth:`state`."""

    @abstractmethod
    def codebook_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the per-level codebooks; level l must have K_l = codebook_sizes[l] rows."""

    def _fit_input(self, embeddings: Any, features: pd.DataFrame | None) -> np.ndarray:
        """Checked (N, D) training embeddings; sets ``self.dim`` and the codebook sizes.

        The sizes are :func:`scaled_codebook_sizes` for ``self.n_catalogue`` items when it is set
        (a fit on a sample of the catalogue: the codebooks must tell the whole catalogue apart),
        else for the rows fitted (the same sizes when the fit sees every item).

        Raises:
            ValidationError: bad embeddings (naming the item), ``n_catalogue`` below the rows
                fitted, or fewer rows than the largest codebook.
        """
        x = check_embeddings(embeddings, ids=features.get("item_id") if features is not None else None)
        n = len(x) if self.n_catalogue is None else int(self.n_catalogue)
        if n < len(x):
            raise ValidationError(f"n_catalogue={n} is below the {len(x)} items fitted; the catalogue holds the sample")
        self.codebook_sizes = scaled_codebook_sizes(self.codebook_sizes, n, self.cfg.items_per_prefix, local_last=self.local_last_level, n_fit=len(x))
        self.cfg = dataclasses.replace(self.cfg, codebook_sizes=list(self.codebook_sizes))  # what save_tokenizer records
        if len(x) < max(self.codebook_sizes):
            if n > len(x):
                raise ValidationError(f"tokenizer.fit_sample: {len(x)} sampled items cannot fill the codebooks of sizes {self.codebook_sizes} "
                                      f"that {n} items need; raise tokenizer.fit_sample")
            raise ValidationError(f"{len(x)} items cannot fill codebooks of sizes {self.codebook_sizes}; lower tokenizer.codebook_sizes")
        self.dim = x.shape[1]
        return x

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ModelError(f"{self.kind} tokenizer is not fitted; call fit() or load_tokenizer() first")


class CodebookStackMixin:
    """For tokenizers whose state is one stack of residual codebooks ``self.codebooks`` (L × (K_l, d))."""

    codebooks: list[np.ndarray]

    def reconstruct(self, codes: np.ndarray, embeddings: np.ndarray | None = None) -> np.ndarray:
        """Σ_l e_{c_l}: the quantised vectors (N, d) in the space the codebooks live in."""
        self._require_fitted()  # type: ignore[attr-defined]
        return sum(cb[codes[:, l]] for l, cb in enumerate(self.codebooks))

    def codebook_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(c.shape) for c in self.codebooks]


def scaled_codebook_sizes(sizes: list[int], n: int, items_per_prefix: float, local_last: bool = False, n_fit: int | None = None) -> list[int]:
    """Codebook sizes for ``n`` items: grow the prefix levels until their codes can tell the items apart.

    With ``L >= 3`` levels the prefix levels are every level but the last (the last one
    separates the items that share a prefix): while ``Π_{l < L} K_l < n / items_per_prefix``, the
    smallest prefix level doubles (the lowest level on ties). With two levels, level 1 doubles
    while ``K_1 · K_2 < n / items_per_prefix``. One level, or ``items_per_prefix <= 0``: unchanged.

    With ``local_last`` (HGIT's local deepest level: one codebook of K_L codes per level-1 code,
    which can give at most K_L items of a level-1 cluster their own code) level 1 doubles first
    for as long as its mean cluster, ``n / K_1``, holds more than K_L items. Fitted on a sample of
    ``n_fit < n`` rows, level 1 stops doubling once a doubled level-1 cluster would hold fewer than
    K_L / 4 sampled rows (``4 n_fit / (2 K_1) < K_L``): each local codebook is fitted on at least a
    quarter of its K_L centres' worth of real members (:func:`lgsid.tokenizer.hgit.fill_shapes`
    places the rest), and the model (``K_1 · K_L <= 4 n_fit`` local centres) stays the size of the
    sample, not of the catalogue. The shared middle levels then grow instead until the prefixes cover ``n``.

    Example: ``[64, 64, 64]`` with ``items_per_prefix = 1`` stays ``[64, 64, 64]`` up to 4,096
    items; 10,000 items give ``[128, 128, 64]`` (16,384 prefixes), 100,000 give ``[512, 256, 64]``;
    with ``local_last`` they give ``[256, 64, 64]`` and ``[2048, 64, 64]`` (49 items per level-1
    code at 100k, as the 3,000-item demo's 47); ``[64, 64]`` at 10,000 items gives ``[256, 64]``.

    Args:
        sizes: configured K_l (the minimum), level 1 first.
        n: number of training items.
        items_per_prefix: target mean items per prefix.
        local_last: the deepest level is local to each level-1 code (needs >= 3 levels).

    Returns:
        K_l per level, each >= the configured one.
    """
    out = [int(k) for k in sizes]
    if len(out) < 2 or items_per_prefix <= 0:
        return out
    need = n / items_per_prefix
    n_fit = n if n_fit is None else int(n_fit)
    counted = len(out) - 1 if len(out) >= 3 else len(out)
    local_last = local_last and len(out) >= 3
    while math.prod(out[:counted]) < need:
        capped = local_last and n_fit < n and 4 * n_fit / (2 * out[0]) < out[-1]  # a sample too small for more local codebooks
        if local_last and n / out[0] > out[-1] and not capped:
            j = 0  # level-1 clusters larger than the local level can separate
        else:
            j = min(range(1 if capped else 0, len(out) - 1), key=lambda l: (out[l], l))
        out[j] *= 2
    return out


def build_tokenizer(cfg: TokenizerConfig, kind: str | None = None) -> SIDTokenizer:
    """An unfitted tokenizer of ``kind`` (default ``cfg.kind``) configured by ``cfg``.

    Raises:
        ValueError: unknown kind; the message lists the valid ones.
    """
    kind = kind or cfg.kind
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; valid kinds: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[kind](cfg)


def save_tokenizer(tok: SIDTokenizer, path: str) -> str:
    """Write ``tokenizer.npz`` + ``tokenizer.json`` (kind, resolved config, shapes) into ``path``."""
    tok._require_fitted()
    os.makedirs(path, exist_ok=True)
    arrays, meta = tok.state()
    np.savez(os.path.join(path, "tokenizer.npz"), **arrays)
    header = {
        "kind": tok.kind,
        "config": dataclasses.asdict(tok.cfg),
        "dim": tok.dim,
        "codebook_shapes": [list(s) for s in tok.codebook_shapes()],
        "meta": meta,
    }
    with open(os.path.join(path, "tokenizer.json"), "w") as f:
        json.dump(header, f, indent=1)
    return path


def load_tokenizer(path: str) -> SIDTokenizer:
    """Read a tokenizer written by :func:`save_tokenizer`.

    Raises:
        ModelError: files missing, unknown kind, or a codebook shape disagrees with the saved
            config's ``codebook_sizes`` (the message names the level and both shapes).
    """
    jpath, npath = os.path.join(path, "tokenizer.json"), os.path.join(path, "tokenizer.npz")
    if not (os.path.isfile(jpath) and os.path.isfile(npath)):
        raise ModelError(f"no tokenizer at {path}: expected tokenizer.json and tokenizer.npz")
    with open(jpath) as f:
        header = json.load(f)
    kind = header.get("kind")
    if kind not in TOKENIZERS:
        raise ModelError(f"{jpath}: unknown tokenizer kind {kind!r}; valid kinds: {', '.join(TOKENIZERS)}")
    known = {f.name for f in dataclasses.fields(TokenizerConfig)}
    cfg = TokenizerConfig(**{k: v for k, v in header["config"].items() if k in known})
    tok = TOKENIZERS[kind](cfg)
    with np.load(npath) as z:
        arrays = {k: z[k] for k in z.files}
    tok.dim = header.get("dim")
    tok.load_state(arrays, header.get("meta", {}))
    tok.fitted = True
    shapes = tok.codebook_shapes()
    if len(shapes) != len(cfg.codebook_sizes):
        raise ModelError(f"{path}: tokenizer has {len(shapes)} levels but its config tokenizer.codebook_sizes={cfg.codebook_sizes} has {len(cfg.codebook_sizes)}")
    for l, (shape, k) in enumerate(zip(shapes, cfg.codebook_sizes)):
        if shape[0] != int(k):
            raise ModelError(
                f"{path}: codebook of level {l + 1} has shape {tuple(shape)} but tokenizer.codebook_sizes[{l}]={k}; "
                "the artifact and its config disagree, refit the tokenizer"
            )
    return tok
