"""HGIT: Eq. 9–16 on hand-computed cases, frozen level-1 centres, the KL usage regulariser."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lgsid.config import TokenizerConfig
from lgsid.errors import ModelError, ValidationError
from lgsid.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer
from lgsid.tokenizer.base import nearest_centre, residual_encode, scaled_codebook_sizes
from lgsid.tokenizer.features import check_features, clustering_feature, geo_unit_vector, stable_id_vector
from lgsid.tokenizer.health import level_stats
from lgsid.tokenizer.hgit import (
    assign_codes,
    hgit_loss,
    kl_to_uniform,
    level1_centres,
    quantise,
    reconstruction_loss,
    residual_update,
    soft_code_usage,
    train_residual_codebooks,
)
from lgsid.tokenizer.toy import toy_catalogue

torch.set_num_threads(1)


def t(a):
    return torch.tensor(a, dtype=torch.float32)


# ------------------------------------------------------------------ Eq. 9
def test_eq9_clustering_feature_concatenates_weighted_parts():
    F = clustering_feature(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0, 1.0]]), np.array([[3.0]]), np.array([[4.0, 5.0]]),
                           w_admin=2.0, w_geo=10.0, w_cat=0.5, w_brand=1.0)
    np.testing.assert_allclose(F, [[2.0, 4.0, 0.0, 0.0, 10.0, 1.5, 4.0, 5.0]])


def test_geo_unit_vector_hand_values():
    g = geo_unit_vector(np.array([0.0, 0.0, 90.0]), np.array([0.0, 90.0, 0.0]))
    np.testing.assert_allclose(g, [[1, 0, 0], [0, 1, 0], [0, 0, 1]], atol=1e-12)


def test_geo_extent_and_scaled_vector_hand_values():
    from lgsid.tokenizer.features import geo_extent, scaled_geo_vector

    lat, lon = np.array([0.0, 0.0]), np.array([0.0, 90.0])  # xyz (1,0,0) and (0,1,0)
    c, s = geo_extent(lat, lon)
    np.testing.assert_allclose(c, [0.5, 0.5, 0.0], atol=1e-12)  # centroid
    assert s == pytest.approx(math.sqrt(0.5))  # each point is sqrt(0.25 + 0.25) from it
    h = math.sqrt(0.5)
    np.testing.assert_allclose(scaled_geo_vector(lat, lon, c, s), [[h, -h, 0.0], [-h, h, 0.0]], atol=1e-12)
    assert geo_extent(np.array([33.4, 33.4]), np.array([-112.0, -112.0]))[1] == 1e-9  # one place: floored, finite


def _city(n_per: int = 12):
    """Two categories in each of two neighbourhoods 6 km apart (same town): 4 groups of n_per items."""
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for hood, lon0 in enumerate((-112.10, -112.035)):
        for cat in ("Food", "Shops"):
            for i in range(n_per):
                rows.append({"item_id": f"{hood}{cat}{i}", "lat": 33.45 + rng.normal(0, 0.003), "lon": lon0 + rng.normal(0, 0.003),
                             "state": "Arizona", "county": "Maricopa", "town": "Phoenix", "category_l1": cat, "category_l2": cat + " x", "brand": None,
                             "hood": hood})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("geo_scale,groups_by", [("extent", "hood"), ("sphere", "category_l1")])
def test_level1_groups_a_city_by_place_only_when_geo_is_scaled_to_its_extent(geo_scale, groups_by):
    items = _city()
    emb = np.random.default_rng(1).standard_normal((len(items), 8)).astype(np.float32)
    tok = build_tokenizer(TokenizerConfig(kind="hgit", codebook_sizes=[2, 4], epochs=1, geo_scale=geo_scale, seed=0)).fit(emb, items)
    c1 = tok.encode(emb, items)[:, 0]
    pure = items.assign(c1=c1).groupby("c1")[groups_by].nunique()
    assert (pure == 1).all() and len(pure) == 2  # each level-1 code holds exactly one neighbourhood (extent) / one category (sphere)


def test_saved_hgit_keeps_its_geo_extent(tmp_path):
    items = _city(4)
    emb = np.random.default_rng(2).standard_normal((len(items), 8)).astype(np.float32)
    tok = build_tokenizer(TokenizerConfig(kind="hgit", codebook_sizes=[2, 4], epochs=1, seed=0)).fit(emb, items)
    back = load_tokenizer(save_tokenizer(tok, str(tmp_path / "t")))
    np.testing.assert_allclose(back.featurizer.geo_centre, tok.featurizer.geo_centre)
    assert back.featurizer.geo_scale == tok.featurizer.geo_scale
    far = items.head(3).assign(lat=40.0, lon=-75.0)  # new items elsewhere: scaled by the fitted extent, not their own
    np.testing.assert_array_equal(back.encode(emb[:3], far), tok.encode(emb[:3], far))


def test_id_vectors_are_stable_across_processes():
    here = stable_id_vector("Texas|County0", 8, "admin")
    code = "from lgsid.tokenizer.features import stable_id_vector as s; print(list(s('Texas|County0', 8, 'admin')))"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    np.testing.assert_allclose(json.loads(out), here)
    assert not np.allclose(here, stable_id_vector("Texas|County0", 8, "brand"))  # namespaces differ


def test_check_features_names_item_with_null_coordinate():
    items, _ = toy_catalogue(5, 4)
    items.loc[2, "lat"] = np.nan
    with pytest.raises(ValidationError, match=r"null in column 'lat' for item\(s\) \['item000002'\]"):
        check_features(items)


# ------------------------------------------------------------------ Eq. 10-16
def test_eq10_assign_nearest_centre():
    r = t([[0.0, 0.0], [2.0, 2.0], [0.9, 0.1]])
    centres = t([[1.0, 0.0], [2.0, 3.0]])
    assert assign_codes(r, centres).tolist() == [0, 1, 0]


def test_eq11_eq12_quantise_and_residual():
    centres = t([[1.0, 0.0], [2.0, 3.0]])
    q = quantise(centres, torch.tensor([1, 0]))
    assert q.tolist() == [[2.0, 3.0], [1.0, 0.0]]
    assert residual_update(t([[2.5, 3.0], [0.0, 1.0]]), q).tolist() == [[0.5, 0.0], [-1.0, 1.0]]


def test_eq13_reconstruction_loss():
    # rows: ||(1,2)||^2 = 5 and ||(0,1)||^2 = 1 -> mean 3
    assert reconstruction_loss(t([[1.0, 2.0], [1.0, 1.0]]), t([[0.0, 0.0], [1.0, 0.0]])).item() == pytest.approx(3.0)


def test_eq14_soft_usage_hand_computed():
    # one row at the origin, centres at distance^2 0 and 1, tau = 1: softmax(0, -1)
    p = soft_code_usage(t([[0.0, 0.0]]), t([[0.0, 0.0], [1.0, 0.0]]), tau=1.0)
    e = math.exp(-1.0)
    np.testing.assert_allclose(p.numpy(), [1 / (1 + e), e / (1 + e)], rtol=1e-6)
    # two rows, each exactly on one centre with a large gap: usage is (1/2, 1/2)
    p2 = soft_code_usage(t([[0.0, 0.0], [10.0, 0.0]]), t([[0.0, 0.0], [10.0, 0.0]]), tau=1.0)
    np.testing.assert_allclose(p2.numpy(), [0.5, 0.5], atol=1e-6)


def test_eq15_kl_to_uniform():
    assert kl_to_uniform(t([0.5, 0.5])).item() == pytest.approx(0.0, abs=1e-7)
    assert kl_to_uniform(t([1.0, 0.0])).item() == pytest.approx(math.log(2), rel=1e-6)
    assert kl_to_uniform(t([0.75, 0.25])).item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-6)


def test_eq16_total_loss():
    assert hgit_loss(t(2.0), [t(0.3), t(0.1)], 0.5).item() == pytest.approx(2.2)
    assert hgit_loss(t(2.0), [], 0.5).item() == pytest.approx(2.0)


def test_batched_residual_encode_matches_per_level_equations():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    cbs = [rng.standard_normal((5, 6)).astype(np.float32), rng.standard_normal((3, 6)).astype(np.float32)]
    codes, final = residual_encode(x, cbs)
    r = t(x)
    for l, cb in enumerate(cbs):  # naive reference: Eq. 10-12 level by level
        c = assign_codes(r, t(cb))
        assert codes[:, l].tolist() == c.tolist()
        r = residual_update(r, quantise(t(cb), c))
    np.testing.assert_allclose(final, r.numpy(), atol=1e-5)


# ------------------------------------------------------------------ training
def test_level1_centres_are_member_means():
    x = np.array([[0.0, 0.0], [2.0, 2.0], [5.0, 1.0]], dtype=np.float32)
    mu = level1_centres(x, np.array([0, 0, 2]), 3)
    np.testing.assert_allclose(mu, [[1.0, 1.0], [7 / 3, 1.0], [5.0, 1.0]], rtol=1e-6)  # empty cluster 1 -> global mean


def test_level1_centres_stay_frozen_during_residual_training():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 4)).astype(np.float32)
    base = rng.standard_normal((128, 4)).astype(np.float32)
    base_before = base.copy()
    init = [rng.standard_normal((4, 4)).astype(np.float32)]
    cbs, hist = train_residual_codebooks(x, base, [c.copy() for c in init], tau=1.0, lambda_reg=0.1, epochs=3, lr=0.05, batch_size=32, seed=0)
    np.testing.assert_array_equal(base, base_before)
    assert not np.allclose(cbs[0], init[0])  # the learnable level did move
    assert len(hist["loss"]) == 3


def test_hgit_fit_keeps_mu1_equal_to_member_means_after_training():
    items, emb = toy_catalogue(300, 12, seed=3)
    cfg = TokenizerConfig(codebook_sizes=[6, 4, 4], epochs=3, batch_size=64)
    tok = build_tokenizer(cfg).fit(emb, items)
    codes = tok.encode(emb, items)
    np.testing.assert_allclose(tok.mu1, level1_centres(emb, codes[:, 0], 6), atol=1e-5)
    # level 1 comes from the clustering feature only: same attributes -> same code, whatever the embedding
    same = items.iloc[[0]].copy()
    assert tok.encode(emb[[5]], same)[0, 0] == tok.encode(emb[[0]], same)[0, 0]


def test_kl_regulariser_raises_usage_on_collapsing_toy():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (256, 4)).astype(np.float32)
    base = np.zeros_like(x)
    # one centre on the data, seven far away: they never win an argmin, so reconstruction alone never moves them
    init = np.concatenate([np.zeros((1, 4)), 6.0 + rng.normal(0, 0.1, (7, 4))]).astype(np.float32)
    usage = {}
    for lam in (0.0, 1.0):
        cbs, _ = train_residual_codebooks(x, base, [init.copy()], tau=20.0, lambda_reg=lam, epochs=30, lr=0.1, batch_size=64, seed=0)
        usage[lam] = level_stats(nearest_centre(x, cbs[0]), 8)["usage"]
    assert usage[0.0] == pytest.approx(1 / 8)
    assert usage[1.0] > 0.5


# ------------------------------------------------------------------ interface, persistence, errors
def test_unknown_kind_lists_valid_ones():
    with pytest.raises(ValueError, match="valid kinds: hgit, rqvae, rqkmeans"):
        build_tokenizer(TokenizerConfig(), "vqvae")


def test_save_load_roundtrip_and_shape_check(tmp_path):
    items, emb = toy_catalogue(200, 8, seed=1)
    tok = build_tokenizer(TokenizerConfig(codebook_sizes=[4, 4], epochs=1)).fit(emb, items)
    path = save_tokenizer(tok, str(tmp_path / "tok"))
    np.testing.assert_array_equal(load_tokenizer(path).encode(emb, items), tok.encode(emb, items))
    header = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    header["config"]["codebook_sizes"] = [4, 5]
    (tmp_path / "tok" / "tokenizer.json").write_text(json.dumps(header))
    with pytest.raises(ModelError, match=r"codebook of level 2 has shape \(4, 8\) but tokenizer.codebook_sizes\[1\]=5"):
        load_tokenizer(path)


def test_encode_rejects_wrong_dimension_and_nan():
    items, emb = toy_catalogue(100, 8, seed=2)
    tok = build_tokenizer(TokenizerConfig(codebook_sizes=[4, 4], epochs=1)).fit(emb, items)
    with pytest.raises(ValidationError, match="dimension 9 does not match the tokenizer's fitted dimension 8"):
        tok.encode(np.zeros((100, 9), np.float32), items)
    bad = emb.copy()
    bad[7, 0] = np.nan
    with pytest.raises(ValidationError, match=r"NaN/inf for item\(s\) \['item000007'\]"):
        tok.encode(bad, items)


def test_fit_rejects_codebook_larger_than_catalogue():
    items, emb = toy_catalogue(10, 4)
    with pytest.raises(ValidationError, match="cannot fill codebooks"):
        build_tokenizer(TokenizerConfig(codebook_sizes=[16, 4], epochs=1)).fit(emb, items)


def test_fast_residual_tables_match_explicit_residuals():
    from lgsid.tokenizer.base import ResidualTables

    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    mu = rng.standard_normal((5, 8)).astype(np.float32)
    c1 = rng.integers(0, 5, 300)
    cbs = [rng.standard_normal((6, 8)).astype(np.float32), 0.5 * rng.standard_normal((4, 8)).astype(np.float32)]
    slow, _ = residual_encode(x - mu[c1], cbs)
    np.testing.assert_array_equal(ResidualTables(cbs, mu).encode(x, c1), slow)
    np.testing.assert_array_equal(ResidualTables(cbs).encode(x), residual_encode(x, cbs)[0])


def test_featurizer_over_distinct_combinations_matches_per_row_reference():
    from lgsid.tokenizer.features import ClusteringFeaturizer, composite_embedding, hierarchy_keys

    items, _ = toy_catalogue(200, 4, seed=6)
    items.loc[3, "brand"] = None
    items.loc[4, "category_l1"] = None
    fz = ClusteringFeaturizer({"admin": 1.0, "geo": 2.0, "cat": 0.5, "brand": 0.25}, 6)
    ref = clustering_feature(
        composite_embedding(hierarchy_keys(items, ("state", "county", "town")), fz._admin),
        geo_unit_vector(items["lat"], items["lon"]),
        composite_embedding(hierarchy_keys(items, ("category_l1", "category_l2")), fz._cat),
        composite_embedding(hierarchy_keys(items, ("brand",)), fz._brand),
        w_admin=1.0, w_geo=2.0, w_cat=0.5, w_brand=0.25,
    )
    np.testing.assert_allclose(fz(items), ref)


def test_featurizer_and_level1_codes_in_row_chunks_equal_one_pass(monkeypatch):
    # F and the level-1 codes are built in row chunks of CHUNK_BYTES: tiny chunks (7 and 2 rows) give the same rows
    from lgsid.tokenizer import base
    from lgsid.tokenizer.features import ClusteringFeaturizer
    from lgsid.tokenizer.hgit import HGITTokenizer

    items, _ = toy_catalogue(200, 4, seed=6)
    fz = ClusteringFeaturizer({"admin": 1.0, "geo": 2.0, "cat": 0.5, "brand": 0.25}, 6)
    whole = fz(items)
    tok = HGITTokenizer(TokenizerConfig(codebook_sizes=[8, 4, 4]))
    tok.featurizer, tok.feature_centres = fz, whole[::25]
    codes = tok.level1_codes(items)
    np.testing.assert_array_equal(codes, np.linalg.norm(whole[:, None] - whole[None, ::25], axis=2).argmin(axis=1))
    monkeypatch.setattr(base, "CHUNK_BYTES", 7 * 2 * fz.dim * 8)
    np.testing.assert_array_equal(fz(items), whole)
    np.testing.assert_array_equal(tok.level1_codes(items), codes)


# ------------------------------------------------------------------ codebooks that separate items


def test_reseed_dead_hand_computed():
    from lgsid.tokenizer.hgit import reseed_dead

    r = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [5.0, 0.0]])
    centres = np.array([[0.0, 0.0], [9.0, 9.0], [8.0, 8.0]])
    codes = np.array([0, 0, 0, 0])  # codes 1 and 2 dead; errors 0, 1, 25, 25
    new, dead = reseed_dead(r, centres, codes)
    np.testing.assert_array_equal(dead, [1, 2])
    np.testing.assert_array_equal(new, [[0, 0], [5, 0], [5, 0]])  # rows 2 and 3 (tie: lower row first)
    same, none = reseed_dead(r, centres, np.array([0, 1, 2, 2]))
    assert none.size == 0 and same is centres


def test_reseeding_revives_codes_that_reconstruction_never_moves():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (256, 4)).astype(np.float32)
    init = np.concatenate([np.zeros((1, 4)), 6.0 + rng.normal(0, 0.1, (7, 4))]).astype(np.float32)
    kw = dict(tau=20.0, lambda_reg=0.0, epochs=5, lr=0.1, batch_size=64, seed=0)
    plain, _ = train_residual_codebooks(x, np.zeros_like(x), [init.copy()], **kw)
    cbs, hist = train_residual_codebooks(x, np.zeros_like(x), [init.copy()], reseed=True, **kw)
    assert level_stats(nearest_centre(x, plain[0]), 8)["usage"] == pytest.approx(1 / 8)
    assert level_stats(nearest_centre(x, cbs[0]), 8)["usage"] == 1.0
    assert hist["reseeded"][0] == 7


def test_local_slots_example():
    from lgsid.tokenizer.hgit import local_slots

    assert [s.tolist() for s in local_slots([3, 2, 0, 2], 4)] == [[0, 1, 2], [3, 0], [], [1, 2]]


def test_local_level_gives_each_distinct_row_its_own_code():
    from lgsid.tokenizer.hgit import fit_local_level, local_encode

    r = np.array([[0, 0], [1, 0], [1, 0], [0, 5], [3, 3], [3, 4]], dtype=np.float32)
    c1 = np.array([0, 0, 0, 0, 1, 1])
    local = fit_local_level(r, c1, k1=3, k=4, seed=0)
    assert local.shape == (4, 3, 2)
    codes = local_encode(r, c1, local)
    assert codes[1] == codes[2] and len({codes[0], codes[1], codes[3]}) == 3  # identical rows share, distinct rows do not
    # cluster 0's 3 distinct rows (in row order [0,0] < [0,5] < [1,0]) take slots 0..2; cluster 1
    # continues at slot 3 ([3,3]) and wraps to slot 0 ([3,4])
    assert codes.tolist() == [0, 2, 2, 1, 3, 0]
    np.testing.assert_array_equal(local[codes, c1], r)  # each row is its own centre: exact reconstruction
    # more distinct rows than codes: k-means with k centres, every slot used
    many = fit_local_level(r[:4], np.zeros(4, int), k1=1, k=2, seed=0)
    assert set(local_encode(r[:4], np.zeros(4, int), many).tolist()) == {0, 1}


def test_hgit_local_level_collisions_only_from_identical_embeddings(tmp_path):
    items, emb = toy_catalogue(240, 12, seed=4)
    emb = emb.copy()
    emb[200:220] = emb[0:20]  # 20 items repeat another item's embedding (same attributes too)
    items = items.copy()
    for c in ("lat", "lon", "state", "county", "town", "category_l1", "category_l2", "brand"):
        items.loc[200:219, c] = items.loc[0:19, c].to_numpy()
    cfg = TokenizerConfig(codebook_sizes=[4, 4, 64], epochs=2, batch_size=64)
    tok = build_tokenizer(cfg).fit(emb, items)
    codes = tok.encode(emb, items)
    assert tok.codebook_shapes()[-1] == (64, 4, 12)
    n_distinct_emb = len(np.unique(emb, axis=0))
    assert len(np.unique(codes, axis=0)) == n_distinct_emb  # 240 items, 220 distinct: collision rate 20/240
    shared = build_tokenizer(TokenizerConfig(codebook_sizes=[4, 4, 64], epochs=2, batch_size=64, local_last_level=False)).fit(emb, items)
    assert len(np.unique(shared.encode(emb, items), axis=0)) < n_distinct_emb
    np.testing.assert_allclose(tok.reconstruct(codes), tok.reconstruct(codes))  # well-defined
    path = save_tokenizer(tok, str(tmp_path / "tok"))
    back = load_tokenizer(path)
    np.testing.assert_array_equal(back.encode(emb, items), codes)
    np.testing.assert_allclose(back.reconstruct(codes), tok.reconstruct(codes))


def test_scaled_codebook_sizes_by_hand():
    # L >= 3: prefixes K1*K2 >= n / rho, doubling the smaller prefix level (level 1 on ties)
    assert scaled_codebook_sizes([64, 64, 64], 4096, 1.0) == [64, 64, 64]
    assert scaled_codebook_sizes([64, 64, 64], 4097, 1.0) == [128, 64, 64]  # 8,192 prefixes
    assert scaled_codebook_sizes([64, 64, 64], 10_000, 1.0) == [128, 128, 64]  # 16,384
    assert scaled_codebook_sizes([64, 64, 64], 100_000, 1.0) == [512, 256, 64]  # 131,072
    assert scaled_codebook_sizes([8, 4, 4], 100, 2.0) == [8, 8, 4]  # 64 >= 50
    # HGIT's local deepest level: level 1 first while its mean cluster holds more than K_L items
    assert scaled_codebook_sizes([64, 64, 64], 3000, 1.0, local_last=True) == [64, 64, 64]
    assert scaled_codebook_sizes([64, 64, 64], 10_000, 1.0, local_last=True) == [256, 64, 64]  # 39 items per level-1 code
    assert scaled_codebook_sizes([64, 64, 64], 100_000, 1.0, local_last=True) == [2048, 64, 64]  # 49
    assert scaled_codebook_sizes([64, 64], 10_000, 1.0, local_last=True) == [256, 64]  # no local level with 2 levels
    # two levels: level 1 grows until K1*K2 >= n / rho
    assert scaled_codebook_sizes([64, 64], 10_000, 1.0) == [256, 64]
    # off, or one level: unchanged
    assert scaled_codebook_sizes([64, 64, 64], 100_000, 0.0) == [64, 64, 64]
    assert scaled_codebook_sizes([64], 10**6, 1.0) == [64]


def test_fit_with_items_per_prefix_records_the_grown_sizes(tmp_path):
    items, emb = toy_catalogue(300, 12, seed=3)
    tok = build_tokenizer(TokenizerConfig(codebook_sizes=[4, 4, 4], items_per_prefix=10.0, epochs=1, batch_size=64)).fit(emb, items)
    # 300 items: level 1 doubles while 300 / K1 > K_L = 4 (local deepest level) or prefixes < 30: 4 -> 8 (32 prefixes)
    assert tok.codebook_sizes == [8, 4, 4] and tok.cfg.codebook_sizes == [8, 4, 4]
    assert [s[0] for s in tok.codebook_shapes()] == [8, 4, 4]
    codes = tok.encode(emb, items)
    assert codes[:, 0].max() < 8 and codes[:, 1].max() < 4
    back = load_tokenizer(save_tokenizer(tok, str(tmp_path / "tok")))  # the saved config holds the grown sizes
    np.testing.assert_array_equal(back.encode(emb, items), codes)
