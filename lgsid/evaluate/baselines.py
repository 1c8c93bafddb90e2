"""Next-item baselines scored on the same test split as the SID models (the user's history = train + validation items).

* ``popularity``: the K most frequent training items, the same list for every user;
* ``history``: the user's own training items by count (ties: most recent first), then popular items;
* ``history_nearby``: the user's own items as in ``history``, then items ranked by distance-decayed
  popularity around the user's last visit, :func:`nearby_popularity_score`;
* ``sasrec``: an ID-only sequential Transformer (SASRec-style) trained on exactly the TIGER model's
  training examples with the same width, depth, epochs, batch size and learning rate.

Every function returns ranked lists (U, K) of item indices, best first, -1 where fewer than K
items exist, so the same metric code scores baselines and SID models.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lgsid.evaluate.training import train_minibatches
from lgsid.geo import haversine_km

BASELINES: dict[str, str] = {
    "popularity": "Popularity",
    "history": "User-history frequency",
    "history_nearby": "User history + nearby popularity",
    "sasrec": "SASRec-style (item IDs only)",
}


def item_counts(seqs: list[np.ndarray], n_items: int) -> np.ndarray:
    """(N,) training interaction count of every item over all users' training sequences."""
    flat = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
    return np.bincount(flat, minlength=n_items)


def history_ranking(seq: np.ndarray) -> np.ndarray:
    """A user's distinct items ordered by count, ties broken by the most recent visit.

    Args:
        seq: (n,) item indices in time order.

    Returns:
        (d,) distinct item indices, most frequent first.
    """
    seq = np.asarray(seq, dtype=np.int64)
    if seq.size == 0:
        return seq
    items, counts = np.unique(seq, return_counts=True)
    last = np.zeros(len(items), dtype=np.int64)
    np.maximum.at(last, np.searchsorted(items, seq), np.arange(len(seq)))  # latest position of each item
    return items[np.lexsort((-last, -counts))]


def _fill(first: np.ndarray, fallback: np.ndarray, k: int) -> np.ndarray:
    """``first`` (truncated to k) then ``fallback`` items not already listed, as a (k,) row padded with -1."""
    out = np.full(k, -1, dtype=np.int64)
    head = first[:k]
    rest = fallback[~np.isin(fallback, head)][: k - len(head)]
    row = np.concatenate([head, rest])
    out[: len(row)] = row
    return out


def popularity_lists(counts: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """(U, k): the k most frequent training items (ties by lower index) for every user."""
    order = np.argsort(-counts, kind="stable")[:k]
    return np.tile(_fill(order, order, k), (n_users, 1))


def history_lists(histories: list[np.ndarray], counts: np.ndarray, k: int) -> np.ndarray:
    """(U, k): each user's :func:`history_ranking`, then the most popular items they have not visited."""
    pop = np.argsort(-counts, kind="stable")[: k + max((len(h) for h in histories), default=0)]
    return np.stack([_fill(history_ranking(h), pop, k) for h in histories]) if histories else np.zeros((0, k), np.int64)


def nearby_popularity_score(counts: np.ndarray, distance_km: np.ndarray, decay_km: float) -> np.ndarray:
    """Distance-decayed popularity: ``score_i = log(1 + count_i) - d_i / decay_km``.

    Equivalent to ranking by ``(1 + count_i) · exp(-d_i / decay_km)``: an item twice as popular
    ranks level with one ``decay_km · ln 2`` km closer.

    Args:
        counts: (N,) training counts.
        distance_km: (..., N) distance of every item to the user's reference point (last visit).
        decay_km: decay scale (> 0).

    Returns:
        (..., N) scores, higher = better.
    """
    if decay_km <= 0:
        raise ValueError(f"decay_km must be > 0, got {decay_km}")
    return np.log1p(np.asarray(counts, dtype=np.float64)) - np.asarray(distance_km, dtype=np.float64) / decay_km


def last_visit_distances(histories: list[np.ndarray], lat: np.ndarray, lon: np.ndarray, max_elements: int = 1 << 22):
    """Yield ``(start, block of histories, (b, N) km from each one's last visit histories[u][-1] to every item)``
    in blocks of at most ``max_elements`` distances, so the working memory does not grow with U x N."""
    chunk = max(1, int(max_elements) // max(len(lat), 1))
    for s in range(0, len(histories), chunk):
        hs = histories[s:s + chunk]
        last = np.array([h[-1] for h in hs], dtype=np.int64)
        yield s, hs, haversine_km(lat[last][:, None], lon[last][:, None], lat[None, :], lon[None, :])


def history_nearby_lists(histories: list[np.ndarray], counts: np.ndarray, lat: np.ndarray, lon: np.ndarray, decay_km: float, k: int,
                         max_elements: int = 1 << 22) -> np.ndarray:
    """(U, k): the user's :func:`history_ranking`, then unvisited items by :func:`nearby_popularity_score`
    around the user's last training visit (``histories[u][-1]``).

    Users are scored in blocks of at most ``max_elements`` (user, item) scores (:func:`last_visit_distances`)."""
    out = np.full((len(histories), k), -1, dtype=np.int64)
    n = len(counts)
    for s, hs, d in last_visit_distances(histories, lat, lon, max_elements):
        score = nearby_popularity_score(counts, d, decay_km)
        m = min(n, 2 * k + max(len(h) for h in hs))
        top = np.argpartition(-score, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (len(hs), 1))
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, axis=1), axis=1, kind="stable"), axis=1)
        for j, h in enumerate(hs):
            out[s + j] = _fill(history_ranking(h), top[j], k)
    return out


