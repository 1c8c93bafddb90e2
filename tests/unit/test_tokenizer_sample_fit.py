"""A fit on a sample of the catalogue (``tokenizer.fit_sample``): codebooks sized for the catalogue's N, not the sample's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lgsid.config import TokenizerConfig, load_config, replace
from lgsid.errors import ValidationError
from lgsid.tokenizer import build_tokenizer
from lgsid.tokenizer.hgit import fill_centres, fill_shapes, fit_local_level, local_encode
from lgsid.tokenizer.toy import toy_catalogue

torch.set_num_threads(1)


def _collision(codes: np.ndarray) -> float:
    return 1.0 - len(np.unique(codes, axis=0)) / len(codes)


def _sample(items, emb, n: int):
    idx = np.sort(np.random.default_rng(0).choice(len(emb), n, replace=False))
    return items.iloc[idx].reset_index(drop=True), emb[idx]


def test_codebook_sizes_come_from_n_catalogue():
    items, emb = toy_catalogue(300, 8, seed=1)
    cfg = TokenizerConfig(kind="rqkmeans", codebook_sizes=[4, 4, 4], items_per_prefix=1.0)
    # 300 items: K1*K2 >= 300, doubling the smaller prefix level: 4x4 -> 8x4 -> 8x8 -> 16x8 -> 16x16 -> 32x16 (512)
    assert build_tokenizer(cfg).fit(emb, items).codebook_sizes == [32, 16, 4]
    tok = build_tokenizer(cfg)
    tok.n_catalogue = 3000  # ... -> 32x32 -> 64x32 -> 64x64 (4,096 >= 3,000), fitted on the 300 rows
    tok.fit(emb, items)
    assert tok.codebook_sizes == [64, 64, 4] and tok.cfg.codebook_sizes == [64, 64, 4]
    assert [s[0] for s in tok.codebook_shapes()] == [64, 64, 4]
    assert tok.encode(emb, items)[:, :2].max() < 64


def test_sample_too_small_for_the_catalogues_codebooks_names_fit_sample():
    items, emb = toy_catalogue(300, 8, seed=1)
    tok = build_tokenizer(TokenizerConfig(codebook_sizes=[4, 4, 4], items_per_prefix=1.0, epochs=1))
    # HGIT: level 1 doubles while its clusters keep K_L / 4 = 1 sampled row: 4 x 300 / (2 K1) >= 4 up to K1 = 128 -> 256;
    # then level 2 doubles until 256 x K2 >= 300,000: 2,048 codes > 300 rows
    tok.n_catalogue = 300_000
    with pytest.raises(ValidationError, match=r"^tokenizer.fit_sample: 300 sampled items cannot fill the codebooks of sizes \[256, 2048, 4\]"):
        tok.fit(emb, items)
    tok.n_catalogue = 299
    with pytest.raises(ValidationError, match=r"n_catalogue=299 is below the 300 items fitted"):
        tok.fit(emb, items)


def test_check_fit_sample_sizes_for_the_catalogue():
    import lgsid.tokenizer.job as job

    cfg = replace(load_config(None), tokenizer={"codebook_sizes": [64, 64, 64], "items_per_prefix": 1.0, "fit_sample": 10_000})
    # HGIT at 1M items on 10,000 rows: level 1 doubles while 4 x 10,000 / (2 K1) >= 64, to 512; then level 2 while
    # 512 x K2 < 1e6, to 2,048 (<= 10,000: fits). On 1,000 rows level 1 stays 64 (4,000 / 128 < 64) and level 2 needs 16,384.
    with pytest.raises(ValidationError, match=r"^tokenizer.fit_sample=1000 is below the largest codebook \(16384 codes; sizes \[64, 16384, 64\] for the catalogue's 1,000,000 items\); raise it$"):
        job.check_fit_sample(replace(cfg, tokenizer={"fit_sample": 1000}), n_items=10**6, dim=4, driver_bytes=1 << 40)
    assert job.check_fit_sample(cfg, n_items=10**6, dim=4, driver_bytes=1 << 40) == 10_000
    assert job.check_fit_sample(cfg, n_items=10_000, dim=4, driver_bytes=1 << 40) == 10_000  # the whole catalogue: no sample
    rq = replace(cfg, tokenizer={"kind": "rqkmeans"})  # shared levels: 1,024 x 1,024 prefixes
    assert job.check_fit_sample(rq, n_items=10**6, dim=4, driver_bytes=1 << 40) == 10_000


@pytest.mark.parametrize("kind", ["hgit", "rqkmeans"])
def test_whole_catalogue_fit_is_unchanged_by_n_catalogue(kind):
    """n_catalogue = the rows fitted is a fit on the whole catalogue: exactly the codes and codebooks of a plain fit."""
    items, emb = toy_catalogue(400, 8, seed=2)
    cfg = TokenizerConfig(kind=kind, codebook_sizes=[4, 4, 4], items_per_prefix=1.0, epochs=1, batch_size=64)
    plain = build_tokenizer(cfg).fit(emb, items)
    whole = build_tokenizer(cfg)
    whole.n_catalogue = len(emb)
    whole.fit(emb, items)
    assert whole.codebook_sizes == plain.codebook_sizes
    np.testing.assert_array_equal(whole.encode(emb, items), plain.encode(emb, items))
    a, b = plain.state()[0], whole.state()[0]
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_fill_shapes_and_centres_by_hand():
    # cluster 0: rows (0,0), (2,0): mean (1,0), RMS distance 1; cluster 1: one row (5,5) -> the median spread (1)
    r = np.array([[0, 0], [2, 0], [5, 5]], dtype=np.float32)
    c1 = np.array([0, 0, 1])
    shapes, mu, spread = fill_shapes(r, c1, k1=3, k=4, seed=0)
    np.testing.assert_allclose(mu, [[1, 0], [5, 5], [0, 0]])
    np.testing.assert_allclose(spread, [1, 1, 1])
    # the standardised deviations of cluster 0 are (-1,0) and (1,0): 2 distinct, so 2 shapes
    np.testing.assert_allclose(sorted(shapes.tolist()), [[-1, 0], [1, 0]])
    cen = fill_centres(mu[1], 2.0, np.array([[-1, 0], [1, 0]], np.float32), 2, c=1)  # from shape 1 mod 2 on
    np.testing.assert_allclose(cen, [[7, 5], [3, 5]])


def test_filled_local_level_spreads_unseen_members_over_k_codes():
    """A cluster with 1 sampled row: without fill its unseen members all take that row's code; with fill they spread."""
    rng = np.random.default_rng(0)
    big = rng.standard_normal((40, 2)).astype(np.float32)  # cluster 0: 40 sampled rows (>= k: k-means either way)
    one = np.array([[10.0, 10.0]], np.float32)  # cluster 1: one sampled row
    r, c1 = np.concatenate([big, one]), np.array([0] * 40 + [1])
    unseen = (10.0 + rng.standard_normal((200, 2))).astype(np.float32)  # cluster 1's catalogue members
    plain = fit_local_level(r, c1, k1=2, k=4, seed=0)
    filled = fit_local_level(r, c1, k1=2, k=4, seed=0, fill=True)
    np.testing.assert_array_equal(filled[:, 0], plain[:, 0])  # a cluster with k sampled rows keeps its k-means centres
    assert len(set(local_encode(unseen, np.ones(200, int), plain).tolist())) == 1
    assert len(set(local_encode(unseen, np.ones(200, int), filled).tolist())) == 4


