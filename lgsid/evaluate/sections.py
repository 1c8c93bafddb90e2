"""The report's sections over in-memory inputs (no I/O besides PNG plots):

* :func:`geo_section` — geo-awareness of every embedding version plus a geographic-oracle row (Table 3);
* :func:`codebook_section` — codebook health and a map per compared tokenizer (Fig. 4, Fig. 5);
* :func:`generative_section` — next-item baselines, then TIGER-style retrieval per SID variant and
  decoding lever, Hit/NDCG@5/10 overall and split into revisit / new targets (Table 2);
* :func:`discriminative_section` — DIN-style CTR AUC on uniform and exposure-like negatives (Table 1).

:func:`evaluate_frames` runs them all and returns the ``metrics.json`` dict.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lgsid.errors import ConfigError
from lgsid.geo import haversine_km
from lgsid.evaluate.ranking import GEN_KS, auc, ranked_metrics, summarise_runs
from lgsid.evaluate.jobs import run_jobs
from lgsid.evaluate.split import Split, assert_no_leak, leave_two_out
from lgsid.evaluate.variants import REFERENCE, EvalInputs, SIDCodes, display_name, train_tokenizers
from lgsid.train.runtime import use_cpu_bf16

if TYPE_CHECKING:  # pragma: no cover
    from lgsid.config import EvaluateConfig, LGSIDConfig

log = logging.getLogger(__name__)

ORACLE = "geo-oracle"
"""Geo-table row of the geographic oracle: each item's K nearest items by distance."""
DECODING_LEVERS = ("repeat", "mix", "reach", "near")


def parse_decoding(mode: str) -> frozenset[str]:
    """``"beam"`` -> {}, ``"repeat+reach"`` -> {"repeat", "reach"}; unknown parts raise ConfigError naming the key."""
    parts = frozenset(p for p in str(mode).split("+") if p and p != "beam")
    bad = sorted(parts - set(DECODING_LEVERS))
    if bad:
        raise ConfigError(f"evaluate.tiger_decoding: unknown lever(s) {bad} in {mode!r}; valid: beam, {', '.join(DECODING_LEVERS)} (joined by '+')")
    if {"repeat", "near"} <= parts:
        raise ConfigError(f"evaluate.tiger_decoding: {mode!r} combines 'repeat' and 'near'; use 'mix+near' to add the user's history items to distance-weighted decoding")
    if {"repeat", "mix"} <= parts:
        raise ConfigError(f"evaluate.tiger_decoding: {mode!r} combines 'repeat' and 'mix', two ways of adding the user's history items; use one")
    return parts


# --------------------------------------------------------------------------------------------
# Geo-awareness
# --------------------------------------------------------------------------------------------


def geo_section(inp: EvalInputs, cfg: "LGSIDConfig", plot_dir: str | None) -> dict:
    """Table 3: one row per embedding model version (reference first), the geographic oracle last,
    with P/C/T@K, Similarity@K, NMI and the neighbours' distances (median km, share within r km)."""
    from lgsid.evaluate.geo import geo_awareness, projection_plot
    from lgsid.metrics import nearest_by_distance, neighbour_distances, neighbour_share, qualified_labels, topk_neighbours

    if not inp.embeddings:
        return {"skipped": "no item_embeddings (run `lgsid embed`)"}
    ec = cfg.evaluate
    n = len(inp.items)
    if n < 3:
        return {"skipped": f"only {n} items with embeddings; need >= 3"}
    rng = np.random.default_rng(ec.data_seed)
    sel = np.sort(rng.choice(n, size=ec.max_geo_items, replace=False)) if 0 < ec.max_geo_items < n else np.arange(n)
    it = inp.items.iloc[sel]
    lat, lon = it["lat"].to_numpy(float), it["lon"].to_numpy(float)
    labels = qualified_labels(it["state"], it["county"], it["town"])
    ref = inp.embeddings.get(REFERENCE)
    ks = sorted({min(int(k), len(sel) - 1) for k in ec.ks})
    rows, plots = {}, []
    order = sorted(inp.embeddings, key=lambda v: (v != REFERENCE, v))
    for v in order:
        emb = inp.embeddings[v][sel]
        rows[v] = geo_awareness(emb, None if ref is None else ref[sel], labels, ec.ks, seed=ec.data_seed, max_clusters=ec.nmi_max_clusters)
        idx, _ = topk_neighbours(emb, max(ks))
        for k in ks:
            rows[v].update({f"{m}@{k}": x for m, x in neighbour_distances(lat, lon, idx[:, :k], ec.geo_radii_km).items()})
        if plot_dir:
            os.makedirs(plot_dir, exist_ok=True)
            plots.append(projection_plot(emb, labels["state"], os.path.join(plot_dir, f"projection_{v}.png"), f"{v}: PCA of item embeddings, coloured by state", seed=ec.data_seed))
    geo_idx = nearest_by_distance(lat, lon, max(ks))
    oracle: dict[str, float] = {}
    for k in ks:
        nb = geo_idx[:, :k]
        if ref is not None:
            from lgsid.evaluate.geo import similarity_at_k

            oracle[f"Similarity@{k}"] = similarity_at_k(nb, ref[sel])
        for lv, key in (("state", "P"), ("county", "C"), ("town", "T")):
            oracle[f"{key}@{k}"] = neighbour_share(nb, labels[lv])
        oracle.update({f"{m}@{k}": x for m, x in neighbour_distances(lat, lon, nb, ec.geo_radii_km).items()})
    rows[ORACLE] = oracle
    out = {"n_items": int(len(sel)), "radii_km": [float(r) for r in ec.geo_radii_km], "rows": rows, "plots": plots}
    if ref is None:
        out["note"] = "no 'reference' embeddings: Similarity@K left out"
    return out


