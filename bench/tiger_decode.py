"""Benchmark: TIGER's trie-constrained beam search at wide codebooks, against the plain algorithm, side by side.

    python bench/tiger_decode.py                      # 100k items, 8192-512-64 codes, 120 users, beam 40
    python bench/tiger_decode.py --sizes 64,64,64     # the demo's codebook width
    python bench/tiger_decode.py --quick              # 20k items, 40 users

``lgsid`` is :func:`lgsid.evaluate.tiger.recommend`: only live beams are decoded (one per user at the first
position), each step's beam x codes candidates are ranked by a partition (``top_b_stable``) and the decoder
state is projected onto the current position's codes only (``TigerModel.head_slice``). ``plain`` is the
textbook loop written here from the same model: every beam decoded at every position, the whole vocabulary
projected and sliced, a stable argsort of each (beam x codes) row. Both decode the same users with the same
untrained model (d_model 64, 1 layer: the evaluation's default size) over random codes of the given widths,
at one thread (what each evaluation fit runs at), in alternating rounds so load changes hit both alike.
Printed: median seconds per round and per user, the speed-up, whether the items are identical and the
largest score difference. Targets: identical items, scores within 1e-5, lgsid >= 2x faster at 8192 codes.
JSON last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def plain_recommend(model, vocab, trie, hist: np.ndarray, beam: int) -> tuple[np.ndarray, np.ndarray]:
    """The unoptimised reference: all q·b beams decoded, full-vocabulary logits, stable argsort per row."""
    import warnings

    import torch

    from lgsid.evaluate.tiger import BOS, _encode_batch

    warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors")  # as recommend does
    q, b = len(hist), beam
    with torch.no_grad():
        memory, pad = _encode_batch(model, vocab, hist, None)
        memory, pad = memory.repeat_interleave(b, dim=0), pad.repeat_interleave(b, dim=0)
        nodes = np.full((q, b), -1, dtype=np.int64)
        nodes[:, 0] = 0
        scores = np.full((q, b), -np.inf)
        scores[:, 0] = 0.0
        prefixes = np.zeros((q, b, 0), dtype=np.int64)
        for t in range(trie.depth):
            s, lo = int(vocab.sizes[t]), int(vocab.offsets[t])
            flat = prefixes.reshape(q * b, t)
            tok = torch.from_numpy(flat + vocab.offsets[:t]) if t else torch.zeros((q * b, 0), dtype=torch.long)
            tgt_in = torch.cat([torch.full((q * b, 1), BOS, dtype=torch.long), tok], dim=1)
            logits = model.decode(memory, pad, tgt_in)[:, -1]
            lp = torch.log_softmax(logits[:, lo:lo + s], dim=-1).numpy().astype(np.float64)
            ok = trie.children_of(nodes.reshape(-1), s) >= 0
            cand = np.where(ok, scores.reshape(-1, 1) + lp, -np.inf).reshape(q, b * s)
            top = np.argsort(-cand, axis=1, kind="stable")[:, :b]
            new_scores = np.take_along_axis(cand, top, axis=1)
            parent, code = top // s, top % s
            parent_nodes = np.take_along_axis(nodes, parent, axis=1)
            alive = np.isfinite(new_scores) & (parent_nodes >= 0)
            nodes = np.where(alive, trie.child(parent_nodes, code), -1)
            scores = np.where(alive, new_scores, -np.inf)
            prefixes = np.concatenate([np.take_along_axis(prefixes, parent[..., None], axis=1), code[..., None]], axis=2)
    return np.where(nodes >= 0, trie.leaf_item[np.clip(nodes, 0, None)], -1), scores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--sizes", default="8192,512,64", help="codes per level (default: %(default)s, the 2.33M model's)")
    ap.add_argument("--users", type=int, default=120)
    ap.add_argument("--beam", type=int, default=40)
    ap.add_argument("--batch", type=int, default=12, help="users per decoding batch (12 = beam_batch at 8192 codes x 40 beams)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20k items, 40 users, 2 rounds")
    args = ap.parse_args(argv)
    if args.quick:
        args.items, args.users, args.rounds = 20_000, 40, 2

    import torch

    from lgsid.evaluate.tiger import BEAM_BATCH_CELLS, PrefixTrie, SIDVocab, TigerModel, recommend
    from lgsid.tokenizer import dedup_suffix

    torch.set_num_threads(1)
    sizes = [int(x) for x in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    codes = np.stack([rng.integers(0, k, args.items) for k in sizes], axis=1)
    vocab = SIDVocab.from_codes(codes, np.asarray(dedup_suffix(codes)))
    trie = PrefixTrie(vocab.sids)
    torch.manual_seed(0)
    model = TigerModel(vocab.vocab_size, vocab.length, 8, d_model=64, nhead=4, layers=1, dropout=0.0).eval()
    hist = rng.integers(0, args.items, (args.users, 8))
    # the same batches both ways: recommend's own cap would otherwise choose them
    import lgsid.evaluate.tiger as tiger

    tiger.BEAM_BATCH_CELLS = max(BEAM_BATCH_CELLS, args.batch * args.beam * max(sizes))

    def run_lgsid():
        return recommend(model, vocab, trie, hist, args.beam, batch_size=args.batch, return_scores=True)

    def run_plain():
        outs = [plain_recommend(model, vocab, trie, hist[s:s + args.batch], args.beam) for s in range(0, len(hist), args.batch)]
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    print(f"tiger_decode: {args.items:,} items, codes {'-'.join(map(str, sizes))} (vocabulary {vocab.vocab_size:,}), "
          f"{args.users} users, beam {args.beam}, batches of {args.batch}, 1 thread, {args.rounds} alternating rounds")
    times: dict[str, list[float]] = {"plain": [], "lgsid": []}
    res = {}
    for r in range(args.rounds):
        for name, fn in (("plain", run_plain), ("lgsid", run_lgsid)) if r % 2 == 0 else (("lgsid", run_lgsid), ("plain", run_plain)):
            t0 = time.perf_counter()
            res[name] = fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    same = bool(np.array_equal(res["plain"][0], res["lgsid"][0]))
    fin = np.isfinite(res["plain"][1])
    diff = float(np.abs(res["plain"][1][fin] - res["lgsid"][1][fin]).max()) if fin.any() else 0.0
    speedup = med["plain"] / med["lgsid"]
    for k in ("plain", "lgsid"):
        print(f"{k:<6} {med[k]:8.2f} s per round   {1e3 * med[k] / args.users:8.1f} ms per user")
    print(f"speed-up {speedup:.2f}x; items identical: {same}; largest score difference {diff:.2e}")
    targets = {"identical_items": same, "scores_within_1e-5": diff <= 1e-5}
    if max(sizes) >= 8192:
        targets["speedup_at_least_2x"] = speedup >= 2.0
    for k, v in targets.items():
        print(f"{k:<24} {'PASS' if v else 'FAIL'}")
    print(json.dumps({"items": args.items, "sizes": sizes, "users": args.users, "beam": args.beam, "seconds": med,
                      "speedup": round(speedup, 2), "identical_items": same, "max_score_diff": diff, "targets": targets}))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
