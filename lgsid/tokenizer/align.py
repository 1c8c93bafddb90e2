"""Stable codes across refits: renumber a refit's codebooks so they match the champion's.

A refit (new seed, new data, new embeddings) learns codebooks whose *indices* are arbitrary: code 7
of the refit may be the champion's code 31. Ranking models that learned an embedding per ``sid_l1``
(or ``sid_l1, sid_l2``) would then read every item's code as another. :func:`match_codes` finds the
permutation of the refit's code indices that puts each refit centre at the index of the champion
centre nearest to it (``scipy.optimize.linear_sum_assignment`` on squared centre distances, i.e.
the one-to-one matching with the smallest total distance), and :func:`align_to_reference` applies
it level by level to an HGIT tokenizer. Renumbering changes no code's centre, so the fit's
quantisation error and health metrics are unchanged; only the labels move.

Levels:

* level 1: the MiniBatchKMeans centres in clustering-feature space (``feature_centres``); the
  level-1 embedding centres ``mu1``, the paths and sizes follow the same permutation. With
  ``tokenizer.freeze_level1_from_champion`` there is nothing to match: the fit reuses the
  champion's feature centres (its level-1 *anchors*), so an item whose attributes did not change
  keeps its level-1 code by construction.
* shared residual levels ``2..``: the (K_l, D) codebooks.
* the local deepest level (``(K_L, K_1, D)``): matched per level-1 code, after level 1 is aligned.
"""

from __future__ import annotations

import numpy as np

from lgsid.errors import ValidationError


