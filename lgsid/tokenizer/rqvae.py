"""RQ-VAE baseline in the style of TIGER (Rajput et al., 2023).

Encoder MLP -> latent z -> residual quantisation over L codebooks (straight-through estimator,
codebook + commitment losses) -> decoder MLP reconstructing the embedding. Codebooks are
initialised with k-means on the first latents (as TIGER does). Inference (encode) runs the
encoder in NumPy and residual-quantises the latent, so the pyfunc needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

from lgsid.tokenizer.base import CodebookStackMixin, SIDTokenizer, check_embeddings, deterministic_torch, nearest_centre, residual_encode
from lgsid.tokenizer.hgit import assign_codes, kmeans_init, quantise, residual_update


def _mlp(sizes: list[int]) -> "nn.Sequential":
    from torch import nn

    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def rq_straight_through(z: torch.Tensor, codebooks: list[torch.Tensor], beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Residual quantisation with the straight-through estimator (TIGER / VQ-VAE losses).

    ``loss_rq = Σ_l ‖sg[r_l] − e_{c_l}‖² + β ‖r_l − sg[e_{c_l}]‖²``;
    ``z_q = z + sg[Σ_l e_{c_l} − z]`` passes the decoder's gradient to the encoder unchanged.

    Args:
        z: (B, d) latents. codebooks: L tensors (K_l, d). beta: commitment weight.

    Returns:
        (z_q (B, d), codes (B, L), loss_rq ()).
    """
    import torch

    r = z
    q_sum = torch.zeros_like(z)
    loss = z.new_zeros(())
    codes = []
    for cb in codebooks:
        c = assign_codes(r.detach(), cb.detach())
        q = quantise(cb, c)
        loss = loss + ((r.detach() - q) ** 2).sum(1).mean() + beta * ((r - q.detach()) ** 2).sum(1).mean()
        q_sum = q_sum + q
        r = residual_update(r, q.detach())
        codes.append(c)
    z_q = z + (q_sum - z).detach()
    return z_q, torch.stack(codes, 1), loss


def restart_dead_codes(enc, codebooks, x, generator, sample: int = 8192) -> int:
    """Re-seed codes no item of a sample uses with random residuals of that level (after each epoch).

    Without it the encoder's latents drift away from the k-means initialisation and most codes of a
    level die (level-1 usage ~8% on our toy catalogue). The restart is the usual VQ remedy
    (SoundStream, Jukebox); TIGER's paper relies on k-means initialisation only.

    Returns:
        Number of codes re-seeded over all levels.
    """
    import torch

    idx = torch.randperm(len(x), generator=generator)[:sample]
    restarted = 0
    with torch.no_grad():
        r = enc(x[idx])
        for cb in codebooks:
            from lgsid.tokenizer.hgit import assign_codes

            c = assign_codes(r, cb)
            dead = torch.nonzero(torch.bincount(c, minlength=cb.shape[0]) == 0).flatten()
            if len(dead):
                pick = torch.randint(0, len(r), (len(dead),), generator=generator)
                cb.data[dead] = r[pick]
                restarted += len(dead)
                c = assign_codes(r, cb)
            r = r - cb[c]
    return restarted


class RQVAETokenizer(CodebookStackMixin, SIDTokenizer):
    """TIGER-style RQ-VAE with ``tokenizer.codebook_sizes`` codebooks over a learned latent."""

    kind = "rqvae"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.enc_weights: list[tuple[np.ndarray, np.ndarray]] = []
        self.codebooks: list[np.ndarray] = []

    @deterministic_torch()  # the same codebooks at any thread count, as HGIT's
    def fit(self, embeddings: np.ndarray, features: pd.DataFrame | None = None, progress: bool = False) -> "RQVAETokenizer":
        import torch
        from torch import nn
        from tqdm.auto import tqdm

        x = self._fit_input(embeddings, features)
        torch.manual_seed(self.cfg.seed)
        sizes = [self.dim, *[int(h) for h in self.cfg.rqvae_hidden], int(self.cfg.rqvae_latent_dim)]
        enc, dec = _mlp(sizes), _mlp(sizes[::-1])
        xt = torch.as_tensor(x)
        with torch.no_grad():
            r = enc(xt[: min(len(xt), 20000)]).numpy()
        cbs = []
        for l, k in enumerate(self.codebook_sizes):
            cb = kmeans_init(r, k, self.cfg.seed + l)
            r = r - cb[nearest_centre(r, cb)]
            cbs.append(nn.Parameter(torch.as_tensor(cb)))
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), *cbs], lr=self.cfg.rqvae_lr)
        g = torch.Generator().manual_seed(self.cfg.seed)
        hist: dict[str, list[float]] = {"loss": [], "rec": []}
        n = len(xt)
        for _ in tqdm(range(self.cfg.epochs), desc="rqvae", disable=not progress):
            perm = torch.randperm(n, generator=g)
            tot, trec = 0.0, 0.0
            for s in range(0, n, self.cfg.batch_size):
                xb = xt[perm[s : s + self.cfg.batch_size]]
                z_q, _, lrq = rq_straight_through(enc(xb), cbs, self.cfg.rqvae_beta)
                rec = ((dec(z_q) - xb) ** 2).sum(1).mean()
                loss = rec + lrq
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * len(xb) / n
                trec += float(rec.detach()) * len(xb) / n
            hist["loss"].append(tot)
            hist["rec"].append(trec)
            hist["dead_codes"] = hist.get("dead_codes", []) + [float(restart_dead_codes(enc, cbs, xt, g))]
        self.history = hist
        self.enc_weights = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in enc if isinstance(m, nn.Linear)]
        self.codebooks = [c.detach().numpy().astype(np.float32) for c in cbs]
        self.fitted = True
        return self

    def latent(self, x: np.ndarray) -> np.ndarray:
        """Encoder forward in NumPy: (N, D) -> (N, d)."""
        h = x
        for i, (w, b) in enumerate(self.enc_weights):
            h = h @ w + b
            if i < len(self.enc_weights) - 1:
                np.maximum(h, 0, out=h)
        return h.astype(np.float32)

    def encode(self, embeddings: np.ndarray, features: pd.DataFrame | None = None) -> np.ndarray:
        self._require_fitted()
        ids = features.get("item_id") if features is not None else None
        codes, _ = residual_encode(self.latent(check_embeddings(embeddings, self.dim, ids=ids)), self.codebooks)
        return codes

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {f"codebook_{l + 1}": c for l, c in enumerate(self.codebooks)}
        for i, (w, b) in enumerate(self.enc_weights):
            arrays[f"enc_w{i}"], arrays[f"enc_b{i}"] = w, b
        return arrays, {"history": self.history}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        n_cb = sum(1 for k in arrays if k.startswith("codebook_"))
        n_w = sum(1 for k in arrays if k.startswith("enc_w"))
        self.codebooks = [arrays[f"codebook_{l}"] for l in range(1, n_cb + 1)]
        self.enc_weights = [(arrays[f"enc_w{i}"], arrays[f"enc_b{i}"]) for i in range(n_w)]
        self.history = dict(meta.get("history", {}))
