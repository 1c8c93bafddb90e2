"""Code alignment across refits (lgsid.tokenizer.align): hand-built permuted codebooks map back to the identity."""

from __future__ import annotations

import numpy as np
import pytest

from lgsid.config import TokenizerConfig
from lgsid.errors import ValidationError
from lgsid.tokenizer import build_tokenizer
from lgsid.tokenizer.align import align_to_reference, fit_aligned, match_codes, permute_rows
from lgsid.tokenizer.base import nearest_centre
from lgsid.tokenizer.toy import toy_catalogue

REF = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


def test_permuted_centres_give_identity_codes_after_alignment():
    order = [2, 0, 3, 1]  # refit centre i is reference centre order[i]
    new = REF[order] + 0.1  # the same centres, slightly moved, in another order
    perm = match_codes(new, REF)
    assert perm.tolist() == order
    aligned = permute_rows(new, perm)
    items = np.array([[0.2, 0.1], [9.8, 0.3], [0.1, 9.9], [10.2, 9.7], [9.9, 0.2]])
    want = nearest_centre(items, REF)
    assert nearest_centre(items, new).tolist() != want.tolist()  # before: the labels are shuffled
    assert nearest_centre(items, aligned).tolist() == want.tolist() == [0, 1, 2, 3, 1]


def test_larger_refit_codebook_keeps_matches_and_appends_the_rest():
    new = np.vstack([REF[[1, 0]], [[50.0, 50.0]], REF[[3, 2]]])  # 5 codes against 4
    assert match_codes(new, REF).tolist() == [1, 0, 4, 3, 2]
    with pytest.raises(ValidationError, match="a refit may only grow a level"):
        match_codes(REF[:3], REF)
    with pytest.raises(ValidationError, match=r"shapes \(4, 2\) and \(4, 3\)"):
        match_codes(REF, np.zeros((4, 3)))


def test_permute_rows_along_an_axis():
    a = np.arange(6).reshape(2, 3)  # entries along axis 1: columns 0, 1, 2
    assert permute_rows(a, np.array([2, 0, 1]), axis=1).tolist() == [[1, 2, 0], [4, 5, 3]]


def _fit(seed: int, items, emb, reference=None, freeze=False):
    cfg = TokenizerConfig(codebook_sizes=[6, 4, 4], epochs=2, batch_size=64, seed=seed)
    tok = build_tokenizer(cfg)
    report = fit_aligned(tok, emb, items, reference, freeze_level1=freeze)
    return tok, report


def test_relabelled_champion_is_recovered_exactly():
    """A champion whose code indices are a known permutation of a fit: aligning the fit to it gives the champion's codes."""
    items, emb = toy_catalogue(300, 16, seed=1)
    champion, _ = _fit(5, items, emb)
    refit, _ = _fit(5, items, emb)  # same seed: same centres, same codes
    p1, p2 = np.array([3, 5, 0, 1, 4, 2]), np.array([2, 3, 1, 0])
    champion.feature_centres, champion.mu1 = permute_rows(champion.feature_centres, p1), permute_rows(champion.mu1, p1)
    champion.local = permute_rows(champion.local, p1, axis=1)
    champion.codebooks[0] = permute_rows(champion.codebooks[0], p2)
    champion._tables = None
    want = champion.encode(emb, items)
    assert (refit.encode(emb, items) != want).any()
    report = align_to_reference(refit, champion)
    assert (refit.encode(emb, items) == want).all()
    assert report["aligned_l1"] == report["aligned_l2"] == report["aligned_l3"] == 1.0
    assert report["moved_l1"] == pytest.approx(5 / 6) and report["moved_l2"] == 1.0


def test_frozen_level1_reuses_the_champions_anchors():
    items, emb = toy_catalogue(300, 16, seed=1)
    champion, _ = _fit(5, items, emb)
    refit, report = _fit(11, items, emb, reference=champion, freeze=True)
    assert np.array_equal(refit.feature_centres, champion.feature_centres)
    assert (refit.encode(emb, items)[:, 0] == champion.encode(emb, items)[:, 0]).all()
    assert report["moved_l1"] == 0.0
    # a refit on part of the catalogue (another extent) still reads the anchors in the champion's feature space
    part = items.iloc[:150].reset_index(drop=True)
    small, _ = _fit(11, part, emb[:150], reference=champion, freeze=True)
    assert small.featurizer.geo_scale == champion.featurizer.geo_scale
    assert (small.encode(emb[:150], part)[:, 0] == champion.encode(emb, items)[:150, 0]).all()
    with pytest.raises(ValidationError, match="freeze_level1_from_champion.*dimension"):
        bad = build_tokenizer(TokenizerConfig(codebook_sizes=[6, 4, 4], epochs=1, feature_dim=8))
        fit_aligned(bad, emb, items, champion, freeze_level1=True)
