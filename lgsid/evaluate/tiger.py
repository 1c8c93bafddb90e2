"""TIGER-style generative retrieval over semantic IDs (paper Table 2).

A small PyTorch Transformer encoder–decoder reads a user's recent history (one token per item, the
sum of its SID codes' embeddings, or one token per code) and generates the next item's SID token by
token. Each item's SID is its ``L`` codes plus the dedup suffix, so a full SID names exactly one item.
Beam search is constrained by a prefix trie of the catalogue's SIDs: at every step only tokens that
extend a valid prefix may be chosen, so every finished beam maps to an item.

Tokens: 0 = PAD, 1 = BOS; position ``t`` of a SID with code ``c`` is token ``2 + offset[t] + c``
(each position has its own token range, as in TIGER).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from lgsid.evaluate.training import train_minibatches
from lgsid.geo import haversine_km
from lgsid.train.runtime import autocast

PAD, BOS, N_SPECIAL = 0, 1, 2


# --------------------------------------------------------------------------------------------
# SID vocabulary and prefix trie
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SIDVocab:
    """Token layout of full SIDs (codes + dedup suffix).

    Attributes:
        sids: (N, T) int64 code of item i at position t (T = levels + 1 for the suffix).
        sizes: (T,) number of codes at each position.
        offsets: (T,) first token id of each position's range.
        vocab_size: total number of tokens including PAD and BOS.
    """

    sids: np.ndarray
    sizes: np.ndarray
    offsets: np.ndarray
    vocab_size: int

    @classmethod
    def from_codes(cls, codes: np.ndarray, suffix: np.ndarray) -> "SIDVocab":
        """Build from ``codes`` (N, L) and dedup ``suffix`` (N,); the pairs must be unique per item."""
        sids = np.concatenate([np.asarray(codes, dtype=np.int64), np.asarray(suffix, dtype=np.int64)[:, None]], axis=1)
        if (sids < 0).any():
            raise ValueError("SID codes must be >= 0")
        if len(np.unique(sids, axis=0)) != len(sids):
            raise ValueError("full SIDs (codes + suffix) are not unique per item; apply lgsid.tokenizer.dedup_suffix first")
        sizes = sids.max(axis=0) + 1
        offsets = N_SPECIAL + np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return cls(sids=sids, sizes=sizes, offsets=offsets, vocab_size=int(N_SPECIAL + sizes.sum()))

    @property
    def length(self) -> int:
        return int(self.sids.shape[1])

    def tokens(self, items: np.ndarray) -> np.ndarray:
        """Token ids of ``items`` (any shape S) -> (S..., T); item index -1 maps to PAD tokens."""
        items = np.asarray(items)
        tok = self.sids[np.clip(items, 0, None)] + self.offsets  # (..., T)
        return np.where((items >= 0)[..., None], tok, PAD)


class PrefixTrie:
    """Prefix trie over the catalogue's full SIDs, stored as sorted ``(node, code)`` edge keys.

    :meth:`child` gives the child of ``node`` for code ``c`` at that node's depth (-1 = none) and
    :meth:`children_of` a batch of nodes' child rows; the edges are kept sparse (one key per edge,
    ``node · width + code``), not as a dense (nodes, width) table, whose size is the number of
    prefixes times the largest codebook (about 10 GB for 100k items under an 8192-code level 1).
    ``leaf_item[node]`` is the item a depth-T node names (-1 for inner nodes). Node 0 is the root.
    Items sorted by SID (``order``) put every node's items in one contiguous range
    ``order[lo[node]:hi[node]]``, so per-query item sets can be tested per node in O(1).
    """

    def __init__(self, sids: np.ndarray):
        sids = np.asarray(sids, dtype=np.int64)
        width = int(sids.max()) + 1 if sids.size else 1
        self.order = np.lexsort(sids.T[::-1]) if sids.size else np.zeros(0, np.int64)  # (N,) items in SID order
        table: list[dict[int, int]] = [{}]
        lo, hi = [0], [len(sids)]
        leaf: dict[int, int] = {}
        for p, i in enumerate(self.order):
            node = 0
            for c in sids[i]:
                nxt = table[node].get(int(c))
                if nxt is None:
                    nxt = len(table)
                    table[node][int(c)] = nxt
                    table.append({})
                    lo.append(p)
                    hi.append(p + 1)
                hi[nxt] = p + 1
                node = nxt
            leaf[node] = int(i)
        self.width = width
        keys = np.fromiter((node * width + c for node, ch in enumerate(table) for c in ch), dtype=np.int64)
        vals = np.fromiter((v for ch in table for v in ch.values()), dtype=np.int64, count=len(keys))
        srt = np.argsort(keys, kind="stable")
        self.keys, self.vals = keys[srt], vals[srt]  # edges sorted by (node, code)
        self.indptr = np.searchsorted(self.keys, np.arange(len(table) + 1, dtype=np.int64) * width)  # node's edges: [indptr[n], indptr[n+1])
        self.leaf_item = np.full(len(table), -1, dtype=np.int64)
        self.leaf_item[list(leaf.keys())] = list(leaf.values())
        self.lo = np.asarray(lo, dtype=np.int64)  # node's items are order[lo[node]:hi[node]]
        self.hi = np.asarray(hi, dtype=np.int64)
        self.depth = sids.shape[1]

    def subtree_counts(self, item_mask: np.ndarray) -> np.ndarray:
        """(Q, N) bool per-query item mask -> (Q, N + 1) cumulative counts in SID order.

        ``cum[q, hi[n]] - cum[q, lo[n]]`` is the number of masked items below node ``n``.
        """
        m = np.asarray(item_mask, dtype=bool)[:, self.order]
        return np.concatenate([np.zeros((len(m), 1), np.int32), np.cumsum(m, axis=1, dtype=np.int32)], axis=1)

    def child(self, nodes: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Child of each node for each code (same shapes); -1 where the node is dead (-1) or has no such child."""
        nodes, codes = np.asarray(nodes, dtype=np.int64), np.asarray(codes, dtype=np.int64)
        ok = (nodes >= 0) & (codes >= 0) & (codes < self.width)
        if not len(self.keys):
            return np.full(np.broadcast(nodes, codes).shape, -1, dtype=np.int64)
        k = np.where(ok, nodes * self.width + codes, -1)  # edge keys are >= 0: -1 matches none
        pos = np.minimum(np.searchsorted(self.keys, k), len(self.keys) - 1)
        return np.where(ok & (self.keys[pos] == k), self.vals[pos], -1)

    def children_of(self, nodes: np.ndarray, size: int) -> np.ndarray:
        """(M,) nodes (-1 = dead beam) -> (M, size) child of each node for codes 0..size-1 (-1 = none)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        out = np.full((len(nodes), size), -1, dtype=np.int64)
        live = np.clip(nodes, 0, None)
        counts = np.where(nodes >= 0, self.indptr[live + 1] - self.indptr[live], 0)
        total = int(counts.sum())
        if total:
            rows = np.repeat(np.arange(len(nodes)), counts)
            idx = np.repeat(self.indptr[live], counts) + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
            codes = self.keys[idx] - nodes[rows] * self.width
            keep = codes < size
            out[rows[keep], codes[keep]] = self.vals[idx[keep]]
        return out

    def allowed(self, nodes: np.ndarray, size: int) -> np.ndarray:
        """(M,) nodes (-1 = dead beam) -> (M, size) bool mask of codes that extend a valid prefix."""
        return self.children_of(nodes, size) >= 0


def top_b_stable(x: np.ndarray, b: int) -> np.ndarray:
    """Per row, the indices of the ``b`` largest values, largest first, ties by lower index.

    Equal to ``np.argsort(-x, axis=1, kind="stable")[:, :b]`` (so ``-inf`` entries, once the finite
    ones run out, come in index order) without sorting whole rows: a partition finds each row's
    b-th value, every larger entry is kept with the lowest-indexed entries equal to it, and only
    those ``b`` are sorted. Rows of a wide beam step (beam × codes, e.g. 40 × 512) are 3-5x faster.

    Args:
        x: (q, n) scores, no NaN.
        b: how many per row (``b >= n`` sorts whole rows).

    Returns:
        (q, min(b, n)) int64 column indices.
    """
    q, n = x.shape
    if b >= n:
        return np.argsort(-x, axis=1, kind="stable")
    neg = -x
    kth = np.partition(neg, b - 1, axis=1)[:, b - 1:b]  # each row's b-th smallest of -x
    better = neg < kth
    tie = neg == kth
    need = b - better.sum(axis=1, keepdims=True)  # ties to take, lowest index first
    take = better | (tie & (np.cumsum(tie, axis=1) <= need))
    sel = np.nonzero(take)[1].reshape(q, b)  # exactly b per row, in index order
    return np.take_along_axis(sel, np.argsort(np.take_along_axis(neg, sel, axis=1), axis=1, kind="stable"), axis=1)


def constrained_beam_search(
    step_logprobs: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
    n_queries: int,
    trie: PrefixTrie,
    sizes: np.ndarray,
    beam: int,
    allowed_counts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Beam search whose every step is masked to the trie's valid continuations.

    With ``allowed_counts`` (reachability-constrained decoding) a prefix is only expanded when at
    least one item below it is allowed for that query, so every finished beam is an allowed item.

    Args:
        step_logprobs: ``f(t, prefixes, rows)`` with prefixes (M, t) codes of the live beams and
            rows (M,) their indices among the n_queries * beam beams (query-major: query = row // beam),
            returns (M, sizes[t]) log-probabilities of the next code. Dead beams are never scored
            (at t = 0 only the first beam of each query is alive).
        n_queries: number of queries (users).
        trie: prefix trie of valid SIDs.
        sizes: (T,) code count per position.
        beam: beam width.
        allowed_counts: optional (n_queries, N + 1) :meth:`PrefixTrie.subtree_counts` of each
            query's allowed items.

    Returns:
        (items, scores): (n_queries, beam) item indices best first (-1 where fewer than ``beam``
        valid (allowed) SIDs exist) and their summed log-probabilities.
    """
    q, b = n_queries, beam
    nodes = np.full((q, b), -1, dtype=np.int64)
    nodes[:, 0] = 0  # one live beam at the root; the others start dead so no duplicates appear
    scores = np.full((q, b), -np.inf)
    scores[:, 0] = 0.0
    prefixes = np.zeros((q, b, 0), dtype=np.int64)
    for t in range(trie.depth):
        s = int(sizes[t])
        # at t = 0 only beam 0 is alive; with s >= b its block alone holds the row's top b (-inf ties by index
        # come from it first), so the other b - 1 blocks of -inf are neither scored nor ranked
        nb = 1 if (t == 0 and s >= b) else b
        flat = nodes[:, :nb].reshape(-1)
        live = np.flatnonzero(flat >= 0)
        rows = (live // nb) * b + live % nb  # among the q*b beams
        cand = np.full((q * nb, s), -np.inf)
        if len(live):
            lp = np.asarray(step_logprobs(t, prefixes.reshape(q * b, t)[rows], rows), dtype=np.float64)  # (live, s)
            ch = trie.children_of(flat[live], s)  # (live, s)
            ok = ch >= 0
            if allowed_counts is not None:
                chc = np.clip(ch, 0, None)
                qi = (rows // b)[:, None]
                ok &= (allowed_counts[qi, trie.hi[chc]] - allowed_counts[qi, trie.lo[chc]]) > 0
            cand[live] = np.where(ok, scores[:, :nb].reshape(-1)[live, None] + lp, -np.inf)
        cand = cand.reshape(q, nb * s)
        top = top_b_stable(cand, b)  # (q, b)
        new_scores = np.take_along_axis(cand, top, axis=1)
        parent, code = top // s, top % s
        parent_nodes = np.take_along_axis(nodes, parent, axis=1)
        child = trie.child(parent_nodes, code)
        alive = np.isfinite(new_scores) & (parent_nodes >= 0) & (code < trie.width)
        nodes = np.where(alive, child, -1)
        scores = np.where(alive, new_scores, -np.inf)
        prefixes = np.concatenate([np.take_along_axis(prefixes, parent[..., None], axis=1), code[..., None]], axis=2)
    items = np.where(nodes >= 0, trie.leaf_item[np.clip(nodes, 0, None)], -1)
    return items, scores


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class TigerModel(nn.Module):
    """Encoder–decoder Transformer over SID tokens.

    Args:
        vocab_size: tokens incl. PAD/BOS.
        sid_len: T, tokens per SID.
        max_history: H, items in the encoder input (src length H*T tokens, read as H items with ``"item"``).
        n_context: number of context values (e.g. H3 cells of the user's last visit); > 0 adds one
            context token in front of the history (its own embedding table and position).
        history_tokens: ``"item"`` (default, like ``evaluate.tiger_history_tokens``) = one encoder token
            per history item, the sum of its codes' token embeddings (H tokens); ``"sid"`` = one encoder
            token per SID code of every history item (H*T tokens, as in TIGER). The decoder generates
            code by code either way.
    """

    def __init__(self, vocab_size: int, sid_len: int, max_history: int, d_model: int = 64, nhead: int = 4, layers: int = 2, dropout: float = 0.1,
                 n_context: int = 0, history_tokens: str = "item"):
        super().__init__()
        if history_tokens not in ("sid", "item"):
            raise ValueError(f"history_tokens must be 'sid' or 'item', got {history_tokens!r}")
        self.sid_len = sid_len
        self.item_tokens = history_tokens == "item"
        self.tok = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.src_pos = nn.Embedding((max_history if self.item_tokens else max_history * sid_len) + 1, d_model)
        self.tgt_pos = nn.Embedding(sid_len + 1, d_model)
        self.ctx = nn.Embedding(n_context, d_model) if n_context > 0 else None
        self.transformer = nn.Transformer(
            d_model, nhead, layers, layers, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True
        )
        self.head = nn.Linear(d_model, vocab_size)

    def encode(self, src: torch.Tensor, ctx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, H*T) tokens, ctx (B,) context ids or None -> memory (B, S[+1], d), padding mask (B, S[+1]).

        S = H*T with ``history_tokens="sid"``; S = H with ``"item"`` (a history item is padding when all its tokens are).
        """
        if self.item_tokens:
            src = src.reshape(src.shape[0], -1, self.sid_len)  # (B, H, T)
            pad = (src == PAD).all(dim=2)
            x = self.tok(src).sum(dim=2)  # PAD embeds to zero (padding_idx)
        else:
            pad = src == PAD
            x = self.tok(src)
        pos = torch.arange(x.shape[1], device=src.device)
        x = x + self.src_pos(pos)[None]
        if self.ctx is not None:
            if ctx is None:
                raise ValueError("this TigerModel was built with a context token: pass ctx")
            c = self.ctx(ctx) + self.src_pos.weight[-1]  # (B, d)
            x = torch.cat([c[:, None], x], dim=1)
            pad = torch.cat([torch.zeros_like(pad[:, :1]), pad], dim=1)
        return self.transformer.encoder(x, src_key_padding_mask=pad), pad

    def decode(self, memory: torch.Tensor, pad: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """tgt_in (B, t) tokens starting with BOS -> logits (B, t, V)."""
        return self.head(self.decode_hidden(memory, pad, tgt_in))

    def decode_hidden(self, memory: torch.Tensor, pad: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """tgt_in (B, t) tokens starting with BOS -> the decoder's last hidden states (B, t, d), before the head."""
        t = tgt_in.shape[1]
        pos = torch.arange(t, device=tgt_in.device)
        y = self.tok(tgt_in) + self.tgt_pos(pos)[None]
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=tgt_in.device)
        return self.transformer.decoder(y, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=pad)

    def head_slice(self, h: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Logits of the tokens ``[lo, hi)`` only (one SID position's codes): ``head(h)[..., lo:hi]`` without the other V - (hi - lo)."""
        return nn.functional.linear(h, self.head.weight[lo:hi], self.head.bias[lo:hi])

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: src (B, S), tgt (B, T), ctx (B,) or None -> logits (B, T, V)."""
        memory, pad = self.encode(src, ctx)
        tgt_in = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], dim=1)
        return self.decode(memory, pad, tgt_in)


# --------------------------------------------------------------------------------------------
# Data, training, inference
# --------------------------------------------------------------------------------------------


def history_matrix(seqs: list[np.ndarray], max_history: int) -> np.ndarray:
    """Right-aligned last ``max_history`` items of each sequence -> (U, H) item indices, -1 padded on the left."""
    out = np.full((len(seqs), max_history), -1, dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[-max_history:]
        if len(s):
            out[i, max_history - len(s):] = s
    return out


def training_examples(seqs: list[np.ndarray], max_history: int) -> tuple[np.ndarray, np.ndarray]:
    """Next-item examples from train sequences: for each position t >= 1, (items[t-H:t], items[t]).

    Returns:
        hist (M, H) item indices (-1 padded), target (M,) item indices.
    """
    hists, tgts = [], []
    for s in seqs:
        for t in range(1, len(s)):
            hists.append(s[max(0, t - max_history):t])
            tgts.append(s[t])
    return history_matrix(hists, max_history), np.asarray(tgts, dtype=np.int64)


def train_tiger(vocab: SIDVocab, hist: np.ndarray, target: np.ndarray, *, seed: int, epochs: int, d_model: int, nhead: int, layers: int,
                batch_size: int, lr: float, progress: bool = False, context: np.ndarray | None = None, n_context: int = 0,
                bf16: bool = False, dropout: float = 0.0, history_tokens: str = "item", lr_schedule: str = "constant",
                valid: tuple[np.ndarray, np.ndarray] | None = None, patience: int = 0, valid_context: np.ndarray | None = None) -> TigerModel:
    """Train a :class:`TigerModel` with teacher forcing (cross-entropy over the SID tokens).

    Args:
        vocab: SID token layout.
        hist: (M, H) history item indices (-1 = pad).
        target: (M,) next item indices.
        seed: seeds torch and the shuffling.
        context: optional (M,) context ids in [0, n_context) (one extra encoder token per example).
        n_context: size of the context vocabulary (0 = no context token).
        bf16: run the forward pass under CPU bf16 autocast (``evaluate.cpu_bf16``); the loss, the
            gradients' master weights and AdamW stay float32. Inference is always float32.
        dropout: the Transformer's dropout (``evaluate.tiger_dropout``, default 0 like the config).
        history_tokens: encoder input layout, see :class:`TigerModel` (``evaluate.tiger_history_tokens``).
        lr_schedule: ``constant`` or ``onecycle`` with ``lr`` as the peak (``evaluate.tiger_lr_schedule``), see
            :func:`~lgsid.evaluate.training.train_minibatches`.
        valid: optional (hist (V, H), target (V,)) validation examples: their teacher-forced cross-entropy is
            recorded per epoch in ``model.fit_history`` and, with ``patience`` > 0, stops training early.
        valid_context: (V,) context ids of the validation examples when the model has a context token.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    h = hist.shape[1]
    model = TigerModel(vocab.vocab_size, vocab.length, h, d_model=d_model, nhead=nhead, layers=layers, dropout=dropout,
                       n_context=n_context if context is not None else 0, history_tokens=history_tokens)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    src_all = torch.from_numpy(vocab.tokens(hist).reshape(len(hist), -1))  # (M, H*T)
    tgt_all = torch.from_numpy(vocab.tokens(target))  # (M, T)
    ctx_all = None if context is None else torch.from_numpy(np.asarray(context, dtype=np.int64))
    loss_fn = nn.CrossEntropyLoss()

    def batch_loss(bi: torch.Tensor) -> torch.Tensor:
        with autocast("cpu", bf16):
            logits = model(src_all[bi], tgt_all[bi], None if ctx_all is None else ctx_all[bi])  # (B, T, V)
        return loss_fn(logits.float().reshape(-1, logits.shape[-1]), tgt_all[bi].reshape(-1))

    vloss = None
    if valid is not None and len(valid[1]):
        src_v = torch.from_numpy(vocab.tokens(valid[0]).reshape(len(valid[0]), -1))
        tgt_v = torch.from_numpy(vocab.tokens(valid[1]))
        ctx_v = None if (context is None or valid_context is None) else torch.from_numpy(np.asarray(valid_context, dtype=np.int64))

        def vloss() -> float:
            tot = 0.0
            for s in range(0, len(tgt_v), 1024):
                sl = slice(s, s + 1024)
                logits = model(src_v[sl], tgt_v[sl], None if ctx_v is None else ctx_v[sl])
                tot += float(loss_fn(logits.float().reshape(-1, logits.shape[-1]), tgt_v[sl].reshape(-1))) * len(tgt_v[sl])
            return tot / len(tgt_v)
    return train_minibatches(model, opt, len(hist), batch_loss, epochs=epochs, batch_size=batch_size, rng=rng,
                             progress=progress, desc="tiger epochs", lr_schedule=lr_schedule, valid_loss=vloss, patience=patience)


def _encode_batch(model: TigerModel, vocab: SIDVocab, hb: np.ndarray, cb: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.from_numpy(vocab.tokens(hb).reshape(len(hb), -1))
    return model.encode(src, None if cb is None else torch.from_numpy(np.asarray(cb, dtype=np.int64)))


#: Most (query x beam x code) cells one beam-search batch holds: each (q·b, K) array of a step is at most
#: 32 MB of float64, whatever the widest codebook (8192 level-1 codes and a 40-wide beam: 12 users a batch).
BEAM_BATCH_CELLS = 1 << 22


def beam_batch(batch_size: int, beam: int, sizes) -> int:
    """Users per beam-search batch: ``batch_size``, fewer when ``batch · beam · max(sizes)`` would pass :data:`BEAM_BATCH_CELLS`."""
    return max(1, min(int(batch_size), BEAM_BATCH_CELLS // max(1, int(beam) * int(max(sizes)))))


@torch.no_grad()
def recommend(model: TigerModel, vocab: SIDVocab, trie: PrefixTrie, hist: np.ndarray, beam: int, batch_size: int = 256,
              context: np.ndarray | None = None, allowed: np.ndarray | None = None, return_scores: bool = False):
    """Top-``beam`` items per user by trie-constrained beam search.

    Args:
        hist: (U, H) history item indices (-1 = pad).
        context: (U,) context ids when the model has a context token.
        allowed: optional (U, N) bool items each user may be recommended (reachability-constrained
            decoding: a prefix is expanded only if an allowed item lies below it).
        return_scores: also return the (U, beam) summed log-probabilities.
        batch_size: users per batch, lowered by :func:`beam_batch` for wide codebooks.

    Returns:
        (U, beam) item indices best first (-1 where fewer than ``beam`` valid SIDs exist), and the
        scores when ``return_scores``.
    """
    import warnings

    warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors")  # eval fast path, harmless
    out = np.full((len(hist), beam), -1, dtype=np.int64)
    out_s = np.full((len(hist), beam), -np.inf)
    batch_size = beam_batch(batch_size, beam, vocab.sizes)  # the step's (q·b, K) arrays stay bounded
    for s in range(0, len(hist), batch_size):
        hb = hist[s:s + batch_size]
        memory, pad = _encode_batch(model, vocab, hb, None if context is None else context[s:s + batch_size])
        memory = memory.repeat_interleave(beam, dim=0)  # (q*b, S, d), query-major like the beams
        pad = pad.repeat_interleave(beam, dim=0)

        def step(t: int, prefixes: np.ndarray, rows: np.ndarray) -> np.ndarray:
            tok = torch.from_numpy(prefixes + vocab.offsets[:t]) if t else torch.zeros((len(prefixes), 0), dtype=torch.long)
            tgt_in = torch.cat([torch.full((len(prefixes), 1), BOS, dtype=torch.long), tok], dim=1)
            idx = torch.from_numpy(rows)
            h = model.decode_hidden(memory[idx], pad[idx], tgt_in)[:, -1]  # (live beams, d)
            lo = int(vocab.offsets[t])
            return torch.log_softmax(model.head_slice(h, lo, lo + int(vocab.sizes[t])), dim=-1).numpy()  # position t's codes only

        counts = None if allowed is None else trie.subtree_counts(allowed[s:s + batch_size])
        items, scores = constrained_beam_search(step, len(hb), trie, vocab.sizes, beam, allowed_counts=counts)
        out[s:s + len(hb)], out_s[s:s + len(hb)] = items, scores
    return (out, out_s) if return_scores else out


#: Most logit cells (user x candidate x code) one teacher-forced scoring step holds: 64 MB of float32.
SCORE_BATCH_CELLS = 1 << 24


def score_batch(batch_size: int, candidates: int, widest: int) -> int:
    """Users per :func:`score_items` batch: ``batch_size``, fewer when one position's (q·C, sizes[t]) logits would pass :data:`SCORE_BATCH_CELLS`."""
    return max(1, min(int(batch_size), SCORE_BATCH_CELLS // max(1, int(candidates) * int(widest))))


@torch.no_grad()
def score_items(model: TigerModel, vocab: SIDVocab, hist: np.ndarray, candidates: np.ndarray, context: np.ndarray | None = None,
                batch_size: int = 128) -> np.ndarray:
    """Exact log-probability of given candidate items under the model (teacher forcing).

    ``log p(item | history) = Σ_t log softmax_t(code_t | code_<t, history)`` over the SID's
    positions, each softmax restricted to that position's token range (as in :func:`recommend`).

    Args:
        hist: (U, H) history item indices.
        candidates: (U, C) item indices to score (-1 = none).

    Returns:
        (U, C) log-probabilities (-inf where the candidate is -1).
    """
    u, c = candidates.shape
    out = np.full((u, c), -np.inf)
    if c == 0:
        return out
    T = vocab.length
    batch_size = score_batch(batch_size, c, int(max(vocab.sizes)))  # each position's (q·C, sizes[t]) logits stay bounded
    for s in range(0, u, batch_size):
        hb, cand = hist[s:s + batch_size], candidates[s:s + batch_size]
        memory, pad = _encode_batch(model, vocab, hb, None if context is None else context[s:s + batch_size])
        memory, pad = memory.repeat_interleave(c, dim=0), pad.repeat_interleave(c, dim=0)  # (q*C, S, d)
        tgt = torch.from_numpy(vocab.tokens(cand.reshape(-1)))  # (q*C, T)
        tgt_in = torch.cat([torch.full((len(tgt), 1), BOS, dtype=torch.long), tgt[:, :-1]], dim=1)
        h = model.decode_hidden(memory, pad, tgt_in)  # (q*C, T, d)
        lp = torch.zeros(len(tgt), dtype=torch.float64)
        for t in range(T):
            lo = int(vocab.offsets[t])
            lsm = torch.log_softmax(model.head_slice(h[:, t], lo, lo + int(vocab.sizes[t])), dim=-1)  # (q*C, sizes[t])
            lp += lsm.gather(1, (tgt[:, t] - lo).clamp(min=0)[:, None]).squeeze(1).double()
        out[s:s + len(hb)] = np.where(cand >= 0, lp.numpy().reshape(len(hb), c), -np.inf)
    return out


def merge_ranked(items_a: np.ndarray, scores_a: np.ndarray, items_b: np.ndarray, scores_b: np.ndarray, k: int) -> np.ndarray:
    """Union of two scored candidate lists per row, top-``k`` distinct items by score.

    Args:
        items_a, scores_a: (U, A) items (-1 = none) and scores.
        items_b, scores_b: (U, B) the same for a second candidate source.

    Returns:
        (U, k) item indices, best first (-1 padded).
    """
    items = np.concatenate([items_a, items_b], axis=1)
    scores = np.where(items >= 0, np.concatenate([scores_a, scores_b], axis=1), -np.inf)
    out = np.full((len(items), k), -1, dtype=np.int64)
    for r in range(len(items)):
        order = np.argsort(-scores[r], kind="stable")
        seen: list[int] = []
        for j in order:
            it = int(items[r, j])
            if not np.isfinite(scores[r, j]) or it < 0:
                break
            if it not in seen:
                seen.append(it)
                if len(seen) == k:
                    break
        out[r, :len(seen)] = seen
    return out


def revisit_counts(seq: np.ndarray) -> tuple[int, int]:
    """``(revisits, transitions)`` of one time-ordered sequence: positions t >= 1 whose item occurs in ``seq[:t]``."""
    seen: set[int] = set()
    rev = 0
    for t, it in enumerate(np.asarray(seq, dtype=np.int64).tolist()):
        rev += t > 0 and it in seen
        seen.add(it)
    return rev, max(len(seq) - 1, 0)


def repeat_probability(histories: list[np.ndarray], train_seqs: list[np.ndarray], prior_strength: float) -> np.ndarray:
    """P(the next visit is a revisit) per user: the user's own revisit rate, shrunk to the global one.

    ``λ_u = (r_u + m·λ̄) / (n_u + m)`` with ``r_u`` / ``n_u`` the revisits / transitions of the user's
    training sequence, ``λ̄ = Σ r / Σ n`` over every training sequence and ``m = prior_strength``
    (a Beta prior of ``m`` pseudo-transitions at the global rate).

    Args:
        histories: (U,) each test user's training sequence.
        train_seqs: every user's training sequence (the global rate).
        prior_strength: ``m`` >= 0.

    Returns:
        (U,) probabilities in [0, 1].
    """
    tot = np.array([revisit_counts(s) for s in train_seqs], dtype=np.float64).reshape(-1, 2).sum(axis=0)
    glob = tot[0] / tot[1] if tot[1] > 0 else 0.0
    ru = np.array([revisit_counts(h) for h in histories], dtype=np.float64).reshape(-1, 2)
    den = ru[:, 1] + prior_strength
    return np.where(den > 0, (ru[:, 0] + prior_strength * glob) / np.maximum(den, 1e-12), glob)


def repeat_explore_lists(beam_items: np.ndarray, beam_logp: np.ndarray, rep_items: np.ndarray, rep_counts: np.ndarray,
                         rep_logp: np.ndarray, lam: np.ndarray, k: int) -> np.ndarray:
    """Repeat-explore decoding: a mixture of the user's own places and the model's new places.

    ``score(i) = λ_u · c_i / Σ_j c_j`` for a history item ``i`` (``c`` = its visits), and
    ``score(i) = (1 − λ_u) · p(i) / (1 − Σ_{j ∈ history} p(j))`` for a new item from the beam, where
    ``p`` is the model's probability (``exp`` of the summed SID log-probabilities) and the
    denominator renormalises it over the items the user has not visited. ``λ_u`` is
    :func:`repeat_probability`. The top ``k`` by score, history items first on ties (most recent first).

    Args:
        beam_items, beam_logp: (U, B) beam-search items (-1 = none) and log-probabilities.
        rep_items, rep_counts: (U, C) the user's distinct history items, most recent first (-1 padded), and visits.
        rep_logp: (U, C) the model's log-probability of each history item (:func:`score_items`).
        lam: (U,) repeat probabilities.
        k: list length.

    Returns:
        (U, k) item indices, best first (-1 padded).
    """
    rep_ok = rep_items >= 0
    c = np.where(rep_ok, rep_counts, 0.0)
    p_rep = c / np.maximum(c.sum(axis=1, keepdims=True), 1e-12)
    p_hist = np.where(rep_ok, np.exp(rep_logp), 0.0).sum(axis=1, keepdims=True)
    is_hist = (beam_items[:, :, None] == np.where(rep_ok, rep_items, -2)[:, None, :]).any(axis=2)
    p_new = np.where((beam_items >= 0) & ~is_hist, np.exp(beam_logp), 0.0) / np.maximum(1.0 - p_hist, 1e-12)
    lam = np.asarray(lam, dtype=np.float64)[:, None]
    s_rep = np.where(rep_ok & (c > 0), lam * p_rep, -np.inf)
    s_new = np.where((beam_items >= 0) & ~is_hist, (1.0 - lam) * p_new, -np.inf)
    return merge_ranked(rep_items, s_rep, beam_items, s_new, k)


def near_scores(logp: np.ndarray, distance_km: np.ndarray, decay_km: float) -> np.ndarray:
    """Distance-weighted decoding: ``log p(i | history) − d_i / τ``.

    Ranking by it is ranking by ``p(i | history) · exp(−d_i / τ)``: the model's probability times the
    distance kernel of the nearby-popularity baseline (``τ`` = ``evaluate.nearby_decay_km``, ``d_i`` =
    km from the user's last visit), a soft form of reachability-constrained decoding. The kernel
    carries no popularity term, since the model's probability already has one.

    Args:
        logp: (U, C) model log-probabilities of candidate items (-inf = no candidate).
        distance_km: (U, C) km from each user's last visit.
        decay_km: ``τ`` > 0.

    Returns:
        (U, C) scores (-inf where ``logp`` is -inf).
    """
    if decay_km <= 0:
        raise ValueError(f"decay_km must be > 0, got {decay_km}")
    return np.asarray(logp, dtype=np.float64) - np.asarray(distance_km, dtype=np.float64) / decay_km


def near_candidates(beam_items: np.ndarray, near_items: np.ndarray, history_items: np.ndarray | None = None,
                    allowed: np.ndarray | None = None) -> np.ndarray:
    """(U, B + M) candidates of distance-weighted decoding: the beam's items, then the nearest unvisited
    items; repeats within a row, items in ``history_items`` (U, C) and items not ``allowed`` (U, N) become -1."""
    cand = np.concatenate([beam_items, near_items], axis=1).astype(np.int64)
    if allowed is not None:
        cand = np.where((cand >= 0) & allowed[np.arange(len(cand))[:, None], np.clip(cand, 0, None)], cand, -1)
    if history_items is not None:
        hist = np.where(history_items >= 0, history_items, -2)
        cand = np.where((cand[:, :, None] == hist[:, None, :]).any(axis=2), -1, cand)
    for r in range(len(cand)):
        _, first = np.unique(cand[r], return_index=True)
        dup = np.ones(cand.shape[1], dtype=bool)
        dup[first] = False
        cand[r, dup] = -1
    return cand


def reachable_mask(recent: np.ndarray, lat: np.ndarray, lon: np.ndarray, radius_km: float, max_elements: int = 1 << 22) -> np.ndarray:
    """(U, N) bool: item within ``radius_km`` of any of the user's recent items ((U, R), -1 = pad).

    Distances are computed one recent column at a time for blocks of users sized so that a block
    holds at most ``max_elements`` distances (32 MB of float64; the haversine's temporaries are a
    few of those), so the working memory does not grow with U x R x N.
    """
    out = np.zeros((len(recent), len(lat)), dtype=bool)
    chunk = max(1, int(max_elements) // max(len(lat), 1))
    for s in range(0, len(recent), chunk):
        r = recent[s:s + chunk]
        for j in range(r.shape[1]):
            ok = r[:, j] >= 0
            if not ok.any():
                continue
            rc = r[ok, j]
            d = haversine_km(lat[rc][:, None], lon[rc][:, None], lat[None, :], lon[None, :])  # (b, N)
            out[s:s + chunk][ok] |= d <= radius_km
    return out


def reach_share(recommended: np.ndarray, recent: np.ndarray, lat: np.ndarray, lon: np.ndarray, radius_km: float) -> float:
    """Share of recommended items within ``radius_km`` of any of the user's recent locations.

    Args:
        recommended: (U, K) item indices (-1 entries are ignored).
        recent: (U, R) item indices of each user's most recent history items (-1 = pad).
        lat, lon: (N,) item coordinates in degrees.

    Returns:
        ``Σ_u Σ_k 1[min_r d(rec_uk, recent_ur) <= radius] / #valid recommendations`` (NaN if none).
    """
    rec_ok, rc_ok = recommended >= 0, recent >= 0
    ri, ci = np.clip(recommended, 0, None), np.clip(recent, 0, None)
    d = haversine_km(lat[ri][:, :, None], lon[ri][:, :, None], lat[ci][:, None, :], lon[ci][:, None, :])  # (U, K, R)
    d = np.where(rc_ok[:, None, :], d, np.inf).min(axis=2)  # (U, K)
    n = rec_ok.sum()
    return float(((d <= radius_km) & rec_ok).sum() / n) if n else float("nan")
