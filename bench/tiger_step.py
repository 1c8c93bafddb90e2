"""Benchmark: one TIGER-style training step (``lgsid.evaluate.tiger``) by dropout, CPU bf16 autocast and encoder input, side by side.

    python bench/tiger_step.py            # 4 interleaved rounds of 15 steps per setting
    python bench/tiger_step.py --quick    # 2 rounds of 4 steps

Each timing is one epoch of ``train_tiger`` (the evaluation's own training loop, model construction included) over
``steps`` batches, with the evaluation's default model (``evaluate.tiger_*``: d_model 64, 1 layer, batch 512, 8 history
items of 3 codes + suffix) over a random 3,000-item catalogue with 64-64-64 codes. The settings
(``evaluate.tiger_dropout`` 0.1 / 0.0 x ``evaluate.cpu_bf16`` off / on with one encoder token per SID code, and
the default: dropout 0, float32, ``evaluate.tiger_history_tokens=item``, one encoder token per history item) are
timed in interleaved rounds in one process at 1 thread (what each evaluation worker runs at,
``evaluate.torch_threads``), so load changes hit all alike; the median seconds per step is printed per setting
with its ratio to the old default (dropout 0.1, bf16, sid tokens). Target: the default is the fastest setting.
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

SETTINGS = [(0.1, True, "sid"), (0.1, False, "sid"), (0.0, True, "sid"), (0.0, False, "sid"), (0.0, False, "item")]
OLD, NEW = (0.1, True, "sid"), (0.0, False, "item")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds of 4 steps")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=15)
    a = ap.parse_args()
    rounds, steps = (2, 4) if a.quick else (a.rounds, a.steps)

    import torch

    from lgsid.config import EvaluateConfig
    from lgsid.evaluate.tiger import SIDVocab, train_tiger
    from lgsid.tokenizer import dedup_suffix
    from lgsid.train.runtime import cpu_bf16_supported

    torch.set_num_threads(1)
    ec = EvaluateConfig()
    rng = np.random.default_rng(0)
    n_items, batch, hist_len = 3000, ec.tiger_batch_size, ec.max_history
    codes = rng.integers(0, 64, (n_items, 3))
    vocab = SIDVocab.from_codes(codes, dedup_suffix(codes))
    hist = rng.integers(0, n_items, (steps * batch, hist_len))
    tgt = rng.integers(0, n_items, steps * batch)

    def run(p: float, bf16: bool, tokens: str) -> float:
        """Seconds per step of the evaluation's own training loop: one epoch of ``steps`` batches."""
        t0 = time.perf_counter()
        train_tiger(vocab, hist, tgt, seed=0, epochs=1, d_model=ec.tiger_d_model, nhead=ec.tiger_heads, layers=ec.tiger_layers,
                    batch_size=batch, lr=ec.tiger_lr, bf16=bf16, dropout=p, history_tokens=tokens)
        return (time.perf_counter() - t0) / steps

    for s in SETTINGS:
        run(*s)  # warm-up of each setting's kernels
    times: dict[tuple[float, bool, str], list[float]] = {s: [] for s in SETTINGS}
    for _ in range(rounds):
        for s in SETTINGS:
            times[s].append(run(*s))
    med = {s: float(np.median(v)) for s, v in times.items()}
    print(f"tiger_step: batch {batch}, {hist_len} history items x {vocab.length} tokens, vocab {vocab.vocab_size}, 1 thread, "
          f"native cpu bf16: {cpu_bf16_supported()}, load avg {os.getloadavg()[0]:.1f}, {rounds} rounds x {steps} steps")
    print(f"{'dropout':>8} {'autocast':>9} {'tokens':>7} {'s/step':>8} {'vs old default':>15}")
    for s in SETTINGS:
        tag = "  (old default)" if s == OLD else "  (default)" if s == NEW else ""
        print(f"{s[0]:8.1f} {'bf16' if s[1] else 'float32':>9} {s[2]:>7} {med[s]:8.4f} {med[OLD] / med[s]:14.2f}x{tag}")
    fastest = min(med, key=med.get)
    ok = fastest == NEW
    print(f"default (dropout 0, float32, item tokens) is the fastest setting: {'PASS' if ok else 'FAIL'} "
          f"(fastest: dropout {fastest[0]}, {'bf16' if fastest[1] else 'float32'}, {fastest[2]} tokens)")
    print(json.dumps({"bench": "tiger_step", "s_per_step": {f"dropout={d},bf16={b},tokens={t}": round(med[(d, b, t)], 5) for d, b, t in SETTINGS},
                      "speedup_default_vs_old": round(med[OLD] / med[NEW], 3), "default_fastest": ok}))


if __name__ == "__main__":
    main()
