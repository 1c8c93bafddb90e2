"""Benchmark: how much any recommender can gain over the best baseline on the demo data.

    python bench/demo_ceiling.py                 # the demo of conf/local.yaml (3,000 items)
    python bench/demo_ceiling.py --quick         # 800 items, 500 users (a smoke run)

The demo's interactions come from a known behavioural model (``lgsid/sources/demo.py``): every
visit is an independent draw from ``P(i | u, x) ∝ exp(-d/d0) · theta_u[cat(i)] · pop(i)``, so the
order of a user's visits carries no signal and the best possible ranking of a user's next visit is
by that probability (:func:`lgsid.sources.demo.behaviour_weights` at the user's home; the 5%
travel visits are not predictable). This bench scores, on the evaluation's own leave-last-out
split of the generated interactions (before ingest's filters):

* ``generator P(i|u)``: the ranking by the true probability (knows theta_u, pop and the home), the ceiling;
* ``generator form, estimated``: the same formula with the hidden variables estimated from the
  training split as a recommender could (theta_u from the user's categories with a Dirichlet prior
  of 5 pseudo-visits at the global mix, pop from training counts + 0.5, home = the median of the
  user's visited coordinates): what knowing the functional form buys without knowing the latents;
* the same two as the explore part of the repeat/explore mixture (:func:`lgsid.evaluate.tiger.repeat_explore_lists`,
  with the repeat part built exactly as the evaluation's `mix` rows build it);
* the evaluation's baselines: user-history frequency and history + nearby popularity.

Issue 13's downstream target is ≥ 1.10× the best baseline; the JSON gives each row's ratio to it,
with revisit / new splits. JSON last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

THETA_PRIOR = 5.0  # Dirichlet pseudo-visits at the global category mix, for the estimated theta_u


def ceiling(conf: str, sets: list[str], k: int) -> dict:
    from lgsid.config import load_config
    from lgsid.evaluate import baselines as bl
    from lgsid.evaluate.ranking import ranked_metrics
    from lgsid.evaluate.sections import _repeat_candidates, index_split
    from lgsid.evaluate.split import leave_last_out
    from lgsid.evaluate.tiger import repeat_explore_lists, repeat_probability
    from lgsid.evaluate.variants import EvalInputs
    from lgsid.sources.demo import behaviour_weights, generate

    cfg = load_config(conf, sets)
    dc, ec = cfg.demo, cfg.evaluate
    data = generate(dc)
    lt = data.latents
    items, n = data.items, len(data.items)
    i_lat, i_lon = items["lat"].to_numpy(float), items["lon"].to_numpy(float)
    # the evaluation's own split and indexing (item index = row of data.items, as the latents)
    tu = index_split(EvalInputs(items=items, interactions=data.interactions, embeddings={}), leave_last_out(data.interactions))
    uidx = {u: j for j, u in enumerate(data.users["user_id"])}
    users = np.array([uidx[u] for u in tu.user_id])
    hists = [tu.seqs[i] for i in tu.test_seq]
    counts = bl.item_counts(tu.seqs, n)
    n_cat = lt.theta.shape[1]
    glob = np.bincount(lt.category[np.concatenate(tu.seqs)], minlength=n_cat).astype(float)
    glob /= glob.sum()
    # the repeat part exactly as the evaluation's mix rows build it
    lam = repeat_probability(hists, tu.seqs, ec.repeat_prior_strength)
    rep_items, rep_counts = _repeat_candidates(hists, 2 * ec.max_history)
    no_logp = np.full(rep_items.shape, -np.inf)
    top = {"true": np.full((len(users), k), -1, dtype=np.int64), "est": np.full((len(users), k), -1, dtype=np.int64)}
    new = {m: (np.full((len(users), k), -1, dtype=np.int64), np.full((len(users), k), -np.inf)) for m in top}
    for r, (u, h) in enumerate(zip(users, hists)):
        th = (np.bincount(lt.category[h], minlength=n_cat) + THETA_PRIOR * glob) / (len(h) + THETA_PRIOR)
        w = {"true": behaviour_weights(lt.home_lat[u], lt.home_lon[u], lt.theta[u], np.isin(lt.item_town, lt.neighbours[lt.home_town[u]]),
                                       i_lat, i_lon, lt.category, lt.popularity, dc.distance_decay_km),
             "est": behaviour_weights(np.median(i_lat[h]), np.median(i_lon[h]), th, np.ones(n, bool), i_lat, i_lon, lt.category,
                                      counts + 0.5, dc.distance_decay_km)}
        for m, wm in w.items():
            top[m][r] = np.argsort(-wm, kind="stable")[:k]
            wn = wm.copy()
            wn[h] = 0.0  # the explore part: places the user has not visited, by normalised weight
            best = np.argsort(-wn, kind="stable")[:k]
            new[m][0][r], new[m][1][r] = best, np.log(np.maximum(wn[best] / max(wn.sum(), 1e-300), 1e-300))
    lists = {"generator P(i|u)": top["true"], "generator form, estimated": top["est"]}
    for m, name in (("true", "generator P(i|u) as explore part"), ("est", "generator form, estimated, as explore part")):
        lists[name] = repeat_explore_lists(new[m][0], new[m][1], rep_items, rep_counts, no_logp, lam, k)
    lists["user-history frequency"] = bl.history_lists(hists, counts, k)
    lists["history + nearby popularity"] = bl.history_nearby_lists(hists, counts, i_lat, i_lon, ec.nearby_decay_km, k)
    target, revisit = tu.target, tu.revisit
    rows = []
    for name, lst in lists.items():
        m = ranked_metrics(lst, target, revisit, (k,))
        rows.append({"row": name, **{key: round(float(v), 4) for key, v in m.items() if key.endswith(f"@{k}")}})
    best = next(r for r in rows if r["row"] == "history + nearby popularity")
    for r in rows:
        r["ratio_to_best_baseline"] = round(r[f"Hit@{k}"] / best[f"Hit@{k}"], 3) if best[f"Hit@{k}"] else None
    return {"items": n, "test_users": int(len(users)), "revisit_share": round(float(revisit.mean()), 4), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conf", default="conf/local.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--quick", action="store_true", help="800 items, 500 users, 6,000 interactions")
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()
    sets = a.sets + (["demo.n_items=800", "demo.n_users=500", "demo.n_interactions=6000", "demo.n_towns=80"] if a.quick else [])
    out = ceiling(a.conf, sets, a.k)
    k = a.k
    print(f"demo: {out['items']:,} items, {out['test_users']:,} test users, revisit share {out['revisit_share']:.3f}")
    print(f"{'ranking':<44} {'Hit@' + str(k):>8} {'NDCG@' + str(k):>8} {'revisit':>8} {'new':>8} {'× best baseline':>16}")
    for r in out["rows"]:
        print(f"{r['row']:<44} {r[f'Hit@{k}']:>8.4f} {r[f'NDCG@{k}']:>8.4f} {r[f'revisit.Hit@{k}']:>8.4f} {r[f'new.Hit@{k}']:>8.4f} "
              f"{r['ratio_to_best_baseline']:>16.3f}")
    print(json.dumps({"bench": "demo_ceiling", **out}))


if __name__ == "__main__":
    main()