# --------------------------------------------------------------------------------------------
# Codebook health
# --------------------------------------------------------------------------------------------


def top_l1_categories(codes: np.ndarray, categories: np.ndarray, top_codes: int = 5, top_cats: int = 3) -> list[dict]:
    """Category distribution under the largest level-1 codes (Fig. 5 as a table).

    Returns:
        One dict per code, largest first: ``{"code", "items", "categories": [[name, share], ...]}``.
    """
    df = pd.DataFrame({"c": np.asarray(codes)[:, 0], "cat": pd.Series(categories).fillna("<none>").astype(str).to_numpy()})
    out = []
    for code, g in sorted(df.groupby("c"), key=lambda kv: -len(kv[1]))[:top_codes]:
        vc = g["cat"].value_counts(normalize=True).head(top_cats)
        out.append({"code": int(code), "items": int(len(g)), "categories": [[str(k), float(v)] for k, v in vc.items()]})
    return out


def codebook_section(inp: EvalInputs, sids: dict[str, SIDCodes], cfg: "LGSIDConfig", plot_dir: str | None) -> dict:
    """Per-tokenizer codebook health (:mod:`lgsid.tokenizer.health`) and a lat/lon map coloured by level-1 code."""
    from lgsid.plots import sid_map_plot
    from lgsid.tokenizer.health import codebook_health, health_plots

    if not sids:
        return {"skipped": "no tokenizer could be trained (see skipped variants)"}
    cats = inp.items["category_l1"].fillna("<none>").astype(str).to_numpy()
    out: dict[str, Any] = {}
    for name, s in sids.items():
        sizes = [max(int(k), int(s.codes[:, i].max()) + 1) for i, k in enumerate(cfg.tokenizer.codebook_sizes[: s.codes.shape[1]])]
        entry: dict[str, Any] = {"embedding_version": s.embedding_version, "source": s.source, "fit_seconds": s.seconds,
                                 "metrics": codebook_health(s.codes, sizes, cats)}
        entry["top_l1_categories"] = top_l1_categories(s.codes, cats)
        if plot_dir:
            entry["plots"] = health_plots(s.codes, sizes, os.path.join(plot_dir, f"codebook_{name}"), cats)
            os.makedirs(plot_dir, exist_ok=True)
            entry["plots"].append(sid_map_plot(inp.items["lat"], inp.items["lon"], s.codes[:, 0], os.path.join(plot_dir, f"map_{name}.png"),
                                               f"{display_name(name, s)}: items by level-1 code", seed=cfg.evaluate.data_seed))
        out[name] = entry
    return out


# --------------------------------------------------------------------------------------------
# Downstream data
# --------------------------------------------------------------------------------------------


@dataclass
class TestUsers:
    """The train / validation / test split in item indices.

    Attributes:
        seqs: train sequence (item indices, time order) of every user with train rows; the
            downstream models train on these only.
        test_seq: (U,) index into ``seqs`` of each test user.
        target: (U,) held-out test item of each test user.
        user_id: (U,) their ids.
        revisit: (U,) bool, target among the user's history (train + validation items).
        valid_target: (U,) the user's validation item (the interaction before the test one), -1
            when the user has none (2 interactions).
    """

    seqs: list[np.ndarray]
    test_seq: np.ndarray
    target: np.ndarray
    user_id: np.ndarray
    revisit: np.ndarray
    valid_target: np.ndarray | None = None
    _reach: dict = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.valid_target is None:
            self.valid_target = np.full(len(self.test_seq), -1, dtype=np.int64)

    @property
    def histories(self) -> list[np.ndarray]:
        """Test-time history of each test user: their train items, then their validation item."""
        return [self.seqs[i] if v < 0 else np.append(self.seqs[i], v) for i, v in zip(self.test_seq, self.valid_target)]

    @property
    def valid_users(self) -> np.ndarray:
        """(V,) positions (into the test users) of the users with a validation item."""
        return np.flatnonzero(self.valid_target >= 0)

    @property
    def valid_histories(self) -> list[np.ndarray]:
        """(V,) the train items of each user with a validation item: their history at the validation event."""
        return [self.seqs[self.test_seq[u]] for u in self.valid_users]

    @property
    def seqs_at_test(self) -> list[np.ndarray]:
        """Every user's sequence at test time: ``seqs`` with each validation item appended to its user's."""
        out = list(self.seqs)
        for u in self.valid_users:
            out[self.test_seq[u]] = np.append(out[self.test_seq[u]], self.valid_target[u])
        return out

    def counts(self, n_items: int) -> np.ndarray:
        """(N,) interaction count of every item at test time: the train rows plus the validation rows."""
        from lgsid.evaluate.baselines import item_counts

        return item_counts(self.seqs_at_test, n_items)

    def reachable(self, recent: np.ndarray, lat: np.ndarray, lon: np.ndarray, radius_km: float) -> np.ndarray:
        """:func:`lgsid.evaluate.tiger.reachable_mask` of ``recent``, computed once per (recent, radius) and shared by the sections."""
        from lgsid.evaluate.tiger import reachable_mask

        key = (recent.tobytes(), recent.shape, float(radius_km))
        if key not in self._reach:
            self._reach[key] = reachable_mask(recent, lat, lon, radius_km)
        return self._reach[key]


