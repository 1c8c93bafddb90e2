"""bench/tiger_decode.py's plain reference decoder agrees with lgsid's optimised beam search."""

import numpy as np
import torch


def test_plain_reference_decodes_what_recommend_decodes(bench_module):
    from lgsid.evaluate.tiger import PrefixTrie, SIDVocab, TigerModel, recommend
    from lgsid.tokenizer import dedup_suffix

    rng = np.random.default_rng(4)
    codes = np.stack([rng.integers(0, k, 300) for k in (16, 5, 4)], axis=1)  # 16 first codes >= beam 6: lgsid ranks beam 0's block only
    vocab = SIDVocab.from_codes(codes, np.asarray(dedup_suffix(codes)))
    trie = PrefixTrie(vocab.sids)
    torch.manual_seed(1)
    model = TigerModel(vocab.vocab_size, vocab.length, 3, d_model=16, nhead=2, layers=1, dropout=0.0).eval()
    hist = rng.integers(-1, 300, (7, 3))
    items, scores = bench_module("tiger_decode").plain_recommend(model, vocab, trie, hist, beam=6)
    want, want_s = recommend(model, vocab, trie, hist, 6, return_scores=True)
    np.testing.assert_array_equal(items, want)
    np.testing.assert_allclose(scores, want_s, rtol=1e-5, atol=1e-5)
    assert (items >= 0).all()
