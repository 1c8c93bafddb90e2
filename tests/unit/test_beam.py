"""Constrained beam search never emits an invalid SID, and is exact when the beam covers the catalogue."""


import numpy as np
import pytest
import torch

from lgsid.evaluate.tiger import PrefixTrie, SIDVocab, constrained_beam_search, history_matrix, recommend, top_b_stable, train_tiger, training_examples


def _catalogue(n=40, sizes=(4, 3), seed=0):
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, s, n) for s in sizes], axis=1)  # many collisions on purpose
    _, inv = np.unique(codes, axis=0, return_inverse=True)
    suffix = np.zeros(n, dtype=np.int64)
    seen: dict = {}
    for i, g in enumerate(inv.reshape(-1)):
        suffix[i] = seen.get(g, 0)
        seen[g] = suffix[i] + 1
    return SIDVocab.from_codes(codes, suffix)


def _hash_logprobs(sizes, bias_to_invalid=None):
    """Deterministic log-probs that depend on (query, prefix) only, so full-path scores are well defined."""

    def lp(q, prefix, s):
        r = np.random.default_rng(abs(hash((q, tuple(prefix)))) % (2**32)).normal(size=s)
        if bias_to_invalid is not None:
            r[-1] += 5.0  # the largest code is the model's favourite, valid or not
        return r - np.log(np.exp(r).sum())

    return lp


