"""RQ-KMeans and RQ-VAE baselines: same interface and codebook sizes as HGIT, checked against references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lgsid.config import TokenizerConfig
from lgsid.tokenizer import TOKENIZERS, build_tokenizer, load_tokenizer, save_tokenizer
from lgsid.tokenizer.base import nearest_centre
from lgsid.tokenizer.rqvae import rq_straight_through
from lgsid.tokenizer.toy import toy_catalogue

torch.set_num_threads(1)
CFG = TokenizerConfig(codebook_sizes=[8, 4, 4], epochs=2, batch_size=128, rqvae_hidden=[32], rqvae_latent_dim=8)


@pytest.fixture(scope="module")
def data():
    return toy_catalogue(400, 16, seed=5)


@pytest.mark.parametrize("kind", list(TOKENIZERS))
def test_every_tokenizer_shares_the_interface(kind, data, tmp_path):
    items, emb = data
    tok = build_tokenizer(CFG, kind).fit(emb, items)
    codes = tok.encode(emb, items)
    assert codes.shape == (400, 3) and codes.dtype == np.int64
    for l, k in enumerate(CFG.codebook_sizes):
        assert codes[:, l].min() >= 0 and codes[:, l].max() < k
    assert [s[0] for s in tok.codebook_shapes()] == CFG.codebook_sizes
    again = load_tokenizer(save_tokenizer(tok, str(tmp_path / kind)))
    np.testing.assert_array_equal(again.encode(emb, items), codes)
    assert tok.reconstruct(codes).shape[0] == 400


def test_rqkmeans_levels_are_kmeans_on_residuals(data):
    items, emb = data
    tok = build_tokenizer(CFG, "rqkmeans").fit(emb, items)
    codes = tok.encode(emb, items)
    # naive per-row reference: nearest centre by explicit distances, level by level
    r = emb.astype(np.float64).copy()
    for l, cb in enumerate(tok.codebooks):
        d = ((r[:, None, :] - cb[None, :, :]) ** 2).sum(-1)
        np.testing.assert_array_equal(codes[:, l], d.argmin(1))
        r -= cb[codes[:, l]]
    # residual quantisation error shrinks with every level
    errs = [np.mean(np.sum((emb - sum(cb[codes[:, j]] for j, cb in enumerate(tok.codebooks[: l + 1]))) ** 2, 1)) for l in range(3)]
    assert errs[0] > errs[1] > errs[2]


def test_nearest_centre_matches_bruteforce():
    rng = np.random.default_rng(0)
    x, c = rng.standard_normal((64, 5)).astype(np.float32), rng.standard_normal((7, 5)).astype(np.float32)
    np.testing.assert_array_equal(nearest_centre(x, c), ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1))


def test_straight_through_passes_decoder_gradient_and_commitment():
    z = torch.tensor([[0.9, 0.0], [0.0, 2.1]], requires_grad=True)
    cbs = [torch.nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))]
    z_q, codes, loss = rq_straight_through(z, cbs, beta=0.25)
    assert codes.tolist() == [[0], [1]]
    np.testing.assert_allclose(z_q.detach().numpy(), [[1.0, 0.0], [0.0, 2.0]], atol=1e-6)
    # codebook + commitment: mean(0.01, 0.01) * (1 + 0.25)
    assert loss.item() == pytest.approx(0.01 * 1.25, rel=1e-4)
    z_q.sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), np.ones((2, 2)))  # identity gradient through the quantiser


def test_rqvae_numpy_encoder_matches_torch_training_layout(data):
    items, emb = data
    tok = build_tokenizer(CFG, "rqvae").fit(emb, items)
    assert tok.latent(emb).shape == (400, 8)
    assert len(tok.history["loss"]) == CFG.epochs and all(np.isfinite(tok.history["loss"]))
