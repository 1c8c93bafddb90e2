"""The model a ranking team ships: a LightGBM LambdaMART ranker over candidate sets, with and without SIDs.

Each *query* is one user at one point in time: the validation target with the user's train items as
history (the ranker's training and early-stopping queries), or the test target with the train and
validation items as history (the report). Its candidates come from three sources:

* ``history``: the user's distinct items by visit count (ties: most recent), at most
  ``evaluate.ranker_history_candidates``;
* ``nearby``: unvisited items by distance-decayed popularity around the last visit
  (:func:`~lgsid.evaluate.baselines.nearby_popularity_score`), ``evaluate.ranker_nearby_candidates``;
* ``beam``: the TIGER model's trie-constrained beam over one tokenizer's SIDs,
  ``evaluate.ranker_beam_size`` items. The ranker without SIDs gets as many more nearby items
  instead, so every arm ranks the same number of candidates.

Base features (what ranking teams already have): the user's visit count, share and recency for the
candidate, whether it is the last visit, distance from the last and the recent visits, global and
distance-decayed popularity, category match, the user's revisit rate and history length, and the
candidate's rank in the history and nearby sources. SID features (per tokenizer; the codes are
those ``item_sid_features`` holds for the evaluated model version, joined per item):

* the generative model's log-probability of the candidate and its beam rank;
* prefix transitions: ``log P(prefix(candidate) | prefix(last visit))`` over consecutive training
  visits at L1 and L1-L2 (:func:`transition_logp`);
* distance-aware prefix popularity: ``log(1 + visits to the prefix) - km to the prefix's visit
  centroid / decay`` (:func:`prefix_local_popularity`);
* the user's history share in the candidate's L1 and L1-L2 prefixes;
* the SID tokens L1 and L2 as categorical features, kept only where the ranker with them scores a
  higher NDCG@10 on the early-stopping validation queries than the same ranker without them (on the
  demo they took the most gain and cost test NDCG: categorical splits over 64+ codes overfit ~1,500
  training queries).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lgsid.evaluate import baselines as bl
from lgsid.evaluate.ranking import GEN_KS, ranked_metrics, summarise_runs
from lgsid.evaluate.variants import display_name
from lgsid.geo import haversine_km, unit_xyz

if TYPE_CHECKING:  # pragma: no cover
    from lgsid.config import EvaluateConfig

BASE_FEATURES = ("visits", "visit_share", "visits_ago", "is_last", "km_last", "km_recent_min", "log_pop", "nearby_pop",
                 "cat_share", "cat_match_last", "hist_len", "revisit_rate", "history_rank", "nearby_rank")
SID_FEATURES = ("tiger_logp", "beam_rank", "trans_l1", "trans_l12", "prefix_pop_l1", "prefix_pop_l12", "hist_share_l1", "hist_share_l12",
                "sid_l1", "sid_l2")
CATEGORICAL = ("sid_l1", "sid_l2")


@dataclass
class Queries:
    """Ranking queries at one point in time.

    Attributes:
        hist: (Q,) each query's history, item indices in time order.
        target: (Q,) the item the user visited next.
        seqs: every user's sequence as of the queries' time (popularity, transitions and revisit rates come from these).
        revisit: (Q,) bool, target in the query's history.
    """

    hist: list[np.ndarray]
    target: np.ndarray
    seqs: list[np.ndarray]

    @property
    def revisit(self) -> np.ndarray:
        return np.array([t in set(h.tolist()) for h, t in zip(self.hist, self.target)], dtype=bool)

    @property
    def last(self) -> np.ndarray:
        """(Q,) the last history item of each query."""
        return np.array([h[-1] for h in self.hist], dtype=np.int64)


def history_candidates(hist: list[np.ndarray], m: int) -> np.ndarray:
    """(Q, m) each history's distinct items by :func:`~lgsid.evaluate.baselines.history_ranking`, -1 padded."""
    out = np.full((len(hist), m), -1, dtype=np.int64)
    for q, h in enumerate(hist):
        r = bl.history_ranking(h)[:m]
        out[q, :len(r)] = r
    return out


