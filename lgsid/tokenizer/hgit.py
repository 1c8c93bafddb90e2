"""Hierarchical Geographic Item Tokenization (HGIT), Eq. 9–16 of arXiv 2511.14221.

Level 1 is a *geographic* code: MiniBatchKMeans over the clustering feature F (Eq. 9) of admin
region, coordinates, category and brand. Its centre in embedding space, μ⁽¹⁾, is the mean aligned
embedding of its members and stays frozen. Levels ≥ 2 quantise the residual ``x − μ⁽¹⁾`` with
learnable codebooks (Eq. 10–12), trained on reconstruction (Eq. 13) plus a usage regulariser
KL(p⁽ˡ⁾ ‖ uniform) (Eq. 14–16).

Departures from the paper:

* The usage distribution p⁽ˡ⁾ of hard argmin codes has no gradient, so Eq. 14 uses the *soft*
  assignment ``softmax(−‖r − e_k‖² / τ)`` averaged over the batch. Hard codes are still used for
  quantisation, the residual and reconstruction.
* Dead codes (``tokenizer.reseed_dead_codes``): a code no item selects gets no reconstruction
  gradient, and with embedding-scale distances (‖r − e‖² ≪ τ) the soft KL term is nearly flat, so
  after each epoch such codes move onto the worst-reconstructed residuals (:func:`reseed_dead`).
* The deepest level is local (``tokenizer.local_last_level``, with ≥ 3 levels): one k-means
  codebook per level-1 code, ``(K_L, K_1, D)``, fitted on that cluster's last residuals with
  ``min(K_L, distinct residuals)`` centres (:func:`fit_local_level`). Lloyd's algorithm minimises
  Eq. 13 for that level exactly. A shared deepest codebook cannot tell apart near-identical
  prompts of one geographic cluster (same category, neighbouring districts): on real check-ins
  that gave collision rates far above the share of identical prompts. With a local level two items
  share a SID only when their residuals coincide or their cluster holds more than ``K_2·K_L``
  distinct items. The ``K_1`` codebooks rotate their slots (:func:`local_slots`) so every code
  index is used about equally over the catalogue.
* Fitted on a sample of a larger catalogue (``n_catalogue`` > rows fitted, ``tokenizer.fit_sample``),
  the codebooks are sized for the catalogue, but level 1 grows only while its clusters keep about
  K_L / 4 sampled rows (:func:`lgsid.tokenizer.base.scaled_codebook_sizes`); the shared middle level
  grows instead, so the model stays the size of the sample. A cluster left with fewer than K_L
  distinct sampled rows gets ``K_L`` centres ``μ_c + s_c · z_j`` as its local codebook (the
  cluster's mean and spread, times shapes shared by all clusters: :func:`fill_shapes`), so its
  unseen members spread over ``K_L`` codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    import torch

from lgsid.config import TokenizerConfig
from lgsid.errors import ValidationError
from lgsid.tokenizer.base import ResidualTables, SIDTokenizer, check_embeddings, deterministic_torch, fit_kmeans, nearest_centre, residual_of, row_chunks, subtract_rows
from lgsid.tokenizer.align import use_level1_anchors, warm_codebook
from lgsid.tokenizer.features import ClusteringFeaturizer, check_features

# ---------------------------------------------------------------------------------------------
# Equations (pure functions; torch so that the loss is differentiable)
# ---------------------------------------------------------------------------------------------


def squared_distances(r: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """‖r_i − e_k‖² for every row and centre. r: (B, D), centres: (K, D) -> (B, K)."""
    return (r * r).sum(1, keepdim=True) - 2.0 * r @ centres.T + (centres * centres).sum(1)[None, :]


def assign_codes(r: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Nearest-centre assignment.

    ``c_i⁽ˡ⁾ = argmin_k ‖r_i⁽ˡ⁾ − e_k⁽ˡ⁾‖₂`` — Eq. 10, arXiv 2511.14221.

    Args:
        r: (B, D) residuals entering level l. centres: (K, D) codebook of level l.

    Returns:
        (B,) int64 codes.
    """
    return squared_distances(r, centres).argmin(dim=1)


