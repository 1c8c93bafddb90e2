"""Benchmark: co-click pairs (lgsid.pairs.coclick_pairs, Eq. 5) on synthetic interactions.

    python bench/pairs.py                          # 10M interactions
    python bench/pairs.py --interactions 1000000   # smaller

Synthetic model: users with a heavy-tailed activity (Pareto), each clicking items of a home
neighbourhood (a contiguous id window) with Zipf popularity, so co-clicks are local and a few heavy
users have long histories (what the per-user cap is for). Reports wall time of the Spark job
(written to a noop sink after the per-anchor top-N), output pairs, peak RSS of the driver JVM +
Python (sampled), and the number of per-user pairs before/after the cap. Last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time

import numpy as np
import pandas as pd


def synth_interactions(n: int, n_users: int, n_items: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    act = rng.pareto(1.2, n_users) + 1.0
    user = rng.choice(n_users, size=n, p=act / act.sum())
    home = (np.arange(n_users) * (n_items / n_users)).astype(np.int64)
    offset = (rng.zipf(1.6, size=n) - 1) % 400  # popular items near the user's home window
    sign = rng.choice([-1, 1], size=n)
    item = (home[user] + sign * offset) % n_items
    ts = (pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 90 * 86400, n), unit="s")).astype("datetime64[us]")
    return pd.DataFrame({"user_id": [f"u{u}" for u in user], "item_id": [f"i{i}" for i in item], "ts": ts})


def _rss_mb(pids) -> float:
    tot = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        tot += int(line.split()[1]) / 1024
        except OSError:
            pass
    return tot


def _children(pid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if int(f.read().split(")")[1].split()[1]) == pid:
                        out.append(int(p))
            except (OSError, IndexError, ValueError):
                pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interactions", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=None, help="default: interactions / 20")
    ap.add_argument("--items", type=int, default=None, help="default: interactions / 10")
    ap.add_argument("--history-cap", type=int, default=50)
    ap.add_argument("--s-th", type=int, default=1)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--shuffle-partitions", type=int, default=16)
    ap.add_argument("--driver-memory", default="8g")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = args.interactions
    n_users = args.users or max(10, n // 20)
    n_items = args.items or max(10, n // 10)
    work = tempfile.mkdtemp(prefix="lgsid-bench-pairs-")

    from pyspark.sql import functions as F

    from lgsid.config import load_config, replace
    from lgsid.pairs import coclick_pairs
    from lgsid.spark import get_spark

    cfg = replace(
        load_config(None),
        spark={"master": args.master, "shuffle_partitions": args.shuffle_partitions, "driver_memory": args.driver_memory,
               "petastorm_cache_dir": os.path.join(work, "petastorm")},
        pairs={"history_cap": args.history_cap, "s_th": args.s_th},
    )
    t0 = time.perf_counter()
    path = os.path.join(work, "interactions.parquet")
    chunk = 2_000_000
    os.makedirs(path)
    for i, lo in enumerate(range(0, n, chunk)):
        synth_interactions(min(chunk, n - lo), n_users, n_items, args.seed + i).to_parquet(os.path.join(path, f"part-{i:05d}.parquet"), index=False)
    gen_s = time.perf_counter() - t0
    spark = get_spark(cfg)
    inter = spark.read.parquet(path)

    peak = [0.0]
    stop = threading.Event()
    me = os.getpid()

    def sample():
        while not stop.is_set():
            pids = [me] + _children(me)
            pids += [c for p in list(pids[1:]) for c in _children(p)]
            peak[0] = max(peak[0], _rss_mb(pids))
            time.sleep(0.5)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    out = coclick_pairs(inter, cfg.pairs)
    stats = out.agg(F.count(F.lit(1)).alias("pairs"), F.countDistinct("anchor_item_id").alias("anchors"), F.max("cooccur_users").alias("max_s")).first()
    job_s = time.perf_counter() - t0
    stop.set()
    th.join()

    # how much the cap saves: sum over users of d(d-1)/2 with and without the cap
    d = inter.groupBy("user_id").agg(F.countDistinct("item_id").alias("d"))
    cap = args.history_cap
    pc = d.agg(
        F.sum(F.col("d") * (F.col("d") - 1) / 2).alias("uncapped"),
        F.sum(F.least(F.col("d"), F.lit(cap)) * (F.least(F.col("d"), F.lit(cap)) - 1) / 2).alias("capped"),
        F.max("d").alias("max_hist"),
    ).first()

    print(f"{'interactions':>13} {'users':>9} {'items':>9} {'seconds':>8} {'pairs out':>10} {'anchors':>9} {'user-pairs uncapped':>20} {'capped':>12} {'peak RSS MB':>12}")
    print(f"{n:>13,} {n_users:>9,} {n_items:>9,} {job_s:>8.1f} {stats['pairs']:>10,} {stats['anchors']:>9,} {int(pc['uncapped']):>20,} {int(pc['capped']):>12,} {peak[0]:>12.0f}")
    print(f"(generation of the synthetic parquet: {gen_s:.1f}s, not included; peak RSS = driver JVM + Python workers, sampled every 0.5 s)")
    print(json.dumps({"bench": "pairs", "interactions": n, "users": n_users, "items": n_items, "history_cap": cap, "s_th": args.s_th,
                      "seconds": job_s, "pairs": stats["pairs"], "anchors": stats["anchors"], "max_cooccur": stats["max_s"],
                      "user_pairs_uncapped": int(pc["uncapped"]), "user_pairs_capped": int(pc["capped"]), "max_history": pc["max_hist"],
                      "peak_rss_mb": peak[0], "master": args.master}))
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