def index_split(inp: EvalInputs, split: Split) -> TestUsers:
    """Train sequences per user (item indices, time order), plus test users' row, target, validation item and revisit flag."""
    pos = pd.Series(np.arange(len(inp.items)), index=inp.items["item_id"].to_numpy())
    tr = split.train.assign(ix=pos.reindex(split.train["item_id"]).to_numpy())
    users = tr["user_id"].drop_duplicates().to_numpy()
    seq_of = {u: i for i, u in enumerate(users)}
    seqs = [g.to_numpy(dtype=np.int64) for _, g in tr.groupby("user_id", sort=False)["ix"]]
    te = split.test[split.test["user_id"].isin(seq_of)]
    test_seq = te["user_id"].map(seq_of).to_numpy(dtype=np.int64)
    target = pos.reindex(te["item_id"]).to_numpy(dtype=np.int64)
    valid_item = pos.reindex(split.valid["item_id"]).to_numpy(dtype=np.int64) if len(split.valid) else np.zeros(0, np.int64)
    valid_of = dict(zip(split.valid["user_id"], valid_item))
    valid_target = np.array([valid_of.get(u, -1) for u in te["user_id"]], dtype=np.int64)
    tu = TestUsers(seqs=seqs, test_seq=test_seq, target=target, user_id=te["user_id"].to_numpy(), revisit=np.zeros(len(te), bool),
                   valid_target=valid_target)
    tu.revisit = np.array([t in set(h.tolist()) for h, t in zip(tu.histories, target)], dtype=bool)
    return tu


def _train_examples(seqs: list[np.ndarray], cfg: "LGSIDConfig") -> tuple[np.ndarray, np.ndarray]:
    """Next-item training examples (hist (M, H), target (M,)), capped at ``max_train_examples`` with ``data_seed``."""
    from lgsid.evaluate.tiger import training_examples

    ec = cfg.evaluate
    hist, tgt = training_examples(seqs, ec.max_history)
    if ec.max_train_examples and len(tgt) > ec.max_train_examples:
        keep = np.sort(np.random.default_rng(ec.data_seed).choice(len(tgt), size=ec.max_train_examples, replace=False))
        hist, tgt = hist[keep], tgt[keep]
    return hist, tgt


def model_seeds(ec: "EvaluateConfig", n_items: int) -> list[int]:
    """The seeds the downstream models (TIGER, SASRec, DIN) run with.

    Every seed of ``evaluate.seeds`` up to ``evaluate.multi_seed_max_items`` items (0 = no limit);
    above it only the first: at that size the spread over seeds is small next to the sampling
    error over the test users, and each seed costs a full set of model fits.
    """
    cap = ec.multi_seed_max_items
    seeds = [int(s) for s in ec.seeds]
    return seeds if not cap or n_items <= cap else seeds[:1]