def quantise(centres: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Quantised vector of each row.

    ``q_i⁽ˡ⁾ = e⁽ˡ⁾_{c_i⁽ˡ⁾}`` — Eq. 11, arXiv 2511.14221.

    Args:
        centres: (K, D). codes: (B,) int64.

    Returns:
        (B, D) rows of ``centres``; differentiable w.r.t. the selected centres.
    """
    return centres[codes]


def residual_update(r: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Residual passed to the next level.

    ``r_i⁽ˡ⁺¹⁾ = r_i⁽ˡ⁾ − q_i⁽ˡ⁾`` — Eq. 12, arXiv 2511.14221 (with ``r⁽¹⁾ = x``).

    Args:
        r: (B, D). q: (B, D).

    Returns:
        (B, D).
    """
    return r - q


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean squared reconstruction error.

    ``L_rec = (1/B) Σ_i ‖x_i − Σ_l q_i⁽ˡ⁾‖²`` — Eq. 13, arXiv 2511.14221 (``x̂ = Σ_l q⁽ˡ⁾``,
    whose first term is the frozen level-1 centre μ⁽¹⁾).

    Args:
        x: (B, D) embeddings. x_hat: (B, D) reconstructions.

    Returns:
        () scalar.
    """
    return ((x - x_hat) ** 2).sum(dim=1).mean()


def soft_code_usage(r: torch.Tensor, centres: torch.Tensor, tau: float) -> torch.Tensor:
    """Code-usage distribution of one level, from soft assignments.

    ``p_k⁽ˡ⁾ = (1/B) Σ_i softmax_k(−‖r_i⁽ˡ⁾ − e_k⁽ˡ⁾‖² / τ)`` — Eq. 14, arXiv 2511.14221. The
    paper's p⁽ˡ⁾ is the usage histogram of the codes; its hard version has no gradient, so we
    use the batch mean of the soft assignment (temperature τ = ``tokenizer.tau``).

    Args:
        r: (B, D) residuals entering level l. centres: (K, D). tau: temperature > 0.

    Returns:
        (K,) probabilities summing to 1.
    """
    import torch

    return torch.softmax(-squared_distances(r, centres) / tau, dim=1).mean(dim=0)


def kl_to_uniform(p: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """KL divergence of a usage distribution from the uniform one.

    ``KL(p⁽ˡ⁾ ‖ U) = Σ_k p_k log(p_k · K)`` — Eq. 15, arXiv 2511.14221. Zero iff every code is
    used equally; ``log K`` when one code takes everything.

    Args:
        p: (K,) probabilities.

    Returns:
        () scalar ≥ 0.
    """
    import torch

    k = p.shape[0]
    return (p * torch.log(p.clamp_min(eps) * k)).sum()


def hgit_loss(rec: torch.Tensor, kls: list[torch.Tensor], lambda_reg: float) -> torch.Tensor:
    """Training objective of the learnable levels.

    ``L = L_rec + λ_reg · Σ_{l ≥ 2} KL(p⁽ˡ⁾ ‖ U)`` — Eq. 16, arXiv 2511.14221. Level 1 is fixed
    by clustering and carries no regulariser.

    Args:
        rec: () Eq. 13. kls: one () Eq. 15 term per learnable level. lambda_reg: weight.

    Returns:
        () scalar.
    """
    import torch

    reg = torch.stack(kls).sum() if kls else rec.new_zeros(())
    return rec + lambda_reg * reg


# ---------------------------------------------------------------------------------------------
# Training of the learnable levels
# ---------------------------------------------------------------------------------------------


def forward_levels(
    x: torch.Tensor, base: torch.Tensor, codebooks: list[torch.Tensor], tau: float
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Run Eq. 10–15 over the learnable levels for one batch.

    Args:
        x: (B, D) embeddings. base: (B, D) frozen level-1 centres μ⁽¹⁾ of the rows.
        codebooks: L-1 learnable (K_l, D) tensors. tau: softmax temperature.

    Returns:
        (codes (B, L-1), one KL per level, x_hat (B, D)).
    """
    import torch

    r = residual_update(x, base)  # (B, D) residual after level 1
    x_hat = base
    codes, kls = [], []
    for cb in codebooks:
        kls.append(kl_to_uniform(soft_code_usage(r, cb, tau)))
        c = assign_codes(r.detach(), cb.detach())  # (B,)
        q = quantise(cb, c)  # (B, D)
        x_hat = x_hat + q
        r = residual_update(r, q)
        codes.append(c)
    return torch.stack(codes, 1) if codes else x.new_zeros((x.shape[0], 0), dtype=torch.long), kls, x_hat


def reseed_dead(r: np.ndarray, centres: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move unused codes onto the residuals that are worst reconstructed (one level).

    The ``m`` codes no row selects are replaced, in index order, by the residuals of the ``m`` rows
    with the largest ``‖r_i − e_{c_i}‖²`` (ties: lower row first); each such row is then nearest to
    its own new code (distance 0), so the code is used again.

    Args:
        r: (N, D) residuals entering the level. centres: (K, D). codes: (N,) current codes.

    Returns:
        (new centres (K, D), indices of the reseeded codes).
    """
    counts = np.bincount(codes, minlength=len(centres))
    dead = np.flatnonzero(counts == 0)
    if dead.size == 0:
        return centres, dead
    err = np.empty(len(r), dtype=np.result_type(r, centres))
    for sl in row_chunks(len(r), r.shape[1] * err.itemsize):  # ‖r_i − e_{c_i}‖² without an (N, D) temporary
        err[sl] = ((r[sl] - centres[codes[sl]]) ** 2).sum(axis=1)
    worst = np.lexsort((np.arange(len(r)), -err))[: dead.size]
    out = centres.copy()
    out[dead[: worst.size]] = r[worst]
    return out, dead[: worst.size]


@deterministic_torch()  # the same codebooks at any thread count, run after run
def train_residual_codebooks(
    x: np.ndarray,
    base: np.ndarray,
    init: list[np.ndarray],
    *,
    tau: float,
    lambda_reg: float,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    progress: bool = False,
    reseed: bool = False,
    base_codes: np.ndarray | None = None,
) -> tuple[list[np.ndarray], dict[str, list[float]]]:
    """Adam on Eq. 16 for the learnable codebooks; ``base`` (μ⁽¹⁾ of each row) is never updated.

    Args:
        x: (N, D) embeddings. base: (N, D) frozen level-1 centres of the rows, or with
            ``base_codes`` the (K_1, D) table of them, row i's being ``base[base_codes[i]]`` (the
            same training, without an (N, D) copy).
        init: L-1 initial codebooks (K_l, D). tau, lambda_reg, epochs, lr, batch_size, seed:
            from ``tokenizer.*``.
        progress: show a tqdm bar over epochs.
        reseed: after each epoch, :func:`reseed_dead` every level (its Adam moments are reset);
            the history then also has ``reseeded`` (codes moved per epoch).
        base_codes: (N,) level-1 code of each row, when ``base`` is the (K_1, D) table.

    Returns:
        (trained codebooks, history with per-epoch ``loss``, ``rec``, ``kl``).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(x, dtype=torch.float32)
    bt = torch.as_tensor(base, dtype=torch.float32)
    ct = None if base_codes is None else torch.as_tensor(np.asarray(base_codes, dtype=np.int64))
    cbs = [torch.nn.Parameter(torch.as_tensor(c, dtype=torch.float32).clone()) for c in init]
    hist: dict[str, list[float]] = {"loss": [], "rec": [], "kl": []}
    if not cbs or epochs <= 0:
        return [c.detach().numpy() for c in cbs], hist
    opt = torch.optim.Adam(cbs, lr=lr)
    from tqdm.auto import tqdm

    n = xt.shape[0]
    for _ in tqdm(range(epochs), desc="hgit levels>=2", disable=not progress):
        perm = torch.randperm(n, generator=g)
        tot = [0.0, 0.0, 0.0]
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            _, kls, x_hat = forward_levels(xt[idx], bt[idx] if ct is None else bt[ct[idx]], cbs, tau)
            rec = reconstruction_loss(xt[idx], x_hat)
            loss = hgit_loss(rec, kls, lambda_reg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w = len(idx) / n
            tot[0] += w * float(loss.detach())
            tot[1] += w * float(rec.detach())
            tot[2] += w * float(sum(float(k.detach()) for k in kls))
        hist["loss"].append(tot[0])
        hist["rec"].append(tot[1])
        hist["kl"].append(tot[2])
        if reseed:
            hist.setdefault("reseeded", []).append(float(_reseed_epoch(xt, bt, cbs, opt, ct)))
    return [c.detach().numpy().astype(np.float32) for c in cbs], hist


def _reseed_epoch(xt: "torch.Tensor", bt: "torch.Tensor", cbs: list, opt, ct: "torch.Tensor | None" = None) -> int:
    """:func:`reseed_dead` on every level over all rows (in place); returns the number of codes moved.

    ``bt``: (N, D) bases of the rows, or with ``ct`` ((N,) codes) the (K, D) table of them."""
    import torch

    moved = 0
    with torch.no_grad():
        r = (xt - bt).numpy() if ct is None else residual_of(xt.numpy(), bt.numpy(), ct.numpy())
        for cb in cbs:
            c_np = cb.detach().numpy()
            codes = nearest_centre(r, c_np)
            new, dead = reseed_dead(r, c_np, codes)
            if dead.size:
                cb.data.copy_(torch.as_tensor(new))
                st = opt.state.get(cb, {})
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in st:
                        st[key][torch.as_tensor(dead)] = 0.0
                moved += int(dead.size)
                codes = nearest_centre(r, new)
            subtract_rows(r, new, codes)
    return moved


def local_slots(sizes: list[int], k: int) -> list[np.ndarray]:
    """Code indices of each cluster's local centres: consecutive slots, rotating over clusters.

    Cluster ``c`` with ``sizes[c]`` centres uses slots ``(o_c + j) mod k`` for ``j < sizes[c]``,
    where ``o_c = Σ_{c' < c} sizes[c'] mod k``, so small clusters do not all crowd codes 0, 1, ...
    Example: ``local_slots([3, 2, 0, 2], 4) == [[0, 1, 2], [3, 0], [], [1, 2]]``.
    """
    out, o = [], 0
    for n in sizes:
        slots, o = next_slots(o, n, k)
        out.append(slots)
    return out


def next_slots(o: int, n: int, k: int) -> tuple[np.ndarray, int]:
    """One step of :func:`local_slots`: the ``n`` slots from offset ``o`` (mod ``k``) and the next cluster's offset."""
    return (o + np.arange(n)) % k, (o + n) % k


class LevelResiduals:
    """The residuals entering the local deepest level, ``r_i = x_i − μ⁽¹⁾_{c1_i} − Σ_l e⁽ˡ⁾_{codes_il}``
    (Eq. 12), built only for the rows indexed (``r[idx]``): no (N, D) residual is held.

    Args:
        x: (N, D) embeddings. mu1: (K_1, D). c1: (N,) level-1 codes. codebooks: the shared
            (K_l, D) codebooks. codes: (N, >= len(codebooks)) their codes (:func:`shared_codes`).
    """

    def __init__(self, x: np.ndarray, mu1: np.ndarray, c1: np.ndarray, codebooks: list[np.ndarray], codes: np.ndarray):
        self.x, self.mu1, self.c1, self.codebooks, self.codes = x, mu1, c1, codebooks, codes
        self.shape = x.shape

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx) -> np.ndarray:
        r = residual_of(self.x[idx], self.mu1, self.c1[idx])
        for l, cb in enumerate(self.codebooks):
            subtract_rows(r, cb, self.codes[idx, l])
        return r


def shared_codes(x: np.ndarray, mu1: np.ndarray, c1: np.ndarray, codebooks: list[np.ndarray]) -> np.ndarray:
    """Residual quantisation of ``x − μ⁽¹⁾_{c1}`` by the shared codebooks (Eq. 10–12), in row chunks. -> (N, L_shared) int64."""
    codes = np.empty((len(x), len(codebooks)), dtype=np.int64)
    for sl in row_chunks(len(x), x.shape[1] * x.itemsize):
        r = residual_of(x[sl], mu1, c1[sl])
        for l, cb in enumerate(codebooks):
            codes[sl, l] = nearest_centre(r, cb)
            subtract_rows(r, cb, codes[sl, l])
    return codes


_UNUSED = 1e3
"""Coordinate value of a local slot with no centre: far from any unit-scale residual, never the argmin."""


def fit_local_level(r: np.ndarray, c1: np.ndarray, k1: int, k: int, seed: int, fill: bool = False) -> np.ndarray:
    """The deepest level as one k-means codebook per level-1 code (see module docstring).

    For each level-1 code c with members M_c: ``k_c = min(k, distinct rows of r[M_c])`` k-means
    centres of those rows (Lloyd, k-means++, ``random_state=seed + c``), placed at the slots of
    :func:`local_slots`; unused slots hold :data:`_UNUSED`. With ``k_c`` equal to the number of
    distinct rows every distinct row is its own centre.

    With ``fill`` (a fit on a sample of a larger catalogue) a cluster with fewer than ``k`` distinct
    sampled rows gets ``k`` centres ``μ_c + s_c · z_j`` instead (:func:`fill_shapes`): its sampled
    rows stand for about ``N / n`` times as many catalogue members, which would crowd the few
    sampled rows' codes; the shared shapes spread them over ``k`` codes. Clusters with ``k`` or more
    distinct sampled rows keep their k-means centres.

    Args:
        r: (N, D) residuals after the shared levels. c1: (N,) level-1 codes. k1: K_1. k: K_L.
        seed: base seed. fill: give every cluster ``k`` centres.

    Returns:
        (K_L, K_1, D) float32 codebooks.
    """
    from sklearn.cluster import KMeans

    out = np.full((k, k1, r.shape[1]), _UNUSED, dtype=np.float32)
    order, bounds = _members(c1, k1)
    if fill:
        shapes, mu, spread = fill_shapes(r, c1, k1, k, seed)
    o = 0  # first slot of cluster c (local_slots, one cluster at a time)
    for c in range(k1):
        rows = np.unique(r[order[bounds[c]:bounds[c + 1]]], axis=0)  # sorted distinct rows: member order is irrelevant
        kc = min(k, len(rows))
        if kc == len(rows):  # every distinct row is its own centre (also an empty cluster)
            cen = rows
        else:
            cen = fit_kmeans(KMeans(n_clusters=kc, n_init=1, max_iter=100, random_state=seed + c), rows).cluster_centers_
        if fill and len(cen) < k and len(shapes) > len(cen):  # the sampled rows are too few: shared shapes instead
            cen = fill_centres(mu[c], spread[c], shapes, len(shapes), c)
        slots, o = next_slots(o, len(cen), k)
        out[slots, c] = cen
    return out


def fill_shapes(r: np.ndarray, c1: np.ndarray, k1: int, k: int, seed: int, max_rows: int = 20000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`fill_centres` places: the clusters' mean and spread, and ``k`` shared shapes.

    With ``μ_c`` the mean of cluster c's rows and ``s_c`` their RMS distance to it, the shapes are
    ``k`` k-means centres of the standardised deviations ``z_i = (r_i − μ_{c_i}) / s_{c_i}`` of the
    rows of clusters with >= 2 rows (at most ``max_rows`` of them, seeded): how a cluster's members
    spread around its mean, learnt from every cluster at once. Clusters with fewer than 2 rows get
    the median spread (and mean 0 without rows). Sums are taken in row chunks: no (N, D) copy.

    Args:
        r: (N, D) residuals after the shared levels (or :class:`LevelResiduals`). c1: (N,) level-1
            codes. k1: K_1. k: K_L. seed: seed. max_rows: rows the shapes are fitted on.

    Returns:
        (shapes (k', D) float32 with k' = min(k, rows pooled), means (K_1, D), spreads (K_1,)).
    """
    from sklearn.cluster import KMeans

    d = r.shape[1]
    sums, sq = np.zeros((k1, d)), np.zeros(k1)
    for sl in row_chunks(len(r), d * 8):
        rows = np.asarray(r[sl], dtype=np.float64)
        np.add.at(sums, c1[sl], rows)
        np.add.at(sq, c1[sl], (rows * rows).sum(axis=1))
    counts = np.bincount(c1, minlength=k1)
    mu = sums / np.maximum(counts, 1)[:, None]  # (K_1, D)
    spread = np.sqrt(np.maximum(sq / np.maximum(counts, 1) - (mu * mu).sum(axis=1), 0.0))  # (K_1,)
    ok = (counts >= 2) & (spread > 0)
    spread[~ok] = float(np.median(spread[ok])) if ok.any() else 1.0
    pool = np.flatnonzero(ok[c1])
    if len(pool) > max_rows:
        pool = np.sort(np.random.default_rng(seed).choice(pool, max_rows, replace=False))
    if len(pool) == 0:
        return np.zeros((0, d), dtype=np.float32), mu, spread
    z = (np.asarray(r[pool], dtype=np.float64) - mu[c1[pool]]) / spread[c1[pool], None]  # (P, D) standardised deviations
    kk = min(k, len(np.unique(z, axis=0)))
    shapes = fit_kmeans(KMeans(n_clusters=kk, n_init=1, max_iter=100, random_state=seed), z).cluster_centers_
    return shapes.astype(np.float32), mu, spread


def fill_centres(mu: np.ndarray, spread: float, shapes: np.ndarray, m: int, c: int) -> np.ndarray:
    """``m`` local centres of cluster ``c``: ``μ_c + s_c · z_j`` for the shared shapes z_j of :func:`fill_shapes`.

    The shapes are taken from ``c mod len(shapes)`` on (rotating, so that with ``m`` below the number
    of shapes clusters do not all take the same first ones). The catalogue's unseen members of the
    cluster spread around ``μ_c`` as every cluster's members do, so these centres split them.

    Args:
        mu: (D,) the cluster's mean. spread: its ``s_c``. shapes: (k', D). m: centres wanted (<= k'). c: the level-1 code.

    Returns:
        (m, D) float32.
    """
    j = (c + np.arange(m)) % max(len(shapes), 1)
    return (mu + spread * shapes[j]).astype(np.float32)


def _members(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by code: ``order[bounds[c]:bounds[c + 1]]`` are the rows with code c, in row order. (N,) -> ((N,), (k + 1,))."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(k + 1), side="left")
    return order, bounds


def local_encode(r: np.ndarray, c1: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Nearest centre of each row among its level-1 code's local codebook. (N, D), (N,), (K, K1, D) -> (N,)."""
    out = np.zeros(len(r), dtype=np.int64)
    order, bounds = _members(c1, local.shape[1])
    for c in range(local.shape[1]):
        m = order[bounds[c]:bounds[c + 1]]  # the rows with code c, in row order
        if len(m):
            out[m] = nearest_centre(r[m], local[:, c])
    return out


def kmeans_init(r: np.ndarray, k: int, seed: int, max_rows: int = 20000) -> np.ndarray:
    """Initial codebook: k-means centres of (a sample of) the residuals. (N, D) -> (k, D)."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    sample = r if len(r) <= max_rows else r[rng.choice(len(r), max_rows, replace=False)]
    if len(sample) < k:
        raise ValidationError(f"cannot fit a codebook of {k} codes on {len(sample)} items; lower tokenizer.codebook_sizes")
    km = fit_kmeans(KMeans(n_clusters=k, n_init=1, max_iter=50, random_state=seed), sample)
    return km.cluster_centers_.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------


def level1_centres(x: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """μ⁽¹⁾_k = mean embedding of the members of cluster k (global mean for an empty cluster).

    Args:
        x: (N, D). codes: (N,) in [0, k).

    Returns:
        (k, D) float32.
    """
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    np.add.at(sums, codes, x)
    counts = np.bincount(codes, minlength=k)[:, None]
    mu = np.where(counts > 0, sums / np.maximum(counts, 1), x.mean(axis=0, keepdims=True))
    return mu.astype(np.float32)


def level1_paths(features: pd.DataFrame, codes: np.ndarray, k: int) -> list[str]:
    """Readable ``sid_path`` of every level-1 code: the area and category that cover its members (:func:`lgsid.tokenizer.paths.code_paths`)."""
    from lgsid.tokenizer.paths import code_paths

    cats = features["category_l1"].where(features["category_l1"].notna(), features["category_l2"])
    return code_paths(codes, features["state"].to_numpy(), features["county"].to_numpy(), cats.to_numpy(), k)


class HGITTokenizer(SIDTokenizer):
    """LGSID's tokenizer: geographic level-1 clusters + learnable residual levels (Eq. 9–16)."""

    kind = "hgit"

    def __init__(self, cfg: TokenizerConfig):
        super().__init__(cfg)
        self.featurizer = ClusteringFeaturizer(
            {"admin": cfg.w_admin, "geo": cfg.w_geo, "cat": cfg.w_cat, "brand": cfg.w_brand}, cfg.feature_dim
        )
        self.feature_centres: np.ndarray | None = None  # (K1, F) MiniBatchKMeans centres over F
        self.mu1: np.ndarray | None = None  # (K1, D) frozen level-1 centres in embedding space
        self.codebooks: list[np.ndarray] = []  # learnable shared (K_l, D), levels 2.. (L-1 or L-2 of them)
        self.local: np.ndarray | None = None  # (K_L, K_1, D) local deepest level, or None
        self.l1_paths: list[str] = []
        self.l1_sizes: list[int] = []

    @property
    def local_last_level(self) -> bool:
        """``tokenizer.local_last_level`` with >= 3 levels: the deepest level is one k-means codebook per level-1 code."""
        return self.cfg.local_last_level and len(self.codebook_sizes) >= 3

    def level1_codes(self, features: pd.DataFrame) -> np.ndarray:
        """Level-1 code of each row: nearest MiniBatchKMeans centre of F (N rows -> (N,)), in row chunks (no (N, F) matrix)."""
        assert self.feature_centres is not None
        out = np.empty(len(features), dtype=np.int64)
        for sl in row_chunks(len(features), 4 * self.featurizer.dim * 8):  # F rows, their gathers and scores
            out[sl] = nearest_centre(self.featurizer(features.iloc[sl]), self.feature_centres)
        return out

    def fit(self, embeddings: np.ndarray, features: pd.DataFrame | None = None, progress: bool = False) -> "HGITTokenizer":
        from sklearn.cluster import MiniBatchKMeans

        if features is None:
            raise ValidationError("hgit needs the features frame (lat, lon, state, county, town, category_l1, category_l2, brand)")
        check_features(features)
        x = self._fit_input(embeddings, features)
        if len(x) != len(features):
            raise ValidationError(f"embeddings have {len(x)} rows but features {len(features)}")
        k1 = self.codebook_sizes[0]
        anchors = getattr(self, "level1_anchors", None)  # (K1, F) champion's centres: tokenizer.freeze_level1_from_champion
        if anchors is not None and getattr(self, "level1_geo", None) is not None:
            # frozen anchors live in the champion's feature space: keep its geo extent, not this catalogue's
            self.featurizer.geo_centre, self.featurizer.geo_scale = self.level1_geo
        elif self.cfg.geo_scale == "extent":
            self.featurizer.fit_geo(features)
        F = self.featurizer(features)
        if anchors is not None:
            k1 = use_level1_anchors(self, anchors, F.shape[1])
        else:
            km = fit_kmeans(MiniBatchKMeans(n_clusters=k1, random_state=self.cfg.seed, batch_size=min(4096, len(F)), n_init=3), F)
            self.feature_centres = km.cluster_centers_.astype(np.float64)
            del km
        c1 = nearest_centre(F, self.feature_centres)
        del F
        self.mu1 = level1_centres(x, c1, k1)
        self.l1_paths = level1_paths(features, c1, k1)
        self.l1_sizes = np.bincount(c1, minlength=k1).tolist()
        local = self.local_last_level
        shared = self.codebook_sizes[1:-1] if local else self.codebook_sizes[1:]
        init = []
        warm = getattr(self, "warm_codebooks", None) or []  # champion's codebooks: tokenizer.warm_start_from_champion
        r = residual_of(x, self.mu1, c1)  # x − μ⁽¹⁾: residual entering level 2, updated in place level by level
        for l, k in enumerate(shared):
            cb = warm_codebook(warm, l, k, r.shape[1])
            cb = kmeans_init(r, k, self.cfg.seed + l + 1) if cb is None else cb
            init.append(cb)
            if l + 1 < len(shared):  # the residual after the last shared level is not used
                subtract_rows(r, cb, nearest_centre(r, cb))
        del r  # training recomputes its residuals per batch
        self._tables = None
        self.codebooks, self.history = train_residual_codebooks(
            x, self.mu1, init, tau=self.cfg.tau, lambda_reg=self.cfg.lambda_reg, epochs=self.cfg.epochs,
            lr=self.cfg.lr, batch_size=self.cfg.batch_size, seed=self.cfg.seed, progress=progress,
            reseed=self.cfg.reseed_dead_codes, base_codes=c1,  # μ⁽¹⁾ rows gathered per batch: no (N, D) base
        )
        self.local = None
        if local:
            r = LevelResiduals(x, self.mu1, c1, self.codebooks, shared_codes(x, self.mu1, c1, self.codebooks))
            fill = self.n_catalogue is not None and self.n_catalogue > len(x)  # a sample: unseen members need codes too
            self.local = fit_local_level(r, c1, k1, self.codebook_sizes[-1], self.cfg.seed + len(shared) + 1, fill=fill)
        self.fitted = True
        return self

    def encode(self, embeddings: np.ndarray, features: pd.DataFrame | None = None) -> np.ndarray:
        self._require_fitted()
        if features is None:
            raise ValidationError("hgit.encode needs the features frame for the level-1 code")
        check_features(features)
        x = check_embeddings(embeddings, self.dim, ids=features.get("item_id"))
        c1 = self.level1_codes(features)
        rest = self.tables.encode(x, c1)  # == residual_encode(x - mu1[c1], codebooks), one matmul
        if getattr(self, "local", None) is not None:
            r = LevelResiduals(x, self.mu1, c1, self.codebooks, rest)
            rest = np.concatenate([rest, local_encode(r, c1, self.local)[:, None]], axis=1)
        return np.concatenate([c1[:, None], rest], axis=1)

    @property
    def tables(self) -> ResidualTables:
        """Look-up tables of the fast residual assignment (built once per fitted/loaded model)."""
        if getattr(self, "_tables", None) is None:
            self._tables = ResidualTables(self.codebooks, self.mu1)
        return self._tables

    def reconstruct(self, codes: np.ndarray, embeddings: np.ndarray | None = None) -> np.ndarray:
        self._require_fitted()
        out = self.mu1[codes[:, 0]].copy()
        for l, cb in enumerate(self.codebooks):
            out += cb[codes[:, l + 1]]
        if getattr(self, "local", None) is not None:
            out += self.local[codes[:, -1], codes[:, 0]]
        return out

    def codebook_shapes(self) -> list[tuple[int, ...]]:
        """(K_l, ...) per level; the local deepest level is (K_L, K_1, D)."""
        local = [tuple(self.local.shape)] if getattr(self, "local", None) is not None else []
        return [tuple(self.mu1.shape)] + [tuple(c.shape) for c in self.codebooks] + local

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"feature_centres": self.feature_centres, "mu1": self.mu1}
        if self.featurizer.geo_centre is not None:
            arrays["geo_centre"] = self.featurizer.geo_centre
            arrays["geo_scale"] = np.array([self.featurizer.geo_scale])
        arrays.update({f"codebook_{l + 2}": c for l, c in enumerate(self.codebooks)})
        if getattr(self, "local", None) is not None:
            arrays["local_codebook"] = self.local
        return arrays, {"l1_paths": self.l1_paths, "l1_sizes": self.l1_sizes, "history": self.history}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.feature_centres = arrays["feature_centres"]
        self.mu1 = arrays["mu1"]
        # a model saved before tokenizer.geo_scale (or with geo_scale: sphere) has no extent: raw unit vectors
        self.featurizer.geo_centre = arrays.get("geo_centre")
        self.featurizer.geo_scale = None if arrays.get("geo_scale") is None else float(np.asarray(arrays["geo_scale"]).ravel()[0])
        self.codebooks = [arrays[f"codebook_{l}"] for l in range(2, 2 + sum(1 for k in arrays if k.startswith("codebook_")))]
        self.local = arrays.get("local_codebook")
        self._tables = None
        self.l1_paths = list(meta.get("l1_paths", []))
        self.l1_sizes = list(meta.get("l1_sizes", []))
        self.history = dict(meta.get("history", {}))