def test_sampled_fit_collides_far_less_than_sample_sized_codebooks():
    """2,000 items, a 500-item sample (the 4:1 of 200k out of 800k).

    A whole fit gives every member of a level-1 cluster (about K_L = 8 items) its own local centre.
    A sample fit sizes the codebooks for the 2,000 items, but its level 1 grows only while each
    cluster keeps K_L / 4 = 2 sampled rows (4 x 500 / (2 K1) >= 8: K1 = 128, then K2 = 16 so that
    128 x 16 >= 2,000), so the local codebooks hold at most 4 x the sampled rows (128 x 8 <= 2,000),
    not one centre per catalogue item: the model stays the size of the sample. It must collide
    clearly less (by 0.1) than codebooks sized for the 500 sampled items (measured here: whole
    0.144, sizes of N 0.532, sizes of n 0.672).
    """
    items, emb = toy_catalogue(2000, 16, seed=5)
    s_items, s_emb = _sample(items, emb, 500)
    cfg = TokenizerConfig(codebook_sizes=[8, 8, 8], items_per_prefix=1.0, epochs=2, batch_size=256)
    rates, sizes = {}, {}
    for name, (fi, fe, n_cat) in {"whole": (items, emb, None), "n": (s_items, s_emb, None), "N": (s_items, s_emb, 2000)}.items():
        tok = build_tokenizer(cfg)
        tok.n_catalogue = n_cat
        tok.fit(fe, fi)
        rates[name], sizes[name] = _collision(tok.encode(emb, items)), tok.codebook_sizes
    assert sizes == {"whole": [256, 8, 8], "n": [64, 8, 8], "N": [128, 16, 8]}
    assert rates["whole"] < rates["N"] <= rates["n"] - 0.1, rates
