"""DIN-style CTR model for the discriminative comparison (paper Table 1).

The candidate item attends over the user's history (target attention); the attended interest
vector, the candidate and their product feed an MLP that outputs a click logit. An item is
represented by its ID embedding, optionally combined with one embedding per SID level
("sum": added to the ID embedding; "concat": concatenated). The variants compared are ID only
(the paper's "Origin") and ID + the SIDs of RQ-KMeans, RQ-VAE and LGSID.

Departure from DIN: attention weights are a masked softmax instead of DIN's unnormalised scores,
which trains more stably on the small demo data with a few epochs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lgsid.evaluate.training import train_minibatches


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class DIN(nn.Module):
    """Target-attention CTR model.

    Args:
        n_items: catalogue size N (item indices 0..N-1; -1 = padding).
        codes: optional (N, L) int64 SID codes (levels only, no dedup suffix); None = ID only.
        dim: embedding size per part.
        sid_mode: "sum" or "concat" of the level embeddings with the ID embedding.
    """

    def __init__(self, n_items: int, codes: np.ndarray | None = None, dim: int = 16, sid_mode: str = "sum"):
        super().__init__()
        if sid_mode not in ("sum", "concat"):
            raise ValueError(f"unknown sid_mode {sid_mode!r}; valid: sum, concat")
        self.sid_mode = sid_mode
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=0)  # row 0 = padding, item i -> i + 1
        if codes is not None:
            codes = np.asarray(codes, dtype=np.int64)
            self.register_buffer("codes", torch.from_numpy(np.vstack([np.zeros((1, codes.shape[1]), np.int64), codes])))
            self.levels = nn.ModuleList(nn.Embedding(int(codes[:, i].max()) + 1, dim) for i in range(codes.shape[1]))
        else:
            self.codes = None
            self.levels = nn.ModuleList()
        e = dim * (1 + len(self.levels)) if (sid_mode == "concat" and self.codes is not None) else dim
        self.att = _mlp([4 * e, 32, 1])
        self.out = _mlp([3 * e, 64, 32, 1])

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        """items (...) with -1 = pad -> (..., E); padded positions are zero vectors."""
        idx = items + 1
        parts = [self.item(idx)]
        if self.codes is not None:
            c = self.codes[idx]  # (..., L)
            parts += [emb(c[..., i]) for i, emb in enumerate(self.levels)]
        x = torch.cat(parts, dim=-1) if self.sid_mode == "concat" else torch.stack(parts).sum(0)
        return x * (items >= 0).unsqueeze(-1).to(x.dtype)

    def forward(self, hist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """hist (B, H) item indices (-1 = pad), target (B,) -> click logits (B,)."""
        h = self.embed(hist)  # (B, H, E)
        t = self.embed(target).unsqueeze(1).expand_as(h)  # (B, H, E)
        w = self.att(torch.cat([h, t, h - t, h * t], dim=-1)).squeeze(-1)  # (B, H)
        w = w.masked_fill(hist < 0, -1e9).softmax(dim=-1)
        u = (w.unsqueeze(-1) * h).sum(1)  # (B, E)
        tv = t[:, 0]
        return self.out(torch.cat([u, tv, u * tv], dim=-1)).squeeze(-1)


def sample_negatives(pos: np.ndarray, n_items: int, n_neg: int, rng: np.random.Generator) -> np.ndarray:
    """(M,) positives -> (M, n_neg) uniform random items, never equal to the row's positive."""
    neg = rng.integers(0, n_items - 1, size=(len(pos), n_neg))
    return neg + (neg >= pos[:, None])  # skip the positive: maps [0, N-2] onto [0, N-1] \ {pos}


def ctr_examples(hist: np.ndarray, pos: np.ndarray, n_items: int, n_neg: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positives plus ``n_neg`` sampled negatives sharing the same history.

    Args:
        hist: (M, H) history item indices; pos: (M,) clicked items.

    Returns:
        hist (M*(1+n_neg), H), target (M*(1+n_neg),), label (M*(1+n_neg),) float32.
    """
    return ctr_examples_with(hist, pos, sample_negatives(pos, n_items, n_neg, rng))


def exposure_negatives(pos: np.ndarray, near: np.ndarray, histories: list[np.ndarray], n_neg: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Exposure-like negatives: items near the user's recent locations that they never visited.

    For row u, negatives are drawn without replacement from ``near[u]`` minus the user's training
    items and the positive; rows with fewer than ``n_neg`` such items are topped up uniformly
    (:func:`sample_negatives`).

    Args:
        pos: (U,) positives.
        near: (U, N) bool, items within the exposure radius of the user's recent visits.
        histories: U training sequences (item indices).
        n_neg: negatives per row.

    Returns:
        ((U, n_neg) negatives, share of negatives that had to come from the uniform top-up).
    """
    out = sample_negatives(pos, near.shape[1], n_neg, rng)  # uniform top-up, overwritten where possible
    topped = 0
    for u in range(len(pos)):
        ok = near[u].copy()
        ok[np.asarray(histories[u], dtype=np.int64)] = False
        ok[pos[u]] = False
        cand = np.flatnonzero(ok)
        m = min(n_neg, len(cand))
        if m:
            out[u, :m] = rng.choice(cand, size=m, replace=False)
        if m < n_neg:  # the uniform top-up must not repeat the chosen ones
            rest = np.setdiff1d(np.arange(near.shape[1]), np.r_[out[u, :m], pos[u]])
            out[u, m:] = rng.choice(rest, size=n_neg - m, replace=False)
            topped += n_neg - m
    return out, topped / max(1, out.size)


def ctr_examples_with(hist: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`ctr_examples` with given negatives (M, n_neg)."""
    n_neg = neg.shape[1]
    tgt = np.concatenate([pos[:, None], neg], axis=1).reshape(-1)
    lab = np.tile(np.r_[1.0, np.zeros(n_neg)], len(pos)).astype(np.float32)
    return np.repeat(hist, 1 + n_neg, axis=0), tgt, lab


def train_din(model: DIN, hist: np.ndarray, target: np.ndarray, label: np.ndarray, *, seed: int, epochs: int, batch_size: int, lr: float,
              lr_schedule: str = "constant", valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, patience: int = 0) -> DIN:
    """Binary cross-entropy training with Adam; returns the model in eval mode.

    ``valid`` = (hist, target, label) validation rows: their BCE is recorded per epoch and, with ``patience`` > 0,
    stops training early (:func:`~lgsid.evaluate.training.train_minibatches`).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    H, T, Y = torch.from_numpy(hist), torch.from_numpy(target), torch.from_numpy(label)
    vloss = None
    if valid is not None and len(valid[2]):
        Hv, Tv, Yv = (torch.from_numpy(np.asarray(a)) for a in valid)

        def vloss() -> float:
            return float(sum(loss_fn(model(Hv[s:s + 8192], Tv[s:s + 8192]), Yv[s:s + 8192]) * len(Yv[s:s + 8192]) for s in range(0, len(Yv), 8192)) / len(Yv))
    return train_minibatches(model, opt, len(label), lambda bi: loss_fn(model(H[bi], T[bi]), Y[bi]),
                             epochs=epochs, batch_size=batch_size, rng=rng, lr_schedule=lr_schedule, valid_loss=vloss, patience=patience)


@torch.no_grad()
def predict(model: DIN, hist: np.ndarray, target: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Click probabilities (M,) for (hist (M, H), target (M,))."""
    out = [torch.sigmoid(model(torch.from_numpy(hist[s:s + batch_size]), torch.from_numpy(target[s:s + batch_size]))).numpy()
           for s in range(0, len(target), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)
