"""The tokenizer fit holds no item-scale temporaries: row-chunked helpers give the same codes as one pass."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

import lgsid.tokenizer.base as base
from lgsid.config import TokenizerConfig
from lgsid.tokenizer import build_tokenizer
from lgsid.tokenizer.base import ResidualTables, nearest_centre, residual_encode, residual_of, row_chunks, subtract_rows
from lgsid.tokenizer.toy import toy_catalogue

torch.set_num_threads(1)


def test_row_chunks_are_equal_consecutive_and_cover_the_rows():
    assert row_chunks(10, 1, budget=100) == [slice(0, 10)]
    assert row_chunks(10, 8, budget=32) == [slice(0, 4), slice(4, 8), slice(8, 10)]  # 3 parts of ceil(10/3) rows
    assert row_chunks(0, 8) == [slice(0, 0)]
    s = row_chunks(1001, 400, budget=4000)
    assert s[0].start == 0 and s[-1].stop == 1001 and all(a.stop == b.start for a, b in zip(s, s[1:]))
    assert max(x.stop - x.start for x in s) * 400 <= 4000


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_nearest_centre_and_residuals_equal_one_pass(monkeypatch, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 16)).astype(dtype)
    cbs = [rng.standard_normal((k, 16)).astype(dtype) for k in (40, 24)]
    one = nearest_centre(x, cbs[0])
    want_codes, want_r = residual_encode(x, cbs)
    tables = ResidualTables(cbs).encode(x.astype(np.float32))
    monkeypatch.setattr(base, "CHUNK_BYTES", 4096)  # hundreds of chunks
    assert len(row_chunks(len(x), 40 * x.itemsize)) > 10
    np.testing.assert_array_equal(nearest_centre(x, cbs[0]), one)
    codes, r = residual_encode(x, cbs)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(r, want_r)
    np.testing.assert_array_equal(ResidualTables(cbs).encode(x.astype(np.float32)), tables)
    r = residual_of(x, cbs[0], one)
    np.testing.assert_array_equal(r, x - cbs[0][one])
    np.testing.assert_array_equal(subtract_rows(r, cbs[1], want_codes[:, 1]), x - cbs[0][one] - cbs[1][want_codes[:, 1]])


def test_nearest_centre_never_holds_the_full_score_matrix():
    rng = np.random.default_rng(1)
    x, c = rng.standard_normal((20000, 8)), rng.standard_normal((2048, 8))  # one pass: a 328 MB (N, K) float64 matrix
    tracemalloc.start()
    try:
        codes = nearest_centre(x, c)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * base.CHUNK_BYTES
    np.testing.assert_array_equal(codes[:500], ((x[:500, None, :] - c[None]) ** 2).sum(-1).argmin(1))


@pytest.mark.parametrize("local", [True, False])
def test_hgit_fit_and_encode_are_the_same_in_small_chunks(monkeypatch, local):
    """Every chunked path of the fit (level 1, init residuals, reseeding, the local level, encode) gives the codes and
    codebooks of a fit whose item-scale arrays fit in one chunk."""
    items, emb = toy_catalogue(600, dim=24, seed=3)
    cfg = TokenizerConfig(codebook_sizes=[16, 8, 8], epochs=3, batch_size=128, local_last_level=local, reseed_dead_codes=True)

    def run():
        tok = build_tokenizer(cfg).fit(emb, items)
        return tok, tok.encode(emb, items)

    ref, ref_codes = run()
    monkeypatch.setattr(base, "CHUNK_BYTES", 2048)  # a few rows per chunk
    tok, codes = run()
    np.testing.assert_array_equal(codes, ref_codes)
    for (k, a), b in zip(ref.state()[0].items(), tok.state()[0].values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
