"""Accelerator check: embed, reward, G-DPO and TIGER on the demo data, prompts/s and wall time per step.

    bench/gpu_check.sh            # on a CUDA machine: demo defaults (3000 items), bf16 autocast
    bench/gpu_check.sh --small    # CPU smoke check (200 items, a few steps); device auto -> cpu

Runs in one process without Spark (so it fits in ~5 minutes and needs no JVM on the GPU machine),
calling the library's own pieces on ``device = resolve_device(train.device)``:

* **embed**: :func:`lgsid.encoder.load_encoder` + ``Encoder.encode`` of every item prompt, inside
  :func:`lgsid.train.runtime.autocast` (bf16 on CUDA, fp32 on CPU). Prompts/s.
* **reward**: reward lists with random candidates (:func:`lgsid.reward.random_lists`, the pandas
  path of the ablation; the pipeline's density-aware lists need Spark), their prompts embedded as
  above, then :func:`lgsid.reward.train_reward_model` (which trains on CPU: the MLP is tiny).
* **gdpo**: the training step of :mod:`lgsid.gdpo.loop` — the collate of
  :func:`lgsid.gdpo.examples.make_collate`, :func:`lgsid.gdpo.losses.gdpo_batch_loss` (bf16 autocast
  on CUDA), backward and AdamW on the LoRA parameters — over in-memory batches (chosen = the
  item's location, rejected = its farthest list candidate's), without Petastorm. Prompts/s counts
  the 3B prompts of every batch, as the loop's progress bar does.
* **tiger**: :func:`lgsid.evaluate.tiger.train_tiger` + :func:`lgsid.evaluate.tiger.recommend` on the
  demo users' sequences with 3-level residual k-means SIDs of the embed step's vectors. The TIGER
  code has no device argument: it runs on CPU even on a GPU machine (reported as such).

Targets (issue 14, MiniLM on an H100/H200-class GPU): embed >= 10,000 prompts/s, G-DPO >= 2,000
prompts/s; they are judged only on CUDA (on CPU they are shown as n/a). JSON summary last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TARGETS = {"embed_prompts_per_s": 10_000, "gdpo_prompts_per_s": 2_000}


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def demo_prompts(cfg, n_items: int):
    """Demo items (lgsid.sources.demo) with their prompts, and the interactions."""
    import pandas as pd

    from lgsid.config import replace
    from lgsid.prompts import combine_prompt, format_content, format_location
    from lgsid.sources.demo import generate

    d = replace(cfg, demo={"n_items": n_items, "n_users": max(20, n_items * 2 // 3), "n_interactions": n_items * 10}).demo
    data = generate(d)
    items = data.items.sort_values("item_id").reset_index(drop=True)
    rows = items.to_dict("records")
    content = [format_content(r, cfg.prompts) for r in rows]
    loc = [format_location(r, cfg.prompts) for r in rows]
    p = pd.DataFrame({
        "item_id": items["item_id"], "content_text": content, "location_text": loc,
        "prompt": [combine_prompt(c, l, cfg.prompts) for c, l in zip(content, loc)],
        "lat": items["lat"], "lon": items["lon"],
    })
    return p, data.interactions


def rq_codes(x: np.ndarray, levels: int, k: int, seed: int) -> np.ndarray:
    """Residual k-means codes (N, levels) with sklearn KMeans (a stand-in tokenizer for the TIGER timing)."""
    from sklearn.cluster import KMeans

    r = x.astype(np.float64).copy()
    out = np.zeros((len(x), levels), dtype=np.int64)
    for lv in range(levels):
        km = KMeans(n_clusters=min(k, len(x)), n_init=1, random_state=seed + lv).fit(r)
        out[:, lv] = km.labels_
        r -= km.cluster_centers_[km.labels_]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="CPU smoke size: 200 items, 16 reward lists, 4 G-DPO steps, 1 TIGER epoch")
    ap.add_argument("--items", type=int, default=None, help="demo items (default 3000, or 200 with --small)")
    ap.add_argument("--lists", type=int, default=None, help="reward lists (default reward.max_anchors, or 16 with --small)")
    ap.add_argument("--gdpo-steps", type=int, default=None, help="G-DPO steps (default 40, or 4 with --small)")
    ap.add_argument("--batch-size", type=int, default=None, help="G-DPO pairs per batch (default 64, or 8 with --small)")
    ap.add_argument("--embed-batch-size", type=int, default=None, help="prompts per encoder forward (default 512, or 64 with --small)")
    ap.add_argument("--device", default="auto", help="train.device: auto, cpu or cuda (default: auto)")
    args = ap.parse_args(argv)

    import torch

    from lgsid.config import load_config, replace
    from lgsid.encoder import load_encoder
    from lgsid.gdpo.examples import make_collate
    from lgsid.gdpo.losses import gdpo_batch_loss
    from lgsid.reward import ListBatch, random_lists, soft_labels, train_reward_model
    from lgsid.train.runtime import autocast, resolve_device, seed_everything

    small = args.small
    n_items = args.items or (200 if small else 3000)
    steps = args.gdpo_steps or (4 if small else 40)
    bs = args.batch_size or (8 if small else 64)
    ebs = args.embed_batch_size or (64 if small else 512)
    cfg = load_config(None)
    cfg = replace(cfg, train={"device": args.device}, encoder={"batch_size": ebs},
                  reward={"epochs": 2 if small else cfg.reward.epochs},
                  evaluate={"tiger_epochs": 1 if small else cfg.evaluate.tiger_epochs})
    device = resolve_device(cfg.train.device)
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    print(f"gpu_check: device {device}{' (' + gpu + ')' if gpu else ''}, bf16 autocast: {device == 'cuda'}, items {n_items}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, load avg {os.getloadavg()[0]:.1f}")
    res: dict[str, dict] = {}
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    prompts, inter = demo_prompts(cfg, n_items)
    res["data"] = {"seconds": round(time.perf_counter() - t0, 2), "items": len(prompts), "interactions": len(inter)}

    # --- embed
    enc = load_encoder(cfg.encoder, device=device)

    def encode(texts: list[str]) -> tuple[np.ndarray, float]:
        _sync(device)
        t = time.perf_counter()
        with autocast(device):
            e = enc.encode(texts)
        _sync(device)
        return e, time.perf_counter() - t

    encode(prompts["prompt"].head(min(len(prompts), ebs)).tolist())  # warm-up (kernels, allocator)
    emb, secs = encode(prompts["prompt"].tolist())
    res["embed"] = {"seconds": round(secs, 2), "prompts": len(prompts), "prompts_per_s": round(len(prompts) / secs, 1)}
    print(f"embed   {len(prompts):>7} prompts {secs:8.2f} s  {len(prompts) / secs:10.1f} prompts/s")

    # --- reward
    k = cfg.negatives.k
    t0 = time.perf_counter()
    lists = random_lists(prompts, k, cfg.reward.seed, cfg.prompts)
    n_lists = min(len(lists), args.lists or (16 if small else cfg.reward.max_anchors or len(lists)))
    lists = lists.head(n_lists)
    flat = [p for ps in lists["prompts"] for p in ps]
    lemb, esecs = encode(flat)
    J = k + 1
    data = ListBatch(lists["item_id"].to_numpy(), lemb.reshape(n_lists, J, -1),
                     np.tile(soft_labels(np.arange(J), k), (n_lists, 1)).astype(np.float32), np.ones((n_lists, J), dtype=bool))
    t1 = time.perf_counter()
    rmodel, rmetrics = train_reward_model(data, cfg)
    tsecs = time.perf_counter() - t1
    secs = time.perf_counter() - t0
    res["reward"] = {"seconds": round(secs, 2), "lists": n_lists, "prompts": len(flat), "embed_seconds": round(esecs, 2),
                     "prompts_per_s": round(len(flat) / esecs, 1), "mlp_train_seconds": round(tsecs, 2), "mlp_device": "cpu",
                     "val_ndcg": round(rmetrics["val_ndcg"], 4)}
    print(f"reward  {len(flat):>7} prompts {secs:8.2f} s  {len(flat) / esecs:10.1f} prompts/s (embedding); MLP {tsecs:.2f} s on cpu")

    # --- gdpo
    reward = rmodel.to(device).requires_grad_(False)
    seed_everything(cfg.gdpo.seed)
    pol = load_encoder(cfg.encoder, device=device).add_lora()
    pol.eval()
    opt = torch.optim.AdamW(pol.lora_parameters(), lr=cfg.gdpo.lr)
    collate = make_collate(pol.tokenizer, cfg.encoder.max_length, cfg.prompts)
    far = {r.item_id: r.prompts[-1] for r in lists.itertuples()}
    ex = [{"anchor_item_id": r.item_id, "other_item_id": None, "pair_type": "geo_constrained", "content_text": r.content_text,
           "chosen_location": r.location_text, "rejected_location": far.get(r.item_id, r.prompt).split("; ", 1)[-1],
           "true_prompt": r.prompt} for r in prompts.itertuples()]
    rng = np.random.default_rng(cfg.gdpo.seed)
    n_prompts, losses, secs = 0, [], 0.0
    for s in range(steps + 1):  # step 0 is a warm-up, not timed
        batch = collate([ex[i] for i in rng.choice(len(ex), size=min(bs, len(ex)), replace=False)])
        _sync(device)
        t = time.perf_counter()
        loss, parts = gdpo_batch_loss(pol, pol, reward, batch, cfg.gdpo, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if s:
            secs += time.perf_counter() - t
            n_prompts += 3 * batch["n"]
        losses.append(float(parts["loss"]))
    res["gdpo"] = {"seconds": round(secs, 2), "steps": steps, "batch_size": bs, "prompts": n_prompts,
                   "prompts_per_s": round(n_prompts / secs, 1), "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4)}
    print(f"gdpo    {n_prompts:>7} prompts {secs:8.2f} s  {n_prompts / secs:10.1f} prompts/s ({steps} steps x {bs} pairs x 3 prompts; "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f})")

    # --- tiger
    from lgsid.evaluate.tiger import PrefixTrie, SIDVocab, history_matrix, recommend, train_tiger, training_examples
    from lgsid.tokenizer.dedup import dedup_suffix

    t0 = time.perf_counter()
    codes = rq_codes(emb, 3, 16 if small else 64, 0)
    vocab = SIDVocab.from_codes(codes, dedup_suffix(codes))
    idx = {v: i for i, v in enumerate(prompts["item_id"])}
    seqs = [np.array([idx[i] for i in g.sort_values("ts")["item_id"]], dtype=np.int64) for _, g in inter.groupby("user_id")]
    seqs = [s for s in seqs if len(s) >= 3]
    e = cfg.evaluate
    hist, tgt = training_examples([s[:-1] for s in seqs], 20)
    model = train_tiger(vocab, hist, tgt, seed=0, epochs=e.tiger_epochs, d_model=e.tiger_d_model, nhead=e.tiger_heads,
                        layers=e.tiger_layers, batch_size=e.tiger_batch_size, lr=e.tiger_lr, dropout=e.tiger_dropout,
                        history_tokens=e.tiger_history_tokens, lr_schedule=e.tiger_lr_schedule)
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    model.eval()
    recs = recommend(model, vocab, PrefixTrie(vocab.sids), history_matrix([s[:-1] for s in seqs], 20), e.beam_size)
    t_rec = time.perf_counter() - t1
    hit = float(np.mean([s[-1] in r for s, r in zip(seqs, recs)]))
    res["tiger"] = {"seconds": round(t_train + t_rec, 2), "train_seconds": round(t_train, 2), "train_examples": len(tgt),
                    "epochs": e.tiger_epochs, "users": len(seqs), "recommend_seconds": round(t_rec, 2),
                    "users_per_s": round(len(seqs) / t_rec, 1), "hit_at_beam": round(hit, 4), "device": "cpu"}
    print(f"tiger   {len(tgt):>7} examples x {e.tiger_epochs} epochs {t_train:.2f} s; beam search {len(seqs)} users {t_rec:.2f} s "
          f"({len(seqs) / t_rec:.0f} users/s) on cpu; Hit@{e.beam_size} {hit:.3f}")

    wall = time.perf_counter() - t_all
    targets = {}
    if device == "cuda":
        targets = {
            "embed_prompts_per_s": {"target": f">= {TARGETS['embed_prompts_per_s']}", "value": res["embed"]["prompts_per_s"],
                                    "pass": res["embed"]["prompts_per_s"] >= TARGETS["embed_prompts_per_s"]},
            "gdpo_prompts_per_s": {"target": f">= {TARGETS['gdpo_prompts_per_s']}", "value": res["gdpo"]["prompts_per_s"],
                                   "pass": res["gdpo"]["prompts_per_s"] >= TARGETS["gdpo_prompts_per_s"]},
        }
    targets["wall_within_5_min"] = {"target": "<= 300", "value": round(wall, 1), "pass": wall <= 300}
    print("\n== targets" + ("" if device == "cuda" else " (prompts/s targets are for CUDA: n/a on cpu)"))
    for name, t in targets.items():
        print(f"{name:<22} {t['value']:>10}  target {t['target']:<9} {'PASS' if t['pass'] else 'FAIL'}")
    print(json.dumps({"device": device, "gpu": gpu, "bf16_autocast": device == "cuda", "small": small, "wall_seconds": round(wall, 1),
                      "steps": res, "targets": targets}))
    return 0 if all(t["pass"] for t in targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
