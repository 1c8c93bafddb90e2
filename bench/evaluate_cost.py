"""Benchmark: the cost of ``lgsid evaluate``'s model fits, old execution (in-process, sequential,
``torch_threads=2``) against the new one (``evaluate.workers`` spawned processes, 1 thread each).

    python bench/evaluate_cost.py [--items 6000] [--examples 62000] [--users 2000] [--steps 20] [--workers 2] [--quick]

A full default evaluation is too long to run twice on a shared machine, so this times the unit
the evaluation is made of, with the real code (:func:`lgsid.evaluate.tiger.train_tiger`,
:func:`lgsid.evaluate.baselines.train_sasrec`, :func:`lgsid.evaluate.din.train_din`,
:func:`lgsid.evaluate.tiger.recommend`) on shapes of the evaluation input: ``--items`` items with
random 3-level SIDs (256 codes each, plus the dedup suffix), ``--examples`` next-item examples of
``max_history`` 8, ``--users`` test users. Each kind trains ``--steps`` minibatches (default
batch sizes), timed per step, both ways back to back (so load changes hit them alike):

Each timing follows a 1-step warm-up of the same kind in the same process (first-step allocation
and import costs are not per-step costs).

* **old**: one job at a time in this process at 2 threads (the former default);
* **new**: ``--workers`` identical jobs at once in spawned processes at 1 thread each
  (:func:`lgsid.evaluate.jobs.run_jobs`), so the throughput is workers / seconds per step.

It then projects the default evaluation's fit cost from the default config (``evaluate.*``): 12 TIGER fits
(4 variants x 3 seeds) + 3 SASRec fits at ``tiger_epochs x examples / tiger_batch_size`` steps, 15 DIN fits
(origin + 4 variants, x 3 seeds) at ``din_epochs x (1 + din_negatives) x examples / din_batch_size`` steps, and
18 decoding passes (3 rows for lgsid, 1 for the others, x 3 seeds) over the test users. Every fit uses the
config's width, heads, layers, batch size, learning rate and schedule. Prints a table and, last, one JSON line. Target: projected new
total <= 300 s (issue 14 item 2: the whole evaluation <= 5 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

def _ec():
    from lgsid.config import EvaluateConfig

    return EvaluateConfig()


H = _ec().max_history


def _data(items: int, examples: int, users: int, seed: int = 0) -> dict:
    from lgsid.tokenizer import dedup_suffix

    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (items, 3))
    hist = rng.integers(0, items, (examples, H))
    hist[:, : H // 2] = np.where(rng.random((examples, H // 2)) < 0.3, -1, hist[:, : H // 2])  # some left padding
    hist[:, : H // 2] = np.where(np.cumprod(hist[:, : H // 2][:, ::-1] >= 0, axis=1)[:, ::-1] > 0, hist[:, : H // 2], -1)
    return {"codes": codes, "suffix": np.asarray(dedup_suffix(codes), dtype=np.int64), "hist": hist, "tgt": rng.integers(0, items, examples),
            "test": hist[:users], "items": items}


def _job(job: tuple[str, int], sh: dict) -> float:
    """Seconds per training step (or per decoded user for 'decode') of one job, after a 1-step warm-up of the same kind."""
    if not job[0].startswith("warm:"):
        _job(("warm:" + job[0], 1), sh)
    else:
        job = (job[0][5:], job[1])
    import torch

    from lgsid.evaluate import baselines as bl
    from lgsid.evaluate import din, tiger

    kind, steps = job
    ec = _ec()
    model_kw = dict(seed=0, epochs=1, d_model=ec.tiger_d_model, nhead=ec.tiger_heads, layers=ec.tiger_layers, batch_size=ec.tiger_batch_size,
                    lr=ec.tiger_lr, dropout=ec.tiger_dropout, lr_schedule=ec.tiger_lr_schedule)
    vocab = tiger.SIDVocab.from_codes(sh["codes"], sh["suffix"])
    if kind in ("tiger", "decode"):
        n = steps * ec.tiger_batch_size if kind == "tiger" else ec.tiger_batch_size
        t0 = time.perf_counter()
        m = tiger.train_tiger(vocab, sh["hist"][:n], sh["tgt"][:n], history_tokens=ec.tiger_history_tokens, **model_kw)
        if kind == "tiger":
            return (time.perf_counter() - t0) / steps
        trie = tiger.PrefixTrie(vocab.sids)
        t0 = time.perf_counter()
        tiger.recommend(m, vocab, trie, sh["test"], ec.beam_size)
        return (time.perf_counter() - t0) / len(sh["test"])
    if kind == "sasrec":
        n = steps * ec.tiger_batch_size
        t0 = time.perf_counter()
        bl.train_sasrec(sh["items"], sh["hist"][:n], sh["tgt"][:n], negatives=ec.sasrec_negatives, **model_kw)
        return (time.perf_counter() - t0) / steps
    n = steps * ec.din_batch_size
    rng = np.random.default_rng(0)
    per = 1 + ec.din_negatives
    Hh, T, Y = din.ctr_examples(sh["hist"][: n // per + 1], sh["tgt"][: n // per + 1], sh["items"], ec.din_negatives, rng)
    torch.manual_seed(0)
    model = din.DIN(sh["items"], sh["codes"], dim=ec.din_dim, sid_mode=ec.din_sid_mode)
    t0 = time.perf_counter()
    din.train_din(model, Hh[:n], T[:n], Y[:n], seed=0, epochs=1, batch_size=ec.din_batch_size, lr=ec.din_lr, lr_schedule=ec.din_lr_schedule)
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> dict:
    from lgsid.evaluate.jobs import run_jobs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=6000)
    ap.add_argument("--examples", type=int, default=62000, help="next-item training examples (about interactions - users)")
    ap.add_argument("--users", type=int, default=2000, help="test users (evaluate.max_users)")
    ap.add_argument("--steps", type=int, default=20, help="training steps timed per kind")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="--steps 4 --users 256")
    a = ap.parse_args(argv)
    if a.quick:
        a.steps, a.users = 4, 256
    sh = _data(a.items, a.examples, a.users)
    load = os.getloadavg()[0]
    print(f"evaluate_cost: {a.items} items, {a.examples} examples, {a.users} test users, {a.steps} steps per kind; cpu count {os.cpu_count()}, load avg {load:.1f}")
    ec = _ec()
    tiger_steps = ec.tiger_epochs * a.examples / ec.tiger_batch_size
    counts = {"tiger": 12 * tiger_steps, "sasrec": 3 * tiger_steps,
              "din": 15 * ec.din_epochs * (1 + ec.din_negatives) * a.examples / ec.din_batch_size, "decode": 18 * a.users}
    print(f"default config: tiger_epochs {ec.tiger_epochs} ({ec.tiger_lr_schedule}, lr {ec.tiger_lr}), din_epochs {ec.din_epochs} "
          f"({ec.din_lr_schedule}, lr {ec.din_lr}), tiger_history_tokens {ec.tiger_history_tokens}")
    rows, proj = {}, {"old": 0.0, "new": 0.0}
    print(f"{'kind':8s} {'old s/unit':>11s} {'new s/unit':>11s} {'units':>9s} {'old proj s':>11s} {'new proj s':>11s}")
    for kind in ("tiger", "sasrec", "din", "decode"):
        old = run_jobs(_job, [(kind, a.steps)], sh, workers=1, threads=2)[0]
        news = run_jobs(_job, [(kind, a.steps)] * a.workers, sh, workers=a.workers, threads=1)
        new = float(np.mean(news)) / a.workers  # throughput of the pool
        rows[kind] = {"old_s_per_unit": old, "new_s_per_unit": new, "units": counts[kind]}
        proj["old"] += old * counts[kind]
        proj["new"] += new * counts[kind]
        print(f"{kind:8s} {old:11.4f} {new:11.4f} {counts[kind]:9.0f} {old * counts[kind]:11.1f} {new * counts[kind]:11.1f}")
    print(f"projected fit + decode cost of the default evaluation: old {proj['old']:.0f} s, new {proj['new']:.0f} s ({proj['old'] / proj['new']:.1f}x); "
          f"target new <= 300 s: {'PASS' if proj['new'] <= 300 else 'FAIL'}; load avg at end {os.getloadavg()[0]:.1f}")
    out = {"bench": "evaluate_cost", "items": a.items, "examples": a.examples, "users": a.users, "steps": a.steps, "workers": a.workers,
           "load_avg_start": load, "load_avg_end": os.getloadavg()[0], "kinds": rows, "projected_old_s": proj["old"], "projected_new_s": proj["new"],
           "targets": {"projected_new_s_le_300": proj["new"] <= 300}}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
