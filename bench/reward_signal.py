"""How much a reward ``r(content_i, location_j)`` (Eq. 2) can learn from a run's reward lists.

Eq. 2 scores the mismatched prompt ``[content_i, location_j]``: the only thing that tells the true
location from a candidate is what the *content* says about where item i lies. This benchmark
measures that ceiling without any encoder: for held-out anchors (20%, seeded), each list entry
is scored by a Gaussian kernel density (bandwidth ``--bw`` km) at the candidate location of

* ``all_items``: every training item (a pure density prior: "venues are where venues are");
* ``same_content``: the training items with the anchor's content text;
* ``ratio``: same_content / all_items (what the content adds beyond density);

and prints the ROC-AUC of the true location vs the ``--n`` farthest and the ``--n`` nearest
candidates. A trained reward model should reach about the best of these; if they are all near
0.5, Eq. 2 has no signal on this data.

Run: ``python bench/reward_signal.py --tables lgsid-work/phoenix/tables`` (reads ``geo_prompts`` and
``reward_lists`` with deltalake). JSON last line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    from deltalake import DeltaTable
    from sklearn.metrics import roc_auc_score

    from lgsid.geo import haversine_km

    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", default="lgsid-work/phoenix/tables", help="a run's tables (default: the Phoenix run)")
    ap.add_argument("--bw", type=float, default=1.0)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import os

    if not os.path.isdir(f"{a.tables}/reward_lists"):
        print(json.dumps({"skipped": f"no reward_lists under {a.tables}"}))
        return
    gp = DeltaTable(f"{a.tables}/geo_prompts").to_pandas()
    rl = DeltaTable(f"{a.tables}/reward_lists").to_pandas()
    loc = gp.groupby("location_text")[["lat", "lon"]].mean()
    rng = np.random.default_rng(a.seed)
    val = set(rng.choice(rl["item_id"].to_numpy(), size=max(1, len(rl) // 5), replace=False))
    tr = gp[~gp["item_id"].isin(val)]
    lat, lon, cont = tr["lat"].to_numpy(float), tr["lon"].to_numpy(float), tr["content_text"].to_numpy()
    scores = {"all_items": [], "same_content": [], "ratio": []}
    for _, r in rl[rl["item_id"].isin(val)].iterrows():
        c = r["content_text"]
        same = cont == c
        xy = loc.loc[[p[len(c) + 2 :] for p in r["prompts"]]].to_numpy()  # (J, 2) candidate locations
        k = np.exp(-(haversine_km(xy[:, :1], xy[:, 1:], lat[None, :], lon[None, :]) / a.bw) ** 2)  # (J, N)
        dens = np.log((k.sum(1) + 0.1) / len(lat))
        cdens = np.log((k[:, same].sum(1) + 0.1) / (same.sum() + 1))
        scores["all_items"].append(dens)
        scores["same_content"].append(cdens)
        scores["ratio"].append(cdens - dens)
    out: dict = {"lists": len(scores["ratio"]), "bw_km": a.bw, "n": a.n}
    for name, s in scores.items():
        S = np.stack(s)  # (L, J), candidates sorted near -> far
        pos = S[:, 0]
        for side, neg in (("far", S[:, -a.n :]), ("near", S[:, 1 : 1 + a.n])):
            y = np.r_[np.ones(len(pos)), np.zeros(neg.size)]
            out[f"{name}.auc_true_vs_{side}"] = round(float(roc_auc_score(y, np.r_[pos, neg.ravel()])), 3)
    for k_, v in out.items():
        print(f"{k_}: {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