def valid_examples(tu: TestUsers, max_history: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation examples of the next-item models: (hist (V, H) of each validation user's train items, target (V,) their validation item)."""
    from lgsid.evaluate.tiger import history_matrix

    return history_matrix(tu.valid_histories, max_history), tu.valid_target[tu.valid_users]


def _fit_columns(fit: dict | None) -> dict[str, float]:
    """A fit's validation record as run columns: epochs run, the best epoch and its validation loss."""
    if not fit or not fit["valid_loss"]:
        return {}
    return {"epochs_run": float(fit["epochs_run"]), "best_epoch": float(fit["best_epoch"]), "valid_loss": float(min(fit["valid_loss"]))}


def _repeat_candidates(histories: list[np.ndarray], max_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(U, C) each user's most recent distinct training items (-1 padded) and (U, C) their visit counts."""
    cand = np.full((len(histories), max_items), -1, dtype=np.int64)
    cnt = np.zeros((len(histories), max_items))
    for u, h in enumerate(histories):
        items, counts = np.unique(h, return_counts=True)
        last = np.zeros(len(items), dtype=np.int64)
        np.maximum.at(last, np.searchsorted(items, h), np.arange(len(h)))
        keep = np.argsort(-last, kind="stable")[:max_items]
        cand[u, :len(keep)], cnt[u, :len(keep)] = items[keep], counts[keep]
    return cand, cnt


# --------------------------------------------------------------------------------------------
# Generative
# --------------------------------------------------------------------------------------------


def _generative_job(job: tuple[str, int], sh: dict) -> dict[str, Any]:
    """One generative (model, seed) job of :func:`generative_section`: train, then decode every row of it.

    Returns:
        ``{"rows": [(levers, (U, K) ranked items, seconds)], "ranker": ...}``: the plain beam row first; seconds =
        training + that row's decoding (rows with the same reach setting share one beam search, counted in the
        first). ``ranker`` (plain SID models, when the ranker section runs): per query set ("valid", "test")
        the beam of ``ranker_beam_size`` items, its log-probabilities and the log-probabilities of the
        history + nearby candidates (:func:`lgsid.evaluate.ranker.ranker_inputs`); else None.
    """
    from lgsid.evaluate import baselines as bl
    from lgsid.evaluate import tiger

    name, seed = job
    ec = sh["ec"]
    t0 = time.perf_counter()
    if name == "sasrec":
        model = bl.train_sasrec(sh["n_items"], sh["hist_tr"], sh["tgt_tr"], seed=seed, epochs=ec.tiger_epochs, d_model=ec.tiger_d_model, nhead=ec.tiger_heads,
                                layers=ec.tiger_layers, batch_size=ec.tiger_batch_size, lr=ec.tiger_lr, dropout=ec.tiger_dropout,
                                lr_schedule=ec.tiger_lr_schedule, negatives=ec.sasrec_negatives, valid=sh["valid_ex"],
                                patience=ec.early_stopping_patience)
        return {"rows": [(frozenset(), bl.sasrec_lists(model, sh["hist_te"], sh["k_list"]), time.perf_counter() - t0)], "ranker": None,
                "fit": getattr(model, "fit_history", None)}
    base = name.removesuffix("+context")
    vocab = tiger.SIDVocab.from_codes(*sh["sids"][base])
    trie = tiger.PrefixTrie(vocab.sids)
    with_ctx = name != base
    model = tiger.train_tiger(vocab, sh["hist_tr"], sh["tgt_tr"], seed=seed, epochs=ec.tiger_epochs, d_model=ec.tiger_d_model, nhead=ec.tiger_heads,
                              layers=ec.tiger_layers, batch_size=ec.tiger_batch_size, lr=ec.tiger_lr,
                              context=sh["ctx_tr"] if with_ctx else None, n_context=sh["n_ctx"] if with_ctx else 0,
                              bf16=use_cpu_bf16(ec.cpu_bf16, "evaluate.cpu_bf16"), dropout=ec.tiger_dropout,
                              history_tokens=ec.tiger_history_tokens, lr_schedule=ec.tiger_lr_schedule,
                              valid=sh["valid_ex"], patience=ec.early_stopping_patience, valid_context=sh["ctx_v"] if with_ctx else None)
    t_train = time.perf_counter() - t0
    ctx = sh["ctx_te"] if with_ctx else None
    hist_te = sh["hist_te"]
    my_modes = [("beam", frozenset())] + ([(m, lv) for m, lv in sh["modes"] if lv] if base in ec.lever_variants else [])
    out = []
    rep_logp = None  # the model's log-probability of each user's history items, shared by the repeat and mix rows
    beams: dict[bool, tuple[np.ndarray, np.ndarray]] = {}  # one beam search per reach setting, shared by the rows that read it
    for _, levers in my_modes:
        t1 = time.perf_counter()
        reach = "reach" in levers
        if reach not in beams:
            beams[reach] = tiger.recommend(model, vocab, trie, hist_te, ec.beam_size, context=ctx, allowed=sh["allowed"] if reach else None,
                                           return_scores=True)
        items, sc = beams[reach]
        if levers & {"repeat", "mix"} and rep_logp is None:
            rep_logp = tiger.score_items(model, vocab, hist_te, sh["rep_items"], context=ctx)
        if "near" in levers:  # rescore the beam + the nearest unvisited items by p(i | h) · exp(-d / τ)
            cand = tiger.near_candidates(items, sh["near_items"], sh["rep_items"] if "mix" in levers else None,
                                         sh["allowed"] if reach else None)
            lp = np.where(cand >= 0, tiger.score_items(model, vocab, hist_te, cand, context=ctx), -np.inf)
            last = hist_te[:, -1]
            d = haversine_km(sh["lat"][last][:, None], sh["lon"][last][:, None], sh["lat"][np.clip(cand, 0, None)], sh["lon"][np.clip(cand, 0, None)])
            ns = np.where(cand >= 0, tiger.near_scores(lp, d, ec.nearby_decay_km), -np.inf)
            if "mix" in levers:  # the kernel-weighted probabilities take the place of the beam's in the mixture
                items = tiger.repeat_explore_lists(cand, ns, sh["rep_items"], sh["rep_counts"], rep_logp, sh["repeat_prob"], ec.beam_size)
            else:
                items = tiger.merge_ranked(cand, ns, cand[:, :0], ns[:, :0], ec.beam_size)
        elif "repeat" in levers:
            rs = rep_logp + ec.tiger_repeat_bonus * np.log1p(sh["rep_counts"])
            items = tiger.merge_ranked(items, sc, sh["rep_items"], rs, ec.beam_size)
        elif "mix" in levers:
            items = tiger.repeat_explore_lists(items, sc, sh["rep_items"], sh["rep_counts"], rep_logp, sh["repeat_prob"], ec.beam_size)
        out.append((levers, items, t_train + time.perf_counter() - t1))
    rk = None
    if sh.get("ranker") and not with_ctx:
        rk = {}
        for part in ("valid", "test"):
            qs, hc, nc = sh["ranker"][part]
            hist = tiger.history_matrix(qs.hist, ec.max_history)
            beam_items, beam_lp = tiger.recommend(model, vocab, trie, hist, sh["ranker"]["beam"], return_scores=True)
            base = np.concatenate([hc, nc[:, :ec.ranker_nearby_candidates]], axis=1)
            rk[part] = (beam_items, beam_lp, tiger.score_items(model, vocab, hist, base))
    return {"rows": out, "ranker": rk, "fit": getattr(model, "fit_history", None)}


def generative_section(inp: EvalInputs, sids: dict[str, SIDCodes], cfg: "LGSIDConfig", tu: TestUsers, progress: bool = True,
                       ranker: dict | None = None, ranker_out: dict | None = None, spark=None) -> dict:
    """Table 2: baselines, then TIGER-style retrieval per SID variant and decoding lever, mean ± std over seeds.

    With ``ranker`` (:func:`lgsid.evaluate.ranker.ranker_inputs`), every plain SID model also decodes the ranker's
    validation and test queries into ``ranker_out[(variant, seed)]``.

    Rows (``variants`` in order): the baselines of ``evaluate.baselines`` (``kind: "baseline"``),
    then per SID variant the plain beam row (named as the variant) and, for ``evaluate.lever_variants``,
    one row per non-plain ``evaluate.tiger_decoding`` mode (``<variant>+<levers>``) and the
    context-token row (``<variant>+context``). Every row has Hit/NDCG@5/10 over all test users and
    split into revisit / new targets, and Reach@beam.
    """
    from lgsid.evaluate import baselines as bl
    from lgsid.evaluate import tiger

    ec = cfg.evaluate
    modes = [(m, parse_decoding(m)) for m in ec.tiger_decoding]
    bad = sorted(set(ec.baselines) - set(bl.BASELINES))
    if bad:
        raise ConfigError(f"evaluate.baselines: unknown baseline(s) {bad}; valid: {', '.join(bl.BASELINES)}")
    seqs, test_seq, target = tu.seqs, tu.test_seq, tu.target
    hist_tr, tgt_tr = _train_examples(seqs, cfg)
    if len(tgt_tr) == 0 or len(test_seq) == 0:
        return {"skipped": f"not enough interactions: {len(tgt_tr)} training examples, {len(test_seq)} test users"}
    n_items = len(inp.items)
    histories = tu.histories
    hist_te = tiger.history_matrix(histories, ec.max_history)  # (U, H)
    recent = hist_te[:, -ec.reach_recent:]
    lat, lon = inp.items["lat"].to_numpy(float), inp.items["lon"].to_numpy(float)
    k_list = max(ec.beam_size, max(GEN_KS))

    def score(ranked: np.ndarray) -> dict[str, float]:
        r = ranked_metrics(ranked, target, tu.revisit, GEN_KS)
        r[f"Reach@{ec.beam_size}"] = tiger.reach_share(ranked[:, :ec.beam_size], recent, lat, lon, ec.reach_radius_km)
        r["valid_share"] = float((ranked[:, :ec.beam_size] >= 0).mean())
        return r

    rows: dict[str, Any] = {}

    def add(name: str, display: str, kind: str, r: dict, **extra) -> None:
        rows.setdefault(name, {"runs": [], "display": display, "kind": kind, **extra})["runs"].append(r)

    counts = tu.counts(n_items)
    fixed = {"popularity": lambda: bl.popularity_lists(counts, len(histories), k_list),
             "history": lambda: bl.history_lists(histories, counts, k_list),
             "history_nearby": lambda: bl.history_nearby_lists(histories, counts, lat, lon, ec.nearby_decay_km, k_list)}
    for name in ec.baselines:
        if name in fixed:
            t0 = time.perf_counter()
            add(name, bl.BASELINES[name], "baseline", {"seed": -1, "seconds": 0.0, **score(fixed[name]())})
            rows[name]["runs"][-1]["seconds"] = time.perf_counter() - t0

    need_reach = any("reach" in lv for _, lv in modes)
    allowed = tu.reachable(recent, lat, lon, ec.reach_radius_km) if need_reach else None
    need_repeat = any(lv & {"repeat", "mix"} for _, lv in modes)
    rep_items, rep_counts = _repeat_candidates(histories, 2 * ec.max_history) if need_repeat else (None, None)
    repeat_prob = tiger.repeat_probability(histories, seqs, ec.repeat_prior_strength) if any("mix" in lv for _, lv in modes) else None
    need_near = any("near" in lv for _, lv in modes)
    near_items = bl.nearest_unvisited(histories, lat, lon, ec.near_candidates) if need_near else None
    ctx_tr = ctx_te = ctx_v = None
    n_ctx = 0
    valid_ex = valid_examples(tu, ec.max_history)
    if ec.tiger_context_h3_res > 0:
        from lgsid.geo import latlng_to_cells

        cells = latlng_to_cells(lat, lon, int(ec.tiger_context_h3_res))
        _, cell_id = np.unique(cells, return_inverse=True)
        n_ctx = int(cell_id.max()) + 1
        ctx_tr, ctx_te = cell_id[hist_tr[:, -1]], cell_id[hist_te[:, -1]]
        ctx_v = cell_id[valid_ex[0][:, -1]]

    seeds = model_seeds(ec, n_items)
    jobs: list[tuple[str, int]] = [("sasrec", s) for s in seeds if "sasrec" in ec.baselines]
    jobs += [(n, s) for n in sids for s in seeds]
    if n_ctx:
        jobs += [(f"{n}+context", s) for n in sids if n in ec.lever_variants for s in seeds]
    shared = {"ec": ec, "modes": modes, "n_items": n_items, "hist_tr": hist_tr, "tgt_tr": tgt_tr, "hist_te": hist_te, "k_list": k_list,
              "allowed": allowed, "rep_items": rep_items, "rep_counts": rep_counts, "repeat_prob": repeat_prob, "ctx_tr": ctx_tr, "ctx_te": ctx_te, "n_ctx": n_ctx,
              "near_items": near_items, "lat": lat, "lon": lon, "ranker": ranker, "valid_ex": valid_ex, "ctx_v": ctx_v,
              "sids": {n: (s.codes, s.suffix) for n, s in sids.items()}}

    def cost(job: tuple[str, int]) -> float:  # submission order only: the costliest first
        # TIGER with decoding levers (2) > TIGER (1); SASRec's softmax grows with the items it scores: about 0.5 at the
        # demo's 3k, 1 at 6k (38 s vs ~40 s per TIGER fit), and 7 at 100k with the full softmax (550 s vs ~80 s)
        if job[0] == "sasrec":
            return 0.25 + bl.sasrec_scored_items(n_items, ec.sasrec_negatives) / 8000
        return 1.0 + (job[0].removesuffix("+context") in ec.lever_variants)

    results = run_jobs(_generative_job, jobs, shared, workers=ec.workers, threads=ec.torch_threads, cost=cost,
                       desc="evaluate: generative (model x seed)", progress=progress, spark=spark)
    curves: dict[str, list[list[float]]] = {}
    for (name, seed), res in zip(jobs, results):
        decoded = res["rows"]
        if res["ranker"] is not None and ranker_out is not None:
            ranker_out[(name, seed)] = res["ranker"]
        fit = _fit_columns(res["fit"])
        if res["fit"]:
            curves.setdefault(name, []).append(res["fit"]["valid_loss"])
        if name == "sasrec":
            items, seconds = decoded[0][1], decoded[0][2]
            add(name, bl.BASELINES[name], "baseline", {"seed": seed, "seconds": seconds, **fit, **score(items)})
            continue
        base = name.removesuffix("+context")
        s = sids[base]
        with_ctx = name != base
        extra = {"embedding_version": s.embedding_version, "source": s.source, "variant": base}
        for levers, items, seconds in decoded:
            row = name if not levers else f"{name}+{'+'.join(sorted(levers))}"
            disp = display_name(base, s) + ("" if not with_ctx else " +context") + "".join(f" +{lv}" for lv in sorted(levers))
            add(row, disp, "sid", {"seed": seed, "seconds": seconds, **fit, **score(items)}, levers=sorted(levers) + (["context"] if with_ctx else []), **extra)
    summarise_runs(rows)
    target_reach = tiger.reach_share(target[:, None], recent, lat, lon, ec.reach_radius_km)
    base_rows = [n for n, v in rows.items() if v["kind"] == "baseline"]
    best = max(base_rows, key=lambda n: rows[n]["summary"]["Hit@10"]["mean"], default=None)
    return {
        "n_train_examples": int(len(tgt_tr)), "n_test_users": int(len(test_seq)), "reach_radius_km": ec.reach_radius_km,
        "reach_target_share": target_reach, "revisit_share": float(tu.revisit.mean()),
        "last_item_repeat_share": float(np.mean(hist_te[:, -1] == target)), "best_baseline": best,
        "nearby_decay_km": ec.nearby_decay_km, "variants": rows, "n_valid_examples": int(len(valid_ex[1])),
        "early_stopping_patience": ec.early_stopping_patience, "valid_loss_curves": curves,
    }


# --------------------------------------------------------------------------------------------
# Discriminative
# --------------------------------------------------------------------------------------------


def _discriminative_job(job: tuple[str, int], sh: dict) -> dict[str, float]:
    """One DIN (arm, seed) job of :func:`discriminative_section`: ``{"seed", "seconds", <AUC key>: value, ...}``."""
    import torch

    from lgsid.evaluate import din

    arm, seed = job
    ec = sh["ec"]
    torch.manual_seed(seed)
    model = din.DIN(sh["n_items"], sh["arms"][arm], dim=ec.din_dim, sid_mode=ec.din_sid_mode)
    t0 = time.perf_counter()
    din.train_din(model, *sh["train"], seed=seed, epochs=ec.din_epochs, batch_size=ec.din_batch_size, lr=ec.din_lr,
                  lr_schedule=ec.din_lr_schedule, valid=sh["valid"], patience=ec.early_stopping_patience)
    r: dict[str, float] = {"seed": seed, "seconds": time.perf_counter() - t0, **_fit_columns(getattr(model, "fit_history", None))}
    for key, (H, T, Y) in sh["test_sets"].items():
        r[key] = auc(Y, din.predict(model, H, T))
    return r


def discriminative_section(inp: EvalInputs, sids: dict[str, SIDCodes], cfg: "LGSIDConfig", tu: TestUsers, progress: bool = True,
                           spark=None) -> dict:
    """Table 1: DIN-style CTR test AUC for ID only ("Origin") and ID + each SID variant, mean ± std over
    seeds, on uniform test negatives (``AUC``) and on exposure-like ones (``AUC_exposure``: unvisited
    items within ``reach_radius_km`` of the user's recent visits), plus two non-learned scorers
    (popularity; user history + nearby popularity) as baselines on the same rows."""
    from lgsid.evaluate import baselines as bl
    from lgsid.evaluate import din, tiger
    from lgsid.geo import haversine_km

    ec = cfg.evaluate
    seqs, test_seq, test_target = tu.seqs, tu.test_seq, tu.target
    n_items = len(inp.items)
    if n_items < 2:
        return {"skipped": f"only {n_items} items"}
    hist_tr, pos_tr = _train_examples(seqs, cfg)
    if len(pos_tr) == 0 or len(test_seq) == 0:
        return {"skipped": f"not enough interactions: {len(pos_tr)} training examples, {len(test_seq)} test users"}
    rng = np.random.default_rng(ec.data_seed)  # negatives shared by every variant and seed
    H_tr, T_tr, Y_tr = din.ctr_examples(hist_tr, pos_tr, n_items, ec.din_negatives, rng)
    histories = tu.histories
    hist_te = tiger.history_matrix(histories, ec.max_history)
    test_sets = {"AUC": din.ctr_examples(hist_te, test_target, n_items, ec.din_negatives, rng)}
    lat, lon = inp.items["lat"].to_numpy(float), inp.items["lon"].to_numpy(float)
    if ec.din_exposure_negatives:
        near = tu.reachable(hist_te[:, -ec.reach_recent:], lat, lon, ec.reach_radius_km)
        neg, fallback = din.exposure_negatives(test_target, near, histories, ec.din_negatives, rng)
        test_sets["AUC_exposure"] = din.ctr_examples_with(hist_te, test_target, neg)
        exposure_uniform_share = fallback
    counts = tu.counts(n_items)
    variants: dict[str, Any] = {}
    # non-learned scorers on the same test rows (rank-equivalent to the list baselines)
    last = hist_te[:, -1]
    for name, disp in (("popularity", bl.BASELINES["popularity"]), ("history_nearby", bl.BASELINES["history_nearby"])):
        if name not in ec.baselines:
            continue
        r: dict[str, Any] = {"seed": -1, "seconds": 0.0}
        for key, (H, T, Y) in test_sets.items():
            row_user = np.repeat(np.arange(len(test_seq)), 1 + ec.din_negatives)
            if name == "popularity":
                p = np.log1p(counts[T].astype(float))
            else:
                visits = np.array([np.count_nonzero(histories[u] == t) for u, t in zip(row_user, T)], dtype=float)
                d = haversine_km(lat[last[row_user]], lon[last[row_user]], lat[T], lon[T])
                p = 1e6 * visits + bl.nearby_popularity_score(counts[T], d, ec.nearby_decay_km)
            r[key] = auc(Y, p)
        variants[name] = {"runs": [r], "display": disp, "kind": "baseline"}
    arms: dict[str, np.ndarray | None] = {"origin": None}
    arms.update({name: s.codes for name, s in sids.items()})
    jobs = [(a, s) for a in arms for s in model_seeds(ec, n_items)]
    hv, tv = valid_examples(tu, ec.max_history)
    valid = din.ctr_examples(hv, tv, n_items, ec.din_negatives, np.random.default_rng(ec.data_seed + 1)) if len(tv) else None
    shared = {"ec": ec, "n_items": n_items, "arms": arms, "train": (H_tr, T_tr, Y_tr), "test_sets": test_sets, "valid": valid}
    results = run_jobs(_discriminative_job, jobs, shared, workers=ec.workers, threads=ec.torch_threads,
                       cost=lambda j: 1.0 + (j[0] != "origin"), desc="evaluate: discriminative (variant x seed)", progress=progress,
                       spark=spark)
    for (arm, _), r in zip(jobs, results):
        disp = "Origin (ID only)" if arm == "origin" else f"+ {display_name(arm, sids[arm])}"
        variants.setdefault(arm, {"runs": [], "display": disp, "kind": "baseline" if arm == "origin" else "sid"})["runs"].append(r)
    summarise_runs(variants)
    out = {"n_train_rows": int(len(Y_tr)), "n_test_rows": int(len(test_sets["AUC"][2])), "negatives_per_positive": ec.din_negatives,
           "sid_mode": ec.din_sid_mode, "variants": variants}
    if ec.din_exposure_negatives:
        out["exposure_radius_km"] = ec.reach_radius_km
        out["exposure_uniform_fallback_share"] = exposure_uniform_share
    return out


# --------------------------------------------------------------------------------------------
# All sections
# --------------------------------------------------------------------------------------------


def evaluate_frames(inp: EvalInputs, cfg: "LGSIDConfig", plot_dir: str | None = None, sids: dict[str, SIDCodes] | None = None, progress: bool = True,
                    fixed: dict[str, SIDCodes] | None = None, spark=None) -> dict:
    """The whole evaluation on in-memory inputs; returns the ``metrics.json`` dict.

    Args:
        inp: items (row order = item index), interactions, embeddings per model version (rows aligned with items).
        cfg: resolved config (``cfg.evaluate`` sizes, ``cfg.tokenizer`` for the compared tokenizers).
        plot_dir: where PNG plots go (None = no plots).
        sids: precomputed codes per variant (tests); None = train the tokenizers in-process.
        progress: show tqdm bars.
        fixed: codes that replace a variant's refit (the registered candidate's own codes).
        spark: a SparkSession whose executors run the independent fits (:mod:`lgsid.evaluate.jobs`);
            None = ``evaluate.workers`` processes on this host. The results are the same.

    Returns:
        ``{"meta", "geo", "codebook", "generative", "discriminative", "skipped"}``; every section is
        either results or ``{"skipped": "<reason>"}``.
    """
    ec = cfg.evaluate
    t_start = time.perf_counter()
    skipped: dict[str, str] = {}
    out: dict[str, Any] = {}
    timings: dict[str, float] = {}

    def off(section: str) -> dict | None:
        if section not in ec.sections:
            return {"skipped": f"not in evaluate.sections {ec.sections}"}
        return None

    t0 = time.perf_counter()
    out["geo"] = off("geo") or geo_section(inp, cfg, plot_dir)
    timings["geo"] = time.perf_counter() - t0

    needs_sids = any(s in ec.sections for s in ("codebook", "generative", "discriminative"))
    t0 = time.perf_counter()
    if sids is None:
        sids = train_tokenizers(inp, cfg, skipped, fixed, spark) if needs_sids else {}
    timings["tokenizers"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["codebook"] = off("codebook") or codebook_section(inp, sids, cfg, plot_dir)
    timings["codebook"] = time.perf_counter() - t0

    split = None
    tu = None
    if inp.interactions is None or len(inp.interactions) == 0:
        reason = "no interactions (run `lgsid ingest`)"
    else:
        known = inp.interactions[inp.interactions["item_id"].isin(inp.items["item_id"])]
        split = leave_two_out(known)
        assert_no_leak(split)
        test = split.test
        if ec.max_users and test["user_id"].nunique() > ec.max_users:
            keep = np.random.default_rng(ec.data_seed).choice(test["user_id"].unique(), size=ec.max_users, replace=False)
            split = Split(train=split.train, test=test[test["user_id"].isin(keep)].reset_index(drop=True), valid=split.valid)
        tu = index_split(inp, split)
        reason = "" if len(tu.test_seq) else "no user has >= 2 interactions with evaluated items"
    rin, ranker_out = None, {}
    if not reason and "ranker" in ec.sections:
        from lgsid.evaluate.ranker import ranker_inputs

        rin = ranker_inputs(tu, ec, inp.items)
    t0 = time.perf_counter()
    out["generative"] = off("generative") or ({"skipped": reason} if reason else generative_section(inp, sids, cfg, tu, progress, rin, ranker_out, spark))
    timings["generative"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if off("ranker") or reason:
        out["ranker"] = off("ranker") or {"skipped": reason}
    else:
        from lgsid.evaluate.ranker import ranker_section

        out["ranker"] = ranker_section(inp.items, sids, rin, ranker_out, ec, model_seeds(ec, len(inp.items)), plot_dir)
    timings["ranker"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["discriminative"] = off("discriminative") or ({"skipped": reason} if reason else discriminative_section(inp, sids, cfg, tu, progress, spark))
    timings["discriminative"] = time.perf_counter() - t0

    for sec in ("geo", "codebook", "generative", "discriminative", "ranker"):
        if "skipped" in out[sec]:
            skipped[sec] = out[sec]["skipped"]
    out["skipped"] = skipped
    seeds = model_seeds(ec, len(inp.items))
    out["meta"] = {
        "n_items": int(len(inp.items)),
        "n_interactions": 0 if inp.interactions is None else int(len(inp.interactions)),
        "n_train_interactions": 0 if split is None else int(len(split.train)),
        "n_valid_interactions": 0 if split is None else int(len(split.valid)),
        "split": "per user: last interaction = test, the one before = validation (users with >= 3), the rest = train; "
                 "downstream models train on train, the ranker fits and early-stops on validation, every table reports test",
        "n_test_users": 0 if tu is None else int(len(tu.test_seq)),
        "embedding_versions": sorted(inp.embeddings),
        "seeds": seeds,
        "notes": [] if len(seeds) == len(ec.seeds) else [
            f"{len(inp.items)} items > evaluate.multi_seed_max_items={ec.multi_seed_max_items}: the downstream models ran with "
            f"seed {seeds[0]} only (evaluate.seeds {list(ec.seeds)}), so every ± below is 0"],
        "sid_sources": {n: s.source for n, s in sids.items()},
        "seconds": time.perf_counter() - t_start,
        "section_seconds": timings,
    }
    return out