@pytest.mark.parametrize("beam", [1, 3, 8])
def test_beam_search_emits_only_valid_sids(beam):
    vocab = _catalogue()
    trie = PrefixTrie(vocab.sids)
    f = _hash_logprobs(vocab.sizes, bias_to_invalid=True)
    wide = np.asarray(vocab.sizes) + 2  # the model scores codes that exist nowhere in the catalogue

    def step(t, prefixes, rows):
        return np.stack([f(rows[i] // beam, prefixes[i], int(wide[t])) for i in range(len(prefixes))])

    items, scores = constrained_beam_search(step, 5, trie, wide, beam)
    assert items.shape == (5, beam)
    assert (items >= 0).all() and (items < len(vocab.sids)).all()
    assert all(len(set(r)) == beam for r in items)  # distinct items
    assert np.isfinite(scores).all() and (np.diff(scores, axis=1) <= 1e-12).all()


def test_beam_search_is_exact_when_the_beam_covers_every_sid():
    vocab = _catalogue(n=12, sizes=(3, 2))
    trie = PrefixTrie(vocab.sids)
    f = _hash_logprobs(vocab.sizes)
    beam = len(vocab.sids) + 3  # more beams than items -> -1 padding at the end

    def step(t, prefixes, rows):
        return np.stack([f(rows[i] // beam, prefixes[i], int(vocab.sizes[t])) for i in range(len(prefixes))])

    items, scores = constrained_beam_search(step, 2, trie, vocab.sizes, beam)
    for q in range(2):  # naive reference: score every valid SID by its full path
        full = []
        for i, sid in enumerate(vocab.sids):
            full.append(sum(f(q, list(sid[:t]), int(vocab.sizes[t]))[sid[t]] for t in range(len(sid))))
        order = np.argsort(-np.array(full), kind="stable")
        assert list(items[q, : len(order)]) == list(order)
        assert np.allclose(scores[q, : len(order)], np.array(full)[order])
        assert (items[q, len(order):] == -1).all()


def test_top_b_stable_is_the_head_of_a_stable_descending_sort():
    x = np.array([[1.0, 3.0, 3.0, -np.inf, 2.0, 3.0], [-np.inf, -np.inf, 0.5, -np.inf, -np.inf, -np.inf]])
    # by hand: row 0 holds three 3.0s (indices 1, 2, 5) then 2.0; row 1 one finite value, then -inf by index
    assert top_b_stable(x, 4).tolist() == [[1, 2, 5, 4], [2, 0, 1, 3]]
    assert top_b_stable(x, 2).tolist() == [[1, 2], [2, 0]]
    rng = np.random.default_rng(0)
    for _ in range(300):  # tie-heavy rows, including b >= n
        q, n, b = rng.integers(1, 5), rng.integers(1, 60), rng.integers(1, 70)
        y = rng.integers(0, 4, (q, n)).astype(float)
        y[y == 0] = -np.inf
        assert np.array_equal(top_b_stable(y, b), np.argsort(-y, axis=1, kind="stable")[:, :b])


def test_beam_search_never_scores_dead_beams():
    vocab = _catalogue(n=40, sizes=(6, 3))
    trie = PrefixTrie(vocab.sids)
    f = _hash_logprobs(vocab.sizes)
    beam, seen = 4, []

    def step(t, prefixes, rows):
        seen.append((t, rows.copy()))
        return np.stack([f(rows[i] // beam, prefixes[i], int(vocab.sizes[t])) for i in range(len(prefixes))])

    items, _ = constrained_beam_search(step, 3, trie, vocab.sizes, beam)
    assert seen[0][0] == 0 and seen[0][1].tolist() == [0, 4, 8]  # t = 0: the first beam of each of the 3 queries
    assert seen[1][1].tolist() == list(range(12))  # 6 first codes >= 4 beams: every beam alive at t = 1
    assert (items >= 0).all()


def test_trie_allowed_masks_unknown_prefixes():
    sids = np.array([[0, 1, 0], [0, 1, 1], [2, 0, 0]])
    trie = PrefixTrie(sids)
    assert trie.allowed(np.array([0]), 4).tolist() == [[True, False, True, False]]
    assert trie.allowed(np.array([-1]), 3).tolist() == [[False, False, False]]
    assert sorted(trie.leaf_item[trie.leaf_item >= 0].tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="not unique"):
        SIDVocab.from_codes(np.array([[1, 2], [1, 2]]), np.array([0, 0]))


def test_trie_edges_agree_with_a_dense_child_table():
    """The sparse edges give every (node, code) child a dense (nodes, width) table gives, built here by walking the SIDs."""
    sids = _catalogue(n=300, sizes=(9, 5, 3), seed=3).sids
    trie = PrefixTrie(sids)
    dense = np.full((len(trie.leaf_item), trie.width), -1, dtype=np.int64)
    for row in sids:  # the node of each prefix is the child the trie returns for its last code
        node = 0
        for c in row:
            nxt = int(trie.child(np.array([node]), np.array([c]))[0])
            assert nxt > 0 and dense[node, c] in (-1, nxt)
            dense[node, c] = nxt
            node = nxt
    nodes = np.array([-1, *range(len(dense))])
    for size in (2, trie.width, trie.width + 3):  # narrower, exact and wider than the largest code
        want = np.full((len(nodes), size), -1, dtype=np.int64)
        want[1:, : min(size, trie.width)] = dense[:, : min(size, trie.width)]
        np.testing.assert_array_equal(trie.children_of(nodes, size), want)
        np.testing.assert_array_equal(trie.allowed(nodes, size), want >= 0)
    codes = np.arange(-1, trie.width + 2)
    got = trie.child(nodes[:, None], codes[None, :])
    np.testing.assert_array_equal(got[1:, 1 : trie.width + 1], dense)
    assert (got[0] == -1).all() and (got[:, 0] == -1).all() and (got[:, trie.width + 1 :] == -1).all()


def test_tiger_recommendations_map_to_items():
    torch.set_num_threads(1)
    vocab = _catalogue(n=30, sizes=(4, 4))
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 30, rng.integers(2, 6)) for _ in range(20)]
    hist, tgt = training_examples(seqs, 3)
    assert hist.shape == (sum(len(s) - 1 for s in seqs), 3) and (hist[:, -1] >= 0).all()
    model = train_tiger(vocab, hist, tgt, seed=0, epochs=1, d_model=16, nhead=2, layers=1, batch_size=32, lr=1e-3)
    rec = recommend(model, vocab, PrefixTrie(vocab.sids), history_matrix(seqs, 3), beam=5, batch_size=7)
    assert rec.shape == (20, 5) and (rec >= 0).all() and (rec < 30).all()
    assert all(len(set(r)) == 5 for r in rec)


def _tiny_tiger(seed: int):
    """A 30-item catalogue, 20 users' random sequences drawn with ``seed`` and a 1-epoch TIGER model on them.

    Returns:
        (vocab, model, (20, 3) history matrix, the rng, to draw more from the same stream).
    """
    torch.set_num_threads(1)
    vocab = _catalogue(n=30, sizes=(4, 4))
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(0, 30, rng.integers(2, 6)) for _ in range(20)]
    hist, tgt = training_examples(seqs, 3)
    model = train_tiger(vocab, hist, tgt, seed=0, epochs=1, d_model=16, nhead=2, layers=1, batch_size=32, lr=1e-3)
    return vocab, model, history_matrix(seqs, 3), rng


def test_beam_batches_shrink_for_wide_codebooks_and_decode_the_same(monkeypatch):
    import lgsid.evaluate.tiger as tiger

    # 2^22 cells: 256 users x 20 beams x 64 codes fit (327,680); 8192 codes x 40 beams leave 4,194,304 // 327,680 = 12 users
    assert tiger.beam_batch(256, 20, [64, 64, 64]) == 256 and tiger.beam_batch(256, 40, [8192, 512, 64]) == 12
    assert tiger.beam_batch(256, 1000, [1 << 20]) == 1
    vocab, model, h, _ = _tiny_tiger(seed=1)
    trie = PrefixTrie(vocab.sids)
    want, want_s = recommend(model, vocab, trie, h, beam=5, batch_size=20, return_scores=True)
    monkeypatch.setattr(tiger, "BEAM_BATCH_CELLS", 5 * int(max(vocab.sizes)) * 3)  # 3 users a batch
    got, got_s = recommend(model, vocab, trie, h, beam=5, batch_size=20, return_scores=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-6)


def test_score_batches_shrink_for_wide_vocabularies_and_score_the_same(monkeypatch):
    import lgsid.evaluate.tiger as tiger

    # 2^24 cells of one position's logits: 128 users x 100 candidates x 1,024 codes = 13,107,200 fit; 8,192 codes leave
    # 16,777,216 // (100 x 8,192) = 20 users a batch
    assert tiger.score_batch(128, 100, 1024) == 128 and tiger.score_batch(128, 100, 8192) == 20
    vocab, model, h, rng = _tiny_tiger(seed=2)
    cand = rng.integers(-1, 30, (20, 6))
    want = tiger.score_items(model, vocab, h, cand, batch_size=20)
    monkeypatch.setattr(tiger, "SCORE_BATCH_CELLS", 6 * int(max(vocab.sizes)) * 3)  # 3 users a batch
    np.testing.assert_allclose(tiger.score_items(model, vocab, h, cand, batch_size=20), want, rtol=1e-5, atol=1e-6)
    assert np.isneginf(want[cand < 0]).all() and np.isfinite(want[cand >= 0]).all()
    # the reference: the full head's (V) logits, each position's log-softmax over its own code range, summed over positions
    with torch.no_grad():
        i, j = np.nonzero(cand >= 0)
        memory, pad = tiger._encode_batch(model, vocab, h[i], None)
        tgt = torch.from_numpy(vocab.tokens(cand[i, j]))
        logits = model.decode(memory, pad, torch.cat([torch.full((len(tgt), 1), tiger.BOS, dtype=torch.long), tgt[:, :-1]], dim=1))
        ref = sum(torch.log_softmax(logits[:, t, lo:lo + n], -1).gather(1, (tgt[:, t] - lo)[:, None]).squeeze(1).double()
                  for t, (lo, n) in enumerate(zip(vocab.offsets.tolist(), vocab.sizes.tolist())))
    np.testing.assert_allclose(want[i, j], ref.numpy(), rtol=1e-5, atol=1e-5)


def test_trie_node_ranges_count_items_below_each_node():
    vocab = _catalogue(n=30, sizes=(4, 3))
    trie = PrefixTrie(vocab.sids)
    rng = np.random.default_rng(2)
    mask = rng.random((3, 30)) < 0.3
    cum = trie.subtree_counts(mask)
    for node in range(len(trie.lo)):
        below = trie.order[trie.lo[node]:trie.hi[node]]
        if trie.leaf_item[node] >= 0:
            assert below.tolist() == [trie.leaf_item[node]]
        for q in range(3):
            assert cum[q, trie.hi[node]] - cum[q, trie.lo[node]] == mask[q, below].sum()
    assert trie.hi[0] - trie.lo[0] == 30


def test_reach_constrained_beam_is_exact_over_the_allowed_items():
    vocab = _catalogue(n=16, sizes=(3, 3))
    trie = PrefixTrie(vocab.sids)
    f = _hash_logprobs(vocab.sizes)
    rng = np.random.default_rng(5)
    allowed = rng.random((3, 16)) < 0.4
    allowed[:, 0] = True  # at least one per query
    beam = 16

    def step(t, prefixes, rows):
        return np.stack([f(rows[i] // beam, prefixes[i], int(vocab.sizes[t])) for i in range(len(prefixes))])

    items, scores = constrained_beam_search(step, 3, trie, vocab.sizes, beam, allowed_counts=trie.subtree_counts(allowed))
    for q in range(3):
        ok = np.flatnonzero(allowed[q])
        full = {i: sum(f(q, list(vocab.sids[i][:t]), int(vocab.sizes[t]))[vocab.sids[i][t]] for t in range(vocab.length)) for i in ok}
        order = sorted(ok, key=lambda i: -full[i])
        assert items[q, :len(ok)].tolist() == order  # exactly the allowed items, best first
        assert (items[q, len(ok):] == -1).all()


def test_score_items_agrees_with_beam_scores_and_merge_keeps_the_best():
    from lgsid.evaluate.tiger import merge_ranked, score_items

    torch.set_num_threads(1)
    vocab = _catalogue(n=20, sizes=(4, 3))
    rng = np.random.default_rng(4)
    seqs = [rng.integers(0, 20, 4) for _ in range(6)]
    hist, tgt = training_examples(seqs, 3)
    model = train_tiger(vocab, hist, tgt, seed=0, epochs=1, d_model=16, nhead=2, layers=1, batch_size=16, lr=1e-3)
    h = history_matrix(seqs, 3)
    items, sc = recommend(model, vocab, PrefixTrie(vocab.sids), h, beam=4, return_scores=True)
    again = score_items(model, vocab, h, items)
    assert np.allclose(again, sc, atol=1e-4)
    assert np.isneginf(score_items(model, vocab, h, np.full((6, 2), -1))).all()
    merged = merge_ranked(np.array([[1, 2, -1]]), np.array([[-1.0, -3.0, 0.0]]), np.array([[2, 5]]), np.array([[-0.5, -2.0]]), 3)
    assert merged.tolist() == [[2, 1, 5]]  # item 2 keeps its better (history) score; -1 never enters


@pytest.mark.parametrize("history_tokens", ["sid", "item"])
def test_tiger_learns_a_deterministic_successor_with_and_without_context(history_tokens):
    torch.set_num_threads(1)
    n = 12
    vocab = _catalogue(n=n, sizes=(4, 3))
    trie = PrefixTrie(vocab.sids)
    hist = np.array([[-1, i] for i in range(n)] * 40)
    tgt = (hist[:, -1] + 1) % n
    queries = np.array([[-1, i] for i in range(n)])
    for ctx in (None, hist[:, -1] % 3):
        model = train_tiger(vocab, hist, tgt, seed=0, epochs=25, d_model=32, nhead=2, layers=1, batch_size=64, lr=5e-3,
                            context=ctx, n_context=3 if ctx is not None else 0, history_tokens=history_tokens)
        rec = recommend(model, vocab, trie, queries, beam=3, context=None if ctx is None else np.arange(n) % 3)
        assert (rec[:, 0] == (np.arange(n) + 1) % n).mean() >= 0.9


def test_item_history_tokens_sum_each_items_code_embeddings():
    """``history_tokens="item"``: one encoder token per history item = the sum of its T code-token
    embeddings plus the item position's embedding; an all-PAD item is masked; with a context token the
    memory is H + 1 long. ``"sid"`` keeps H*T tokens."""
    from lgsid.evaluate.tiger import TigerModel

    torch.manual_seed(0)
    vocab = _catalogue(n=10, sizes=(3, 4))
    hist = np.array([[-1, 2, 7], [4, 4, 9]])
    src = torch.from_numpy(vocab.tokens(hist).reshape(2, -1))  # (2, 3*T)
    m = TigerModel(vocab.vocab_size, vocab.length, 3, d_model=8, nhead=2, layers=1, dropout=0.0, history_tokens="item").eval()
    tok = vocab.tokens(hist)  # (2, 3, T)
    want_x = m.tok.weight[torch.from_numpy(tok)].sum(dim=2) + m.src_pos.weight[:3][None]  # PAD row of tok is zero
    want_pad = torch.tensor([[True, False, False], [False, False, False]])
    with torch.no_grad():
        mem, pad = m.encode(src)
        want = m.transformer.encoder(want_x, src_key_padding_mask=want_pad)
    assert mem.shape == (2, 3, 8) and torch.equal(pad, want_pad)
    torch.testing.assert_close(mem[~want_pad], want[~want_pad])
    assert float(m.tok.weight[0].abs().sum()) == 0.0
    ctx_m = TigerModel(vocab.vocab_size, vocab.length, 3, d_model=8, nhead=2, layers=1, n_context=2, history_tokens="item").eval()
    assert ctx_m.encode(src, torch.tensor([0, 1]))[0].shape == (2, 4, 8)
    sid_m = TigerModel(vocab.vocab_size, vocab.length, 3, d_model=8, nhead=2, layers=1, history_tokens="sid").eval()
    assert sid_m.encode(src)[0].shape == (2, 3 * vocab.length, 8)
    with pytest.raises(ValueError, match="history_tokens"):
        TigerModel(vocab.vocab_size, vocab.length, 3, history_tokens="items")


def test_revisit_counts_and_repeat_probability_by_hand():
    from lgsid.evaluate.tiger import repeat_probability, revisit_counts

    assert revisit_counts(np.array([1, 2, 1, 1, 3])) == (2, 4)  # t=2 and t=3 revisit item 1
    assert revisit_counts(np.array([5])) == (0, 0)
    # global rate (2 + 0) / (4 + 1) = 0.4; user: (2 + 5 * 0.4) / (4 + 5) = 4/9; a user with no transition gets the global rate
    lam = repeat_probability([np.array([1, 2, 1, 1, 3]), np.array([9])], [np.array([1, 2, 1, 1, 3]), np.array([4, 5])], prior_strength=5.0)
    np.testing.assert_allclose(lam, [4 / 9, 0.4])
    np.testing.assert_allclose(repeat_probability([np.array([1, 2, 1, 1, 3])], [np.array([1, 2, 1, 1, 3])], 0.0), [0.5])


def test_repeat_explore_lists_by_hand():
    """History [3, 1, 2] (most recent first) visited [1, 3, 1] times: p_rep = [0.2, 0.6, 0.2]; the model
    gives them p = [0.1, 0.2, 0.1] (mass 0.4). Beam [1, 7, 8] with p = [0.2, 0.3, 0.06]: item 1 is a
    history item, so new items get 7: 0.3 / 0.6 = 0.5 and 8: 0.06 / 0.6 = 0.1."""
    from lgsid.evaluate.tiger import repeat_explore_lists

    rep_items, rep_counts = np.array([[3, 1, 2]]), np.array([[1.0, 3.0, 1.0]])
    rep_logp = np.log([[0.1, 0.2, 0.1]])
    beam_items, beam_logp = np.array([[1, 7, 8]]), np.log([[0.2, 0.3, 0.06]])
    # λ = 0.5: history 3: 0.1, 1: 0.3, 2: 0.1; new 7: 0.25, 8: 0.05 -> 1, 7, then 3 before 2 (tie: more recent first)
    got = repeat_explore_lists(beam_items, beam_logp, rep_items, rep_counts, rep_logp, np.array([0.5]), 4)
    np.testing.assert_array_equal(got, [[1, 7, 3, 2]])
    # λ = 0.2: history 0.04, 0.12, 0.04; new 7: 0.4, 8: 0.08 -> 7, 1, 8, 3
    got = repeat_explore_lists(beam_items, beam_logp, rep_items, rep_counts, rep_logp, np.array([0.2]), 4)
    np.testing.assert_array_equal(got, [[7, 1, 8, 3]])
    # padding: no history at all -> the beam's new items only, then -1
    got = repeat_explore_lists(np.array([[4, -1]]), np.log([[0.5, 1.0]]), np.array([[-1, -1]]), np.zeros((1, 2)), np.full((1, 2), -np.inf), np.array([0.9]), 3)
    np.testing.assert_array_equal(got, [[4, -1, -1]])


def test_train_tiger_under_cpu_bf16_learns_like_float32():
    """bf16 autocast of the training forward pass: float32 weights, a falling loss, and the same top item as float32."""
    import torch

    from lgsid.evaluate import tiger

    rng = np.random.default_rng(0)
    codes = np.stack([np.arange(12) // 4, np.arange(12) % 4], axis=1)
    vocab = tiger.SIDVocab.from_codes(codes, np.zeros(12, dtype=np.int64))
    hist = rng.integers(0, 12, (400, 3))
    target = (hist[:, -1] + 1) % 12  # the next item follows the last one
    kw = dict(seed=0, epochs=12, d_model=32, nhead=4, layers=1, batch_size=64, lr=1e-2)
    m32 = tiger.train_tiger(vocab, hist, target, **kw)
    m16 = tiger.train_tiger(vocab, hist, target, bf16=True, **kw)
    assert all(p.dtype == torch.float32 for p in m16.parameters())
    trie = tiger.PrefixTrie(vocab.sids)
    test = rng.integers(0, 12, (50, 3))
    top32 = tiger.recommend(m32, vocab, trie, test, 1)[:, 0]
    top16 = tiger.recommend(m16, vocab, trie, test, 1)[:, 0]
    want = (test[:, -1] + 1) % 12
    assert (top16 == want).mean() > 0.9 and (top32 == want).mean() > 0.9


def test_tiger_and_sasrec_take_the_configured_dropout():
    """``evaluate.tiger_dropout`` reaches every dropout layer of the TIGER model and of the SASRec baseline."""
    import pytest
    from torch import nn

    from lgsid.config import load_config
    from lgsid.errors import ConfigError
    from lgsid.evaluate import baselines as bl
    from lgsid.evaluate import tiger

    vocab = _catalogue(n=20, sizes=(4, 5))
    rng = np.random.default_rng(3)
    hist, tgt = rng.integers(0, 20, (40, 3)), rng.integers(0, 20, 40)
    for p in (0.0, 0.3):
        kw = dict(seed=0, epochs=1, d_model=16, nhead=2, layers=1, batch_size=16, lr=1e-3, dropout=p)
        for model in (tiger.train_tiger(vocab, hist, tgt, **kw), bl.train_sasrec(20, hist, tgt, **kw)):
            drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
            assert drops and all(d == p for d in drops)
    assert load_config(overrides=["evaluate.tiger_dropout=0.0"]).evaluate.tiger_dropout == 0.0
    with pytest.raises(ConfigError, match="evaluate.tiger_dropout"):
        load_config(overrides=["evaluate.tiger_dropout=1.0"])


def test_near_scores_and_candidates_by_hand():
    """Distance-weighted decoding: log p - d / tau; candidates = beam then nearest unvisited, without
    repeats, history items or items outside the reach mask."""
    from lgsid.errors import ConfigError
    from lgsid.evaluate.sections import parse_decoding
    from lgsid.evaluate.tiger import near_candidates, near_scores

    # p = [0.5, 0.3] at 0 km and 5 km, tau = 5 km: 0.5 * 1 = 0.5 vs 0.3 * e^-1 = 0.110 (log -0.693 vs -2.204)
    got = near_scores(np.log([[0.5, 0.3]]), np.array([[0.0, 5.0]]), 5.0)
    np.testing.assert_allclose(got, [[np.log(0.5), np.log(0.3) - 1.0]])
    # a near item outranks a likelier far one: p 0.2 at 1 km vs p 0.4 at 10 km (0.2 e^-0.2 = 0.164 > 0.4 e^-2 = 0.054)
    s = near_scores(np.log([[0.4, 0.2]]), np.array([[10.0, 1.0]]), 5.0)
    assert s[0, 1] > s[0, 0]
    assert np.isneginf(near_scores(np.array([[-np.inf]]), np.array([[0.0]]), 5.0)).all()
    with pytest.raises(ValueError, match="decay_km"):
        near_scores(np.zeros((1, 1)), np.zeros((1, 1)), 0.0)

    beam, near = np.array([[3, 1, -1], [0, 2, 4]]), np.array([[1, 5], [6, 2]])
    np.testing.assert_array_equal(near_candidates(beam, near), [[3, 1, -1, -1, 5], [0, 2, 4, 6, -1]])  # repeats dropped
    np.testing.assert_array_equal(near_candidates(beam, near, history_items=np.array([[3, -1], [6, 0]])), [[-1, 1, -1, -1, 5], [-1, 2, 4, -1, -1]])
    allowed = np.zeros((2, 7), dtype=bool)
    allowed[0, [1, 5]] = allowed[1, [4]] = True
    np.testing.assert_array_equal(near_candidates(beam, near, allowed=allowed), [[-1, 1, -1, -1, 5], [-1, -1, 4, -1, -1]])
    assert parse_decoding("mix+near") == {"mix", "near"}
    with pytest.raises(ConfigError, match="'repeat' and 'near'"):
        parse_decoding("repeat+near")


def test_nearest_unvisited_by_hand_in_any_block_size():
    """Items on the equator at lon 0, 0.01, 0.025, 0.03, 0.045, 0.07 (0.01 deg ~ 1.1 km); user 0's last
    visit is item 2 (item 3, the nearest, is in its history), user 1's is item 0."""
    from lgsid.evaluate.baselines import nearest_unvisited

    lat, lon = np.zeros(6), np.array([0.0, 0.01, 0.025, 0.03, 0.045, 0.07])
    histories = [np.array([3, 2]), np.array([0])]
    for max_elements in (1, 6, 1 << 22):
        got = nearest_unvisited(histories, lat, lon, 3, max_elements=max_elements)
        np.testing.assert_array_equal(got[0], [1, 4, 0])  # 0.015, 0.02, 0.025 deg away
        np.testing.assert_array_equal(got[1], [1, 2, 3])
    np.testing.assert_array_equal(nearest_unvisited([np.arange(5)], lat, lon, 3)[0], [5, -1, -1])  # fewer unvisited than m


def test_onecycle_lr_schedule_by_hand():
    """``evaluate.tiger_lr_schedule``: constant keeps the rate; onecycle (torch's defaults: start peak/25, peak at
    30% of the steps, cosine down to start/10^4) steps once per batch over every epoch."""
    import pytest
    from torch import nn

    from lgsid.config import load_config
    from lgsid.errors import ConfigError
    from lgsid.evaluate.training import train_minibatches

    def lrs(schedule: str) -> list[float]:
        torch.manual_seed(0)
        model = nn.Linear(2, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, seen = torch.ones(40, 2), []

        def loss(bi):
            seen.append(opt.param_groups[0]["lr"])
            return model(x[bi]).pow(2).mean()

        train_minibatches(model, opt, 40, loss, epochs=2, batch_size=4, rng=np.random.default_rng(0), lr_schedule=schedule)
        return seen

    assert lrs("constant") == [0.1] * 20
    oc = lrs("onecycle")  # 2 epochs x 10 batches = 20 steps; warm-up ends at step 0.3 * 20 - 1 = 5
    assert len(oc) == 20
    assert oc[0] == pytest.approx(0.1 / 25)
    assert oc[5] == pytest.approx(0.1) and max(oc) == pytest.approx(0.1)
    assert oc[19] == pytest.approx(0.1 / 25 / 1e4)
    assert all(a < b for a, b in zip(oc[:5], oc[1:6])) and all(a > b for a, b in zip(oc[5:19], oc[6:]))
    with pytest.raises(ValueError, match="lr_schedule 'cosine'"):
        lrs("cosine")
    assert load_config(overrides=["evaluate.tiger_lr_schedule=onecycle"]).evaluate.tiger_lr_schedule == "onecycle"
    with pytest.raises(ConfigError, match="evaluate.tiger_lr_schedule"):
        load_config(overrides=["evaluate.tiger_lr_schedule=cosine"])