def nearest_unvisited(histories: list[np.ndarray], lat: np.ndarray, lon: np.ndarray, m: int, max_elements: int = 1 << 22) -> np.ndarray:
    """(U, m) the ``m`` items nearest each user's last visit (``histories[u][-1]``) that are not in the
    user's history, nearest first (-1 padded); users in blocks of :func:`last_visit_distances`."""
    n = len(lat)
    out = np.full((len(histories), m), -1, dtype=np.int64)
    k = min(m, n)
    for s, hs, d in last_visit_distances(histories, lat, lon, max_elements):
        for j, h in enumerate(hs):
            d[j, np.asarray(h, dtype=np.int64)] = np.inf
        top = np.argpartition(d, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(hs), 1))
        top = np.take_along_axis(top, np.argsort(np.take_along_axis(d, top, axis=1), axis=1, kind="stable"), axis=1)
        out[s:s + len(hs), :k] = np.where(np.isfinite(np.take_along_axis(d, top, axis=1)), top, -1)
    return out


# ------------------------------------------------------------------------------------------ SASRec


class SASRec(nn.Module):
    """ID-only self-attentive sequential recommender (SASRec-style).

    The history's item embeddings plus learned positions go through a Transformer encoder; the
    last position's output scores every item by a dot product with the (tied) item embeddings.

    Departure from SASRec: trained only on the last position of each example, with a full
    softmax over the catalogue up to ``evaluate.sasrec_negatives`` items and a sampled softmax
    above (:func:`sampled_softmax_loss`; SASRec trains every position with sampled negatives), so
    it sees exactly the TIGER model's (history, next item) examples.

    Args:
        n_items: catalogue size N (index -1 = padding).
        max_history: H.
    """

    def __init__(self, n_items: int, max_history: int, d_model: int = 64, nhead: int = 4, layers: int = 1, dropout: float = 0.1):
        super().__init__()
        self.item = nn.Embedding(n_items + 1, d_model, padding_idx=0)  # row 0 = padding, item i -> i + 1
        self.pos = nn.Embedding(max_history, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, 2 * d_model, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def encode(self, hist: torch.Tensor) -> torch.Tensor:
        """hist (B, H) right-aligned item indices (-1 = pad, last column always an item) -> (B, d) user states."""
        pad = hist < 0
        x = self.item(hist + 1) + self.pos(torch.arange(hist.shape[1], device=hist.device))[None]  # (B, H, d)
        return self.norm(self.encoder(x, src_key_padding_mask=pad)[:, -1])  # (B, d)

    def forward(self, hist: torch.Tensor) -> torch.Tensor:
        """hist (B, H) -> logits (B, N) over the whole catalogue."""
        return self.encode(hist) @ self.item.weight[1:].T  # (B, N)


def sampled_softmax_loss(h: torch.Tensor, item_w: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each target against shared sampled negatives (a sampled softmax).

    ``loss_b = -log( exp(h_b·w_t) / (exp(h_b·w_t) + Σ_{j in negatives, j != t} exp(h_b·w_j)) )``, averaged over the batch.
    The negatives are drawn uniformly, so the log-Q correction of a sampled softmax is the same constant for every
    candidate and cancels; a negative equal to the row's own target (an accidental hit) is left out of that row.

    Args:
        h: (B, d) user states.
        item_w: (N, d) item embeddings (row i = item i).
        target: (B,) target items.
        negatives: (S,) sampled items, shared by the batch.
    """
    pos = (h * item_w[target]).sum(-1, keepdim=True)  # (B, 1)
    neg = (h @ item_w[negatives].T).masked_fill(negatives[None, :] == target[:, None], float("-inf"))  # (B, S)
    logits = torch.cat([pos, neg], dim=1)
    return nn.functional.cross_entropy(logits, torch.zeros(len(target), dtype=torch.long))


def sasrec_scored_items(n_items: int, negatives: int) -> int:
    """Items one SASRec training example is scored against: the catalogue under the full softmax (``negatives`` 0 or
    at least ``n_items``), else the ``negatives`` sampled ones (``evaluate.sasrec_negatives``)."""
    return negatives if 0 < negatives < n_items else n_items


def train_sasrec(n_items: int, hist: np.ndarray, target: np.ndarray, *, seed: int, epochs: int, d_model: int, nhead: int, layers: int,
                 batch_size: int, lr: float, dropout: float = 0.0, lr_schedule: str = "constant", negatives: int = 0,
                 valid: tuple[np.ndarray, np.ndarray] | None = None, patience: int = 0) -> SASRec:
    """Train :class:`SASRec` on (hist (M, H), target (M,)).

    The loss is the cross-entropy over all items while :func:`sasrec_scored_items` is the catalogue; otherwise each
    batch draws ``negatives`` uniform items (a generator seeded by ``seed``) and trains by
    :func:`sampled_softmax_loss`, so the cost of a step stops growing with the catalogue
    (``evaluate.sasrec_negatives``). ``lr_schedule`` as in :func:`~lgsid.evaluate.training.train_minibatches`.
    ``valid`` = (hist, target) validation examples: their full-softmax cross-entropy is recorded per epoch and,
    with ``patience`` > 0, stops training early.
    """
    torch.manual_seed(seed)
    model = SASRec(n_items, hist.shape[1], d_model=d_model, nhead=nhead, layers=layers, dropout=dropout)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    H, T = torch.from_numpy(hist), torch.from_numpy(target)
    if sasrec_scored_items(n_items, negatives) < n_items:
        gen = torch.Generator().manual_seed(seed)

        def batch_loss(bi: torch.Tensor) -> torch.Tensor:
            neg = torch.randint(0, n_items, (negatives,), generator=gen)
            return sampled_softmax_loss(model.encode(H[bi]), model.item.weight[1:], T[bi], neg)
    else:
        loss_fn = nn.CrossEntropyLoss()

        def batch_loss(bi: torch.Tensor) -> torch.Tensor:
            return loss_fn(model(H[bi]), T[bi])
    vloss = None
    if valid is not None and len(valid[1]):
        Hv, Tv = torch.from_numpy(valid[0]), torch.from_numpy(valid[1])
        ce = nn.CrossEntropyLoss(reduction="sum")

        def vloss() -> float:
            return float(sum(ce(model(Hv[s:s + 256]), Tv[s:s + 256]) for s in range(0, len(Tv), 256))) / len(Tv)
    return train_minibatches(model, opt, len(target), batch_loss, epochs=epochs, batch_size=batch_size,
                             rng=np.random.default_rng(seed), desc="sasrec epochs", lr_schedule=lr_schedule, valid_loss=vloss, patience=patience)


@torch.no_grad()
def sasrec_lists(model: SASRec, hist: np.ndarray, k: int, batch_size: int = 1024) -> np.ndarray:
    """(U, k) top-k items by the model's scores for (U, H) histories."""
    kk = min(k, model.item.num_embeddings - 1)
    out = np.full((len(hist), k), -1, dtype=np.int64)
    for s in range(0, len(hist), batch_size):
        out[s:s + batch_size, :kk] = torch.topk(model(torch.from_numpy(hist[s:s + batch_size])), kk, dim=1).indices.numpy()
    return out