def match_codes(new: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Index each refit centre should take so that it sits where the nearest reference centre is.

    Solves ``min_π Σ_i ‖new_i − ref_π(i)‖²`` over one-to-one maps π (the Hungarian algorithm,
    :func:`scipy.optimize.linear_sum_assignment`). With as many centres on both sides the result is
    a permutation; with more refit centres than reference ones the unmatched refit centres take the
    unused indices ``K_ref, K_ref + 1, ...`` in their own order; with fewer, each refit centre still
    gets its matched reference index (a permutation requires equal sizes, so that case is refused).

    Example: ``new = ref[[2, 0, 1]]`` gives ``[2, 0, 1]``: refit centre 0 is reference centre 2.

    Args:
        new: (K, D) refit centres. ref: (K_ref, D) reference (champion) centres, K_ref <= K.

    Returns:
        (K,) int64 permutation of ``0..K-1``: ``perm[i]`` is the new index of refit code ``i``.

    Raises:
        ValidationError: the dimensions differ, or the reference has more centres than the refit.
    """
    from scipy.optimize import linear_sum_assignment

    new, ref = np.asarray(new, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if new.ndim != 2 or ref.ndim != 2 or new.shape[1] != ref.shape[1]:
        raise ValidationError(f"cannot match codebooks of shapes {new.shape} and {ref.shape}: need (K, D) with the same D")
    k, k_ref = len(new), len(ref)
    if k_ref > k:
        raise ValidationError(f"cannot align a refit codebook of {k} codes to a reference of {k_ref}: a refit may only grow a level")
    cost = (new * new).sum(1)[:, None] - 2.0 * new @ ref.T + (ref * ref).sum(1)[None, :]  # (K, K_ref)
    rows, cols = linear_sum_assignment(cost)
    perm = np.full(k, -1, dtype=np.int64)
    perm[rows] = cols
    perm[perm < 0] = np.arange(k_ref, k)  # unmatched refit codes, in index order
    return perm


def permute_rows(a: np.ndarray, perm: np.ndarray, axis: int = 0) -> np.ndarray:
    """Move entry ``i`` of ``a`` along ``axis`` to position ``perm[i]`` (the relabelling of :func:`match_codes`).

    Args:
        a: array with ``len(perm)`` entries along ``axis``. perm: (K,) permutation.

    Returns:
        Array of the same shape with ``out[perm[i]] == a[i]`` along ``axis``.
    """
    inv = np.argsort(perm)  # inv[j] = the old index that moves to j
    return np.take(np.asarray(a), inv, axis=axis)


def align_to_reference(tok, ref) -> dict[str, float]:
    """Renumber the codes of a fitted HGIT tokenizer ``tok`` to match ``ref`` (the champion), in place.

    Level 1 is matched on the clustering-feature centres unless both already share them (frozen
    anchors); shared residual levels on their codebooks; the local deepest level per level-1 code.
    A level whose shape differs from the reference's in anything but a larger K is left as fitted
    and reported as not aligned.

    Args:
        tok: fitted :class:`lgsid.tokenizer.hgit.HGITTokenizer` (modified in place).
        ref: fitted HGIT tokenizer of the champion.

    Returns:
        ``{"aligned_l<l>": 1.0 or 0.0, "moved_l<l>": share of the level's codes whose index changed}``.
    """
    out: dict[str, float] = {}
    if getattr(tok, "kind", None) != "hgit" or getattr(ref, "kind", None) != "hgit":
        raise ValidationError(f"code alignment needs two HGIT tokenizers, got {getattr(tok, 'kind', None)!r} and {getattr(ref, 'kind', None)!r}")

    def matchable(a, b) -> bool:
        return a is not None and b is not None and a.ndim == b.ndim and a.shape[1:] == b.shape[1:] and len(b) <= len(a)

    def record(level: int, perm: np.ndarray | None) -> None:
        out[f"aligned_l{level}"] = float(perm is not None)
        out[f"moved_l{level}"] = float((perm != np.arange(len(perm))).mean()) if perm is not None else 0.0

    fc, rfc = tok.feature_centres, ref.feature_centres
    if matchable(fc, rfc):
        perm = match_codes(fc, rfc)
        tok.feature_centres = permute_rows(fc, perm)
        tok.mu1 = permute_rows(tok.mu1, perm)
        tok.l1_paths = [str(p) for p in permute_rows(np.asarray(tok.l1_paths, dtype=object), perm)]
        tok.l1_sizes = [int(s) for s in permute_rows(np.asarray(tok.l1_sizes), perm)]
        if getattr(tok, "local", None) is not None:
            tok.local = permute_rows(tok.local, perm, axis=1)
        record(1, perm)
    else:
        record(1, None)
    for l, (cb, rcb) in enumerate(zip(tok.codebooks, ref.codebooks)):
        perm = match_codes(cb, rcb) if matchable(cb, rcb) else None
        if perm is not None:
            tok.codebooks[l] = permute_rows(cb, perm)
        record(l + 2, perm)
    loc, rloc = getattr(tok, "local", None), getattr(ref, "local", None)
    if loc is not None:
        level = len(tok.codebooks) + 2
        if rloc is not None and loc.shape == rloc.shape:
            new = loc.copy()
            moved = 0.0
            for c in range(loc.shape[1]):
                perm = match_codes(loc[:, c], rloc[:, c])
                new[:, c] = permute_rows(loc[:, c], perm)
                moved += float((perm != np.arange(len(perm))).mean())
            tok.local = new
            out[f"aligned_l{level}"], out[f"moved_l{level}"] = 1.0, moved / loc.shape[1]
        else:
            out[f"aligned_l{level}"], out[f"moved_l{level}"] = 0.0, 0.0
    tok._tables = None  # the fast-assignment tables depend on the codebooks' order
    return out


def use_level1_anchors(tok, anchors: np.ndarray, feature_dim: int) -> int:
    """Make ``anchors`` (the champion's level-1 feature centres) the level-1 centres of ``tok`` before its fit.

    Called by :meth:`lgsid.tokenizer.hgit.HGITTokenizer.fit` when ``tok.level1_anchors`` is set
    (``tokenizer.freeze_level1_from_champion``). K_1 becomes the champion's, whatever
    ``tokenizer.items_per_prefix`` would have grown it to, so level-1 codes keep their meaning.

    Args:
        tok: the HGIT tokenizer being fitted (its ``feature_centres``, ``codebook_sizes`` and ``cfg`` are set).
        anchors: (K_1, F) champion centres in clustering-feature space. feature_dim: F of this fit's features.

    Returns:
        K_1.

    Raises:
        ValidationError: the anchors' feature dimension is not this fit's (the clustering features changed).
    """
    import dataclasses

    anchors = np.asarray(anchors, dtype=np.float64)
    if anchors.ndim != 2 or anchors.shape[1] != feature_dim:
        raise ValidationError(
            f"tokenizer.freeze_level1_from_champion: the champion's level-1 anchors have shape {anchors.shape} but this fit's "
            f"clustering features have dimension {feature_dim} (the level-1 features changed); refit with "
            "--set tokenizer.freeze_level1_from_champion=false")
    tok.feature_centres = anchors.copy()
    tok.codebook_sizes[0] = len(anchors)
    tok.cfg = dataclasses.replace(tok.cfg, codebook_sizes=list(tok.codebook_sizes))
    return len(anchors)


def warm_codebook(warm: list[np.ndarray], level: int, k: int, dim: int) -> np.ndarray | None:
    """The champion's codebook of shared learnable level ``level + 2`` as the initial one, when its shape is (k, dim).

    Args:
        warm: the champion's shared codebooks (``tokenizer.warm_start_from_champion``), or [].
        level: 0-based index among the shared learnable levels. k: its size. dim: D.

    Returns:
        (k, D) float32 copy, or None (the caller falls back to k-means).
    """
    if level < len(warm) and np.shape(warm[level]) == (k, dim):
        return np.asarray(warm[level], dtype=np.float32).copy()
    return None


def fit_aligned(tok, emb: np.ndarray, features, reference=None, *, freeze_level1: bool = False, align: bool = True,
                warm_start: bool = False, progress: bool = False) -> dict[str, float]:
    """Fit ``tok`` and, given the champion's tokenizer ``reference``, keep its codes stable (module docstring).

    Args:
        tok: unfitted tokenizer. emb: (N, D) embeddings. features: (N rows) item attributes.
        reference: the champion's fitted tokenizer, or None (a plain fit).
        freeze_level1: reuse the reference's level-1 anchors (``tokenizer.freeze_level1_from_champion``).
        align: renumber the fitted codebooks to the reference's (``tokenizer.align_to_champion``).
        warm_start: start the shared learnable levels from the reference's codebooks (``tokenizer.warm_start_from_champion``).
        progress: show the fit's progress bar.

    Returns:
        What :func:`align_to_reference` reports (empty without a reference, or for a non-HGIT kind).
    """
    hgit = reference is not None and getattr(tok, "kind", None) == "hgit" and getattr(reference, "kind", None) == "hgit"
    if hgit and freeze_level1:
        tok.level1_anchors = reference.feature_centres
        tok.level1_geo = (reference.featurizer.geo_centre, reference.featurizer.geo_scale)  # the anchors' feature space
    if hgit and warm_start:
        tok.warm_codebooks = [np.asarray(c) for c in reference.codebooks]
    tok.fit(emb, features, progress=progress)
    if hgit and align:
        return align_to_reference(tok, reference)
    return {}


def alignment_note(report: dict[str, float]) -> str:
    """One line from :func:`align_to_reference`'s report, e.g. ``"level 1: 40% of codes renumbered; level 2: not aligned (shape changed)"``."""
    parts = []
    for key in sorted(k for k in report if k.startswith("aligned_l")):
        level = key[len("aligned_l"):]
        if report[key]:
            parts.append(f"level {level}: {report[f'moved_l{level}']:.0%} of codes renumbered")
        else:
            parts.append(f"level {level}: not aligned (shape changed)")
    return "; ".join(parts)
