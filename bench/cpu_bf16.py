"""Benchmark: the encoder on CPU in fp32 vs under bf16 autocast (``encoder.cpu_bf16``), side by side.

    python bench/cpu_bf16.py               # 512 prompts, 2 threads
    python bench/cpu_bf16.py --quick       # 128 prompts

Times, alternating fp32 / bf16 so load changes hit both alike (median of ``--repeats``):

* **encode**: :meth:`lgsid.encoder.Encoder.encode` of the prompts (the ``embed`` step and G-DPO's
  re-embedding), in prompts/s;
* **LoRA step**: one G-DPO-shaped training step, forward + backward through the LoRA encoder of
  ``--train-batch`` prompts and an AdamW step on the adapter, in prompts/s;

and the cosine between the fp32 and bf16 embeddings of every prompt. Whether this CPU has native
bf16 (oneDNN: AVX512-BF16 or AMX) is printed: ``encoder.cpu_bf16=auto`` turns bf16 on exactly then.
Target where it is native: bf16 >= 1.5x fp32 on encode, min cosine >= 0.999. JSON last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TOWNS = ["Austin, Travis County, Texas", "Buffalo, Erie County, New York", "Oakland, Alameda County, California",
         "Chicago, Cook County, Illinois", "Pasadena, Los Angeles County, California", "Houston, Harris County, Texas"]
CATS = ["Food & Drink / Pizza", "Cafes & Desserts / Coffee Shop", "Shopping / Hardware", "Services / Laundry", "Food & Drink / Tacos"]


def prompts(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [f"Shop {i} {CATS[rng.integers(len(CATS))]}, price {rng.integers(5, 60)}. Located in {TOWNS[rng.integers(len(TOWNS))]}"
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=512, help="prompts to encode")
    ap.add_argument("--quick", action="store_true", help="128 prompts, 2 repeats")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-batch", type=int, default=48, help="prompts per LoRA step (G-DPO: 3 x gdpo.batch_size)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    n, reps = (128, 2) if a.quick else (a.n, a.repeats)

    import torch

    from lgsid.config import load_config
    from lgsid.encoder import load_encoder
    from lgsid.train.runtime import autocast, cpu_bf16_supported

    torch.set_num_threads(a.threads)
    cfg = load_config(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf", "local.yaml"))
    texts = prompts(n)
    enc = {m: load_encoder(dataclasses.replace(cfg.encoder, cpu_bf16=m), runtime="torch") for m in ("off", "on")}
    train = {m: load_encoder(dataclasses.replace(cfg.encoder, cpu_bf16=m), runtime="torch").add_lora() for m in ("off", "on")}
    opt = {m: torch.optim.AdamW([p for p in train[m].parameters() if p.requires_grad], lr=1e-4) for m in train}
    batch = train["off"].tokenize(texts[: a.train_batch])

    def lora_step(m: str) -> None:
        e = train[m]
        e.train()
        with autocast("cpu", e.cpu_bf16):
            out = e(**batch)
        loss = (1.0 - (out[: len(out) // 2] * out[len(out) // 2:2 * (len(out) // 2)]).sum(-1)).mean()
        opt[m].zero_grad()
        loss.backward()
        opt[m].step()

    x32, x16 = enc["off"].encode(texts[:64]), enc["on"].encode(texts[:64])  # warm-up
    lora_step("off"), lora_step("on")
    t = {k: [] for k in ("encode_off", "encode_on", "lora_off", "lora_on")}
    for _ in range(reps):
        for m in ("off", "on"):
            s = time.perf_counter()
            y = enc[m].encode(texts)
            t[f"encode_{m}"].append(time.perf_counter() - s)
            if m == "off":
                x32 = y
            else:
                x16 = y
            s = time.perf_counter()
            lora_step(m)
            t[f"lora_{m}"].append(time.perf_counter() - s)
    med = {k: float(np.median(v)) for k, v in t.items()}
    cos = (x32 * x16).sum(axis=1) / np.linalg.norm(x32, axis=1) / np.linalg.norm(x16, axis=1)
    native = cpu_bf16_supported()
    out = {
        "bench": "cpu_bf16", "native_bf16": native, "threads": a.threads, "prompts": n,
        "encode_fp32_prompts_per_s": round(n / med["encode_off"], 1), "encode_bf16_prompts_per_s": round(n / med["encode_on"], 1),
        "encode_speedup": round(med["encode_off"] / med["encode_on"], 3),
        "lora_fp32_prompts_per_s": round(a.train_batch / med["lora_off"], 1), "lora_bf16_prompts_per_s": round(a.train_batch / med["lora_on"], 1),
        "lora_speedup": round(med["lora_off"] / med["lora_on"], 3),
        "min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6),
    }
    out["targets"] = {"encode_speedup": ">=1.5", "min_cosine": ">=0.999"} if native else {"min_cosine": ">=0.999"}
    print(f"native bf16 on this CPU: {native}; {a.threads} threads; {n} prompts (encode), {a.train_batch} per LoRA step")
    print(f"{'':<12} {'fp32 prompts/s':>15} {'bf16 prompts/s':>15} {'bf16 / fp32':>12}")
    print(f"{'encode':<12} {out['encode_fp32_prompts_per_s']:>15.1f} {out['encode_bf16_prompts_per_s']:>15.1f} {out['encode_speedup']:>12.2f}")
    print(f"{'LoRA step':<12} {out['lora_fp32_prompts_per_s']:>15.1f} {out['lora_bf16_prompts_per_s']:>15.1f} {out['lora_speedup']:>12.2f}")
    print(f"cosine(fp32, bf16) over {n} prompts: min {out['min_cosine']:.6f}, mean {out['mean_cosine']:.6f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