def nearby_candidates(hist: list[np.ndarray], counts: np.ndarray, lat: np.ndarray, lon: np.ndarray, decay_km: float, m: int) -> np.ndarray:
    """(Q, m) unvisited items by :func:`~lgsid.evaluate.baselines.nearby_popularity_score` around each history's last item, best first."""
    n = len(counts)
    k = min(m, n)
    out = np.full((len(hist), m), -1, dtype=np.int64)
    for s, hs, d in bl.last_visit_distances(hist, lat, lon):
        score = bl.nearby_popularity_score(counts, d, decay_km)  # (b, N)
        for j, h in enumerate(hs):
            score[j, np.asarray(h, dtype=np.int64)] = -np.inf
        top = np.argpartition(-score, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(hs), 1))
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(score, top, axis=1), axis=1, kind="stable"), axis=1)
        out[s:s + len(hs), :k] = np.where(np.isfinite(np.take_along_axis(score, top, axis=1)), top, -1)
    return out


def union_candidates(*lists: np.ndarray) -> np.ndarray:
    """Row-wise union of (Q, C_i) candidate lists in source order, duplicates and -1 dropped, -1 padded to sum(C_i)."""
    cat = np.concatenate(lists, axis=1)
    out = np.full(cat.shape, -1, dtype=np.int64)
    for q, row in enumerate(cat):
        row = row[row >= 0]
        _, first = np.unique(row, return_index=True)
        u = row[np.sort(first)]
        out[q, :len(u)] = u
    return out


def fill_candidates(base: np.ndarray, extra: np.ndarray, m: int) -> np.ndarray:
    """``base`` (Q, C) plus, per row, the first ``m`` items of ``extra`` (Q, E) that are not in it: (Q, C + m), -1 padded.

    The SID arms add their beam this way, so each adds ``m`` new candidates, as many as the arm without
    SIDs adds nearby places (where the beam holds fewer new items, fewer are added).
    """
    out = np.full((len(base), base.shape[1] + m), -1, dtype=np.int64)
    for q in range(len(base)):
        b = base[q][base[q] >= 0]
        e = extra[q][extra[q] >= 0]
        new = e[~np.isin(e, b)]
        _, first = np.unique(new, return_index=True)
        row = np.concatenate([b, new[np.sort(first)][:m]])
        out[q, :len(row)] = row
    return out


def candidate_recall(cands: np.ndarray, target: np.ndarray) -> float:
    """Share of queries whose target is among their candidates (cands (Q, C), target (Q,))."""
    return float((cands == np.asarray(target)[:, None]).any(axis=1).mean()) if len(target) else float("nan")


