"""Benchmark: the collision floor of the demo data, the share of items whose prompt text equals another item's.

    python bench/prompt_duplicates.py                  # 3,000 / 10,000 / 100,000 items
    python bench/prompt_duplicates.py --quick          # 3,000 / 10,000
    python bench/prompt_duplicates.py --sizes 1000000

No tokenizer can give two items with the same prompt different codes (they have the same
embedding), so a tokenizer's ``collision_rate`` minus this share is what the tokenizer adds
(issue 13: at most 2 points). Demo data of ``n`` items in the pipeline's ratio (``2n/3`` users),
prompts as the ``prompts`` step renders them at town level. JSON last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def duplicate_share(n: int, conf: str) -> dict:
    import pandas as pd

    from lgsid.config import load_config, replace
    from lgsid.prompts import combine_prompt, format_content, format_location
    from lgsid.sources.demo import generate

    cfg = load_config(conf)
    c = replace(cfg, demo={"n_items": n, "n_users": max(10, n * 2 // 3), "n_interactions": n * 10})
    rows = generate(c.demo).items.to_dict("records")
    s = pd.Series([combine_prompt(format_content(r, c.prompts), format_location(r, c.prompts, "town"), c.prompts) for r in rows])
    return {"items": n, "distinct_prompts": int(s.nunique()), "shared_prompt_share": float(s.duplicated(keep=False).mean()),
            "excess_share": float((len(s) - s.nunique()) / len(s))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="3000,10000,100000")
    ap.add_argument("--conf", default="conf/local.yaml")
    ap.add_argument("--quick", action="store_true", help="3,000 and 10,000 items")
    a = ap.parse_args()
    sizes = [3000, 10000] if a.quick else [int(x) for x in a.sizes.split(",") if x]
    rows = [duplicate_share(n, a.conf) for n in sizes]
    print(f"{'items':>10} {'distinct prompts':>17} {'items sharing a prompt':>23} {'excess over distinct':>21}")
    for r in rows:
        print(f"{r['items']:>10,} {r['distinct_prompts']:>17,} {r['shared_prompt_share']:>23.4f} {r['excess_share']:>21.4f}")
    print(json.dumps({"bench": "prompt_duplicates", "rows": rows}))


if __name__ == "__main__":
    main()