def _pair_index(q: np.ndarray, key: np.ndarray, hq: np.ndarray, hkey: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For (query, key) pairs, locate them among the history's (query, key) pairs: (unique history pairs, their counts, index or -1)."""
    hk = hq.astype(np.int64) * n_keys + hkey
    uniq, cnt = np.unique(hk, return_counts=True)
    ck = q.astype(np.int64) * n_keys + key
    pos = np.clip(np.searchsorted(uniq, ck), 0, max(len(uniq) - 1, 0))
    found = (uniq[pos] == ck) if len(uniq) else np.zeros(len(ck), bool)
    return uniq, cnt, np.where(found, pos, -1)


def history_share(q: np.ndarray, key: np.ndarray, hist: list[np.ndarray], item_key: np.ndarray) -> np.ndarray:
    """Share of query q's history whose ``item_key`` equals ``key`` (e.g. the candidate's category or SID prefix).

    Args:
        q: (R,) query of each row. key: (R,) the candidate's key. hist: (Q,) histories.
        item_key: (N,) key of every item, ints >= 0.

    Returns:
        (R,) shares in [0, 1].
    """
    lens = np.array([len(h) for h in hist], dtype=np.int64)
    hq = np.repeat(np.arange(len(hist)), lens)
    hkey = item_key[np.concatenate(hist)] if len(hq) else np.zeros(0, np.int64)
    n_keys = int(item_key.max()) + 1 if len(item_key) else 1
    _, cnt, ix = _pair_index(q, key, hq, hkey, n_keys)
    return np.where(ix >= 0, cnt[np.maximum(ix, 0)], 0) / np.maximum(lens[q], 1)


def prefix_transitions(seqs: list[np.ndarray], prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of consecutive visits between SID prefixes, for :func:`transition_logp`.

    Args:
        seqs: item sequences (time order). prefix: (N,) prefix id of every item (ints >= 0), P = max + 1.

    Returns:
        ``(keys, n_ab, stats)``: the observed pairs as sorted keys ``a·P + b`` with their counts ``n_ab``, and
        stats (2, P): row 0 ``n_a`` (transitions out of a), row 1 ``p_b`` (share of all visits in prefix b,
        add-one smoothed so an unvisited prefix keeps a finite log).
    """
    P = int(prefix.max()) + 1
    a = np.concatenate([prefix[s[:-1]] for s in seqs if len(s) > 1] or [np.zeros(0, np.int64)])
    b = np.concatenate([prefix[s[1:]] for s in seqs if len(s) > 1] or [np.zeros(0, np.int64)])
    keys, n_ab = np.unique(a.astype(np.int64) * P + b, return_counts=True)
    n_a = np.bincount(a, minlength=P).astype(np.float64)
    visits = np.bincount(prefix[np.concatenate(seqs)] if seqs else np.zeros(0, np.int64), minlength=P).astype(np.float64)
    p_b = (visits + 1.0) / (visits.sum() + P)
    return keys, n_ab, np.stack([n_a, p_b])


def transition_logp(stats: tuple[np.ndarray, np.ndarray, np.ndarray], a: np.ndarray, b: np.ndarray, alpha: float = 5.0) -> np.ndarray:
    """Smoothed log-probability that a visit in prefix a is followed by one in prefix b.

    ``log P(b | a) = log((n_ab + α·p_b) / (n_a + α))`` with the counts of :func:`prefix_transitions`: a
    Dirichlet prior of ``α`` pseudo-transitions at the visit marginal ``p_b``, so a rare prefix falls back
    to its popularity.

    Args:
        stats: :func:`prefix_transitions`. a, b: (R,) prefix ids.

    Returns:
        (R,) log-probabilities.
    """
    keys, n_ab, st = stats
    P = st.shape[1]
    k = a.astype(np.int64) * P + b
    pos = np.clip(np.searchsorted(keys, k), 0, max(len(keys) - 1, 0))
    n = np.where((keys[pos] == k) if len(keys) else np.zeros(len(k), bool), n_ab[pos] if len(keys) else 0, 0).astype(np.float64)
    return np.log((n + alpha * st[1][b]) / (st[0][a] + alpha))


def prefix_local_popularity(seqs: list[np.ndarray], prefix: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visits per SID prefix and the visit-weighted centroid of its items (on the sphere), for distance-aware prefix popularity.

    Returns:
        ``(visits (P,), centroid lat (P,), centroid lon (P,))``; a prefix without visits gets its items' plain centroid.
    """
    P = int(prefix.max()) + 1
    n = len(prefix)
    w_item = np.bincount(np.concatenate(seqs) if seqs else np.zeros(0, np.int64), minlength=n).astype(np.float64)
    visits = np.bincount(prefix, weights=w_item, minlength=P)
    xyz = unit_xyz(lat, lon)  # (N, 3)
    w = np.where(visits[prefix] > 0, w_item, 1.0)  # plain centroid for prefixes nobody visited
    c = np.stack([np.bincount(prefix, weights=w * xyz[:, j], minlength=P) for j in range(3)], axis=1)  # (P, 3)
    norm = np.linalg.norm(c, axis=1, keepdims=True)
    c = np.where(norm > 0, c / np.maximum(norm, 1e-300), np.array([1.0, 0.0, 0.0]))
    return visits, np.degrees(np.arcsin(np.clip(c[:, 2], -1, 1))), np.degrees(np.arctan2(c[:, 1], c[:, 0]))


def base_features(qs: Queries, cands: np.ndarray, items: pd.DataFrame, hist_rank: np.ndarray, near_rank: np.ndarray,
                  ec: "EvaluateConfig") -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Rows (query, candidate) with the base features.

    Args:
        qs: the queries. cands: (Q, C) candidates (-1 = none). items: the catalogue (lat, lon, category_l1/l2).
        hist_rank, near_rank: (Q, C) the candidate's rank in the history / nearby source (NaN = not there).

    Returns:
        ``(q (R,), item (R,), features (R rows, BASE_FEATURES))`` for the R valid (query, candidate) pairs, query-major.
    """
    from lgsid.evaluate.tiger import repeat_probability

    n = len(items)
    lat, lon = items["lat"].to_numpy(float), items["lon"].to_numpy(float)
    m = cands >= 0
    q, col = np.nonzero(m)
    it = cands[q, col]
    lens = np.array([len(h) for h in qs.hist], dtype=np.int64)
    hq = np.repeat(np.arange(len(qs.hist)), lens)
    hi = np.concatenate(qs.hist)
    hpos = np.concatenate([np.arange(len(h)) for h in qs.hist])
    uniq, cnt, ix = _pair_index(q, it, hq, hi, n)
    last_pos = np.full(len(uniq), -1, dtype=np.int64)
    np.maximum.at(last_pos, np.searchsorted(uniq, hq.astype(np.int64) * n + hi), hpos)
    visits = np.where(ix >= 0, cnt[np.maximum(ix, 0)], 0).astype(np.float64)
    ago = np.where(ix >= 0, lens[q] - last_pos[np.maximum(ix, 0)], np.nan).astype(np.float64)  # 1 = the last visit
    last = qs.last
    km_last = haversine_km(lat[last[q]], lon[last[q]], lat[it], lon[it])
    km_recent = np.full(len(q), np.inf)
    for j in range(1, min(ec.reach_recent, int(lens.max())) + 1):
        rj = np.array([h[-j] if len(h) >= j else -1 for h in qs.hist], dtype=np.int64)[q]
        d = haversine_km(lat[np.maximum(rj, 0)], lon[np.maximum(rj, 0)], lat[it], lon[it])
        km_recent = np.minimum(km_recent, np.where(rj >= 0, d, np.inf))
    counts = bl.item_counts(qs.seqs, n)
    cat = items["category_l1"].where(items["category_l1"].notna(), items.get("category_l2")).fillna("<none>").astype(str)
    cat_id = pd.factorize(cat)[0].astype(np.int64)
    feats = pd.DataFrame({
        "visits": visits,
        "visit_share": visits / np.maximum(lens[q], 1),
        "visits_ago": ago,
        "is_last": (it == last[q]).astype(np.float64),
        "km_last": km_last,
        "km_recent_min": km_recent,
        "log_pop": np.log1p(counts[it].astype(np.float64)),
        "nearby_pop": bl.nearby_popularity_score(counts[it], km_last, ec.nearby_decay_km),
        "cat_share": history_share(q, cat_id[it], qs.hist, cat_id),
        "cat_match_last": (cat_id[it] == cat_id[last[q]]).astype(np.float64),
        "hist_len": lens[q].astype(np.float64),
        "revisit_rate": repeat_probability(qs.hist, qs.seqs, ec.repeat_prior_strength)[q],
        "history_rank": hist_rank[q, col],
        "nearby_rank": near_rank[q, col],
    })
    return q, it, feats


def sid_features(qs: Queries, q: np.ndarray, it: np.ndarray, codes: np.ndarray, items: pd.DataFrame, tiger_logp: np.ndarray,
                 beam_rank: np.ndarray, decay_km: float) -> pd.DataFrame:
    """The SID feature columns (:data:`SID_FEATURES`) of rows (q, item) for one tokenizer's codes (N, L)."""
    lat, lon = items["lat"].to_numpy(float), items["lon"].to_numpy(float)
    last = qs.last
    out = {"tiger_logp": tiger_logp, "beam_rank": beam_rank}
    l1 = codes[:, 0].astype(np.int64)
    l12 = pd.factorize(pd.Series(list(map(tuple, codes[:, :2]))))[0].astype(np.int64) if codes.shape[1] > 1 else l1
    for name, pre in (("l1", l1), ("l12", l12)):
        stats = prefix_transitions(qs.seqs, pre)
        out[f"trans_{name}"] = transition_logp(stats, pre[last[q]], pre[it])
        visits, clat, clon = prefix_local_popularity(qs.seqs, pre, lat, lon)
        p = pre[it]
        out[f"prefix_pop_{name}"] = np.log1p(visits[p]) - haversine_km(lat[last[q]], lon[last[q]], clat[p], clon[p]) / decay_km
        out[f"hist_share_{name}"] = history_share(q, p, qs.hist, pre)
    out["sid_l1"] = l1[it]
    out["sid_l2"] = codes[it, 1].astype(np.int64) if codes.shape[1] > 1 else l1[it]
    return pd.DataFrame(out)


def _ranks(cands: np.ndarray, source: np.ndarray) -> np.ndarray:
    """(Q, C) rank (0 = first) of each candidate in ``source`` (Q, S), NaN where absent."""
    out = np.full(cands.shape, np.nan)
    for q in range(len(cands)):
        pos = {int(x): r for r, x in enumerate(source[q]) if x >= 0}
        out[q] = [pos.get(int(c), np.nan) if c >= 0 else np.nan for c in cands[q]]
    return out


def _lookup(cands: np.ndarray, keys: np.ndarray, values: np.ndarray, default: float = np.nan) -> np.ndarray:
    """(Q, C) ``values[q, j]`` where ``keys[q, j] == cands[q, c]``, else ``default``."""
    out = np.full(cands.shape, default, dtype=np.float64)
    for q in range(len(cands)):
        d = {int(k): float(v) for k, v in zip(keys[q], values[q]) if k >= 0}
        out[q] = [d.get(int(c), default) for c in cands[q]]
    return out


def fit_rank(train: tuple[pd.DataFrame, np.ndarray, np.ndarray], stop: tuple[pd.DataFrame, np.ndarray, np.ndarray], ec: "EvaluateConfig",
             seed: int):
    """Fit an ``LGBMRanker`` (lambdarank) on query-major rows, early-stopped on NDCG@10 of the ``stop`` queries.

    Columns of :data:`CATEGORICAL` present in the features are categorical (with LightGBM's smoothing
    raised so a rare code cannot carry a split: ``min_data_per_group`` 100, ``cat_smooth`` 50).

    Args:
        train, stop: ``(features, labels (R,), group sizes (G,))``.

    Returns:
        The fitted ranker (``best_iteration_`` set by early stopping, ``best_score_`` its NDCG@10 on ``stop``).
    """
    import lightgbm as lgb

    cats = [c for c in CATEGORICAL if c in train[0].columns]
    model = lgb.LGBMRanker(objective="lambdarank", n_estimators=ec.ranker_trees, learning_rate=ec.ranker_learning_rate,
                           num_leaves=ec.ranker_leaves, min_child_samples=20, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
                           random_state=seed, n_jobs=1, deterministic=True, force_row_wise=True, verbose=-1,
                           min_data_per_group=100, cat_smooth=50.0)
    model.fit(train[0], train[1], group=train[2], eval_X=(stop[0],), eval_y=(stop[1],), eval_group=[stop[2]], eval_at=[10],
              categorical_feature=cats or "auto", callbacks=[lgb.early_stopping(ec.ranker_early_stopping, verbose=False)])
    return model


def _top(q: np.ndarray, it: np.ndarray, score: np.ndarray, n_queries: int, k: int) -> np.ndarray:
    """(Q, k) items by descending score within each query (-1 padded)."""
    out = np.full((n_queries, k), -1, dtype=np.int64)
    order = np.lexsort((-score, q))
    qs, its = q[order], it[order]
    starts = np.searchsorted(qs, np.arange(n_queries))
    ends = np.searchsorted(qs, np.arange(n_queries), side="right")
    for i in range(n_queries):
        row = its[starts[i]:ends[i]][:k]
        out[i, :len(row)] = row
    return out


def _ndcg10(model) -> float:
    """NDCG@10 of a :func:`fit_rank` model on its early-stopping validation queries."""
    return float(next(iter(model.best_score_.values()))["ndcg@10"])


def _groups(q: np.ndarray, n_queries: int) -> np.ndarray:
    return np.bincount(q, minlength=n_queries)


def importance_plot(model, path: str, title: str) -> str:
    """Horizontal bar chart of the ranker's total gain per feature -> PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gain = pd.Series(model.booster_.feature_importance("gain"), index=model.booster_.feature_name()).sort_values()
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(gain) + 1))
    ax.barh(gain.index, gain.to_numpy() / max(gain.sum(), 1e-12))
    ax.set_xlabel("share of total split gain")
    ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ranker_inputs(tu, ec: "EvaluateConfig", items: pd.DataFrame) -> dict[str, Any]:
    """The validation and test queries and their base candidates (history + nearby), shared with the TIGER jobs.

    Returns:
        ``{"valid": (Queries, history cands, nearby cands), "test": (...), "beam": B}``; nearby holds
        ``ranker_nearby_candidates + ranker_beam_size`` items so the arm without SIDs can use as many candidates.
    """
    n = len(items)
    lat, lon = items["lat"].to_numpy(float), items["lon"].to_numpy(float)
    out: dict[str, Any] = {"beam": 2 * ec.ranker_beam_size}  # decoded; the SID arms add its first ranker_beam_size new items
    m_near = ec.ranker_nearby_candidates + ec.ranker_beam_size
    for name, qs in (("valid", Queries(hist=tu.valid_histories, target=tu.valid_target[tu.valid_users], seqs=tu.seqs)),
                     ("test", Queries(hist=tu.histories, target=tu.target, seqs=tu.seqs_at_test))):
        counts = bl.item_counts(qs.seqs, n)
        out[name] = (qs, history_candidates(qs.hist, ec.ranker_history_candidates),
                     nearby_candidates(qs.hist, counts, lat, lon, ec.nearby_decay_km, m_near))
    return out


def ranker_section(items: pd.DataFrame, sids: dict, rin: dict[str, Any], tiger_out: dict, ec: "EvaluateConfig", seeds: list[int],
                   plot_dir: str | None = None) -> dict:
    """LambdaMART rows: the heuristic, the ranker without SIDs, and the ranker + each tokenizer's SID features and beam.

    Args:
        items: the catalogue (row = item index).
        sids: ``{variant: SIDCodes}``.
        rin: :func:`ranker_inputs`.
        tiger_out: ``{(variant, seed): {"valid"|"test": (beam items (Q, B), beam log-probs (Q, B), log-probs of the
            history + nearby candidates (Q, Ch + Nn))}}`` from the generative section's TIGER fits.
        seeds: the model seeds (ranker seed s uses TIGER seed s).

    Returns:
        ``{"variants": rows with runs + summary, "recall": candidate recall per source, "importance": ..., "plots": [...]}``.
    """
    B, Nn = ec.ranker_beam_size, ec.ranker_nearby_candidates
    K = max(GEN_KS)
    rows: dict[str, Any] = {}

    def add(name: str, display: str, kind: str, r: dict) -> None:
        rows.setdefault(name, {"runs": [], "display": display, "kind": kind})["runs"].append(r)

    qv, hv, nv = rin["valid"]
    qt, ht, nt = rin["test"]
    if len(qv.target) < 10:
        return {"skipped": f"only {len(qv.target)} users with a validation interaction (need >= 10)"}
    revisit_t = qt.revisit
    counts_t = bl.item_counts(qt.seqs, len(items))
    lat, lon = items["lat"].to_numpy(float), items["lon"].to_numpy(float)
    heur = bl.history_nearby_lists(qt.hist, counts_t, lat, lon, ec.nearby_decay_km, K)
    add("heuristic", bl.BASELINES["history_nearby"], "baseline", {"seed": -1, **ranked_metrics(heur, qt.target, revisit_t, GEN_KS)})

    recall: dict[str, Any] = {"history": candidate_recall(ht, qt.target), "nearby": candidate_recall(nt[:, :Nn], qt.target),
                              f"nearby+{B}": candidate_recall(nt, qt.target), "history+nearby": candidate_recall(np.concatenate([ht, nt[:, :Nn]], 1), qt.target),
                              "history+nearby (no SIDs, equal count)": candidate_recall(np.concatenate([ht, nt], 1), qt.target), "per_variant": {}}

    def build(qs: Queries, hc: np.ndarray, nc: np.ndarray, variant: str | None, out: dict | None):
        if variant is None:
            cands = union_candidates(hc, nc)
        else:
            cands = fill_candidates(union_candidates(hc, nc[:, :Nn]), out[0], B)
        q, it, f = base_features(qs, cands, items, _ranks(cands, hc), _ranks(cands, nc), ec)
        if variant is not None:
            base = np.concatenate([hc, nc[:, :Nn]], axis=1)
            lp = _lookup(cands, base, out[2])
            lp = np.where(np.isnan(lp), _lookup(cands, out[0], out[1]), lp)
            br = _ranks(cands, out[0])
            m = cands >= 0
            f = pd.concat([f, sid_features(qs, q, it, sids[variant].codes, items, lp[m], br[m], ec.nearby_decay_km)], axis=1)
        y = (it == qs.target[q]).astype(np.int64)
        return q, it, f, y, cands

    arms: list[str | None] = [None] + [v for v in sids if any(k[0] == v for k in tiger_out)]
    importance: dict[str, dict[str, float]] = {}
    plots: list[str] = []
    notes: list[str] = []
    for arm in arms:
        per_seed_recall = []
        for seed in seeds:
            out = {} if arm is None else tiger_out.get((arm, seed))
            if arm is not None and out is None:
                continue
            qv_, itv, fv, yv, _ = build(qv, hv, nv, arm, out and out["valid"])
            qt_, itt, ft, yt, ct = build(qt, ht, nt, arm, out and out["test"])
            if arm is not None:
                per_seed_recall.append({"beam": candidate_recall(out["test"][0][:, :B], qt.target), "union": candidate_recall(ct, qt.target)})
            # ranker training queries: validation queries whose target is a candidate; a seeded 20% early-stops
            has_pos = np.bincount(qv_, weights=yv, minlength=len(qv.target)) > 0
            name = "ranker" if arm is None else f"ranker+{arm}"
            if has_pos.sum() < 2:  # nothing to fit and early-stop on (a tiny catalogue)
                notes.append(f"{name} seed {seed}: only {int(has_pos.sum())} validation queries hold their target among the candidates; not fitted")
                continue
            order = np.random.default_rng(seed).permutation(np.flatnonzero(has_pos))
            n_stop = max(1, int(round(ec.ranker_holdout * len(order))))
            stop_q = np.zeros(len(qv.target), bool)
            stop_q[order[:n_stop]] = True
            fit_q = has_pos & ~stop_q
            parts = []
            for sel in (fit_q, stop_q):
                r = sel[qv_]
                parts.append((fv[r].reset_index(drop=True), yv[r], _groups(qv_[r], len(qv.target))[sel]))
            model = fit_rank(parts[0], parts[1], ec, seed)
            tokens = 0.0
            if arm is not None:  # SID tokens as categoricals only where they do better on the early-stopping validation queries
                plain = [(f.drop(columns=list(CATEGORICAL)), y, g) for f, y, g in parts]
                alt = fit_rank(plain[0], plain[1], ec, seed)
                if _ndcg10(alt) >= _ndcg10(model):
                    model, ft = alt, ft.drop(columns=list(CATEGORICAL))
                else:
                    tokens = 1.0
            score = model.predict(ft, num_iteration=model.best_iteration_)
            ranked = _top(qt_, itt, score, len(qt.target), K)
            disp = "LambdaMART, no SIDs" if arm is None else f"LambdaMART + {display_name(arm, sids[arm])}"
            add(name, disp, "ranker" if arm is None else "sid", {"seed": seed, "trees": int(model.best_iteration_ or ec.ranker_trees),
                                                                 "valid_ndcg10": _ndcg10(model), "sid_tokens": tokens,
                                                                 "candidates": float((ct >= 0).sum(1).mean()),
                                                                 **ranked_metrics(ranked, qt.target, revisit_t, GEN_KS)})
            if seed == seeds[0]:
                gain = pd.Series(model.booster_.feature_importance("gain"), index=model.booster_.feature_name())
                importance[name] = {k: float(v) for k, v in (gain / max(gain.sum(), 1e-12)).sort_values(ascending=False).items()}
                if plot_dir and (arm is None or arm == "lgsid"):
                    os.makedirs(plot_dir, exist_ok=True)
                    plots.append(importance_plot(model, os.path.join(plot_dir, f"ranker_importance_{name.replace('+', '_')}.png"),
                                                 f"{disp}: feature importance (gain), seed {seed}"))
        if per_seed_recall:
            recall["per_variant"][arm] = {k: float(np.mean([r[k] for r in per_seed_recall])) for k in per_seed_recall[0]}
    summarise_runs(rows)
    return {"n_train_queries": int(len(qv.target)), "n_test_queries": int(len(qt.target)), "history_candidates": ec.ranker_history_candidates,
            "nearby_candidates": Nn, "beam_size": B, "split": "fit and early stopping on validation queries; rows on test",
            "variants": rows, "recall": recall, "importance": importance, "plots": plots, "notes": notes}
