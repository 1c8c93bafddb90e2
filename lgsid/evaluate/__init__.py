"""Step ``evaluate``: reproduce the paper's tables on whatever data the pipeline ran on.

Sections (each present in ``metrics.json`` or recorded as ``{"skipped": "<reason>"}``):

* ``geo`` — geo-awareness of every item_embeddings model version (Table 3, Fig. 3);
* ``codebook`` — codebook health of each compared tokenizer (Fig. 4, Fig. 5);
* ``generative`` — TIGER-style generative retrieval over SIDs, Hit/NDCG@5/10 + reachability (Table 2);
* ``discriminative`` — DIN-style CTR, ID only vs ID + SIDs, test AUC (Table 1).

The compared tokenizers are trained in-process with the same ``cfg.tokenizer`` (same codebook
sizes): RQ-VAE, RQ-KMeans and HGIT on the reference embeddings, and HGIT on the newest aligned
embeddings (LGSID). :func:`evaluate_frames` is the I/O-free core; :func:`run` reads the Delta
tables, writes the report and logs it to MLflow.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lgsid.evaluate.ranking import auc, hit_ndcg_from_ranked
from lgsid.evaluate.split import Split, assert_no_leak, leave_last_out

if TYPE_CHECKING:  # pragma: no cover
    from lgsid.config import LGSIDConfig
    from lgsid.steps import StepSummary

log = logging.getLogger(__name__)

REFERENCE = "reference"
VARIANTS: dict[str, tuple[str, str, str]] = {
    # name: (tokenizer kind, embedding space, display name)
    "rqvae": ("rqvae", "reference", "RQ-VAE"),
    "rqkmeans": ("rqkmeans", "reference", "RQ-KMeans"),
    "hgit-ref": ("hgit", "reference", "HGIT (reference emb.)"),
    "lgsid": ("hgit", "aligned", "LGSID (HGIT + aligned emb.)"),
}
GEN_KS = (5, 10)


@dataclass
class SIDCodes:
    """Codes of one compared tokenizer over the evaluated items (rows in item order)."""

    codes: np.ndarray  # (N, L) int64
    suffix: np.ndarray  # (N,) int64
    embedding_version: str
    seconds: float = 0.0


@dataclass
class EvalInputs:
    """Everything the evaluation reads, as in-memory frames/arrays (rows of ``items`` = item order)."""

    items: pd.DataFrame  # item_id, lat, lon, state, county, town, category_l1, category_l2, brand
    interactions: pd.DataFrame | None  # user_id, item_id, ts
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # model_version -> (N, D)


def newest_aligned(versions) -> str | None:
    """The highest ``aligned-<N>`` model version, or None."""
    best = None
    for v in versions:
        m = re.fullmatch(r"aligned-(\d+)", str(v))
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), v)
    return best[1] if best else None


def _mean_std(xs: list[float]) -> dict[str, Any]:
    a = np.asarray(xs, dtype=float)
    return {"mean": float(np.nanmean(a)) if a.size else float("nan"), "std": float(np.nanstd(a, ddof=1)) if a.size > 1 else 0.0, "runs": [float(x) for x in a]}


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def geo_section(inp: EvalInputs, cfg: "LGSIDConfig", plot_dir: str | None) -> dict:
    """Table 3: one row per embedding model version (reference first), plus projection plots."""
    from lgsid.evaluate.geo import geo_awareness, projection_plot, qualified_labels

    if not inp.embeddings:
        return {"skipped": "no item_embeddings (run `lgsid embed`)"}
    ec = cfg.evaluate
    n = len(inp.items)
    if n < 3:
        return {"skipped": f"only {n} items with embeddings; need >= 3"}
    rng = np.random.default_rng(ec.data_seed)
    sel = np.sort(rng.choice(n, size=ec.max_geo_items, replace=False)) if 0 < ec.max_geo_items < n else np.arange(n)
    it = inp.items.iloc[sel]
    labels = qualified_labels(it["state"], it["county"], it["town"])
    ref = inp.embeddings.get(REFERENCE)
    rows, plots = {}, []
    order = sorted(inp.embeddings, key=lambda v: (v != REFERENCE, v))
    for v in order:
        emb = inp.embeddings[v][sel]
        rows[v] = geo_awareness(emb, None if ref is None else ref[sel], labels, ec.ks, seed=ec.data_seed, max_clusters=ec.nmi_max_clusters)
        if plot_dir:
            os.makedirs(plot_dir, exist_ok=True)
            plots.append(projection_plot(emb, labels["state"], os.path.join(plot_dir, f"projection_{v}.png"), f"{v}: PCA of item embeddings, coloured by state", seed=ec.data_seed))
    out = {"n_items": int(len(sel)), "rows": rows, "plots": plots}
    if ref is None:
        out["note"] = "no 'reference' embeddings: Similarity@K left out"
    return out


def train_tokenizers(inp: EvalInputs, cfg: "LGSIDConfig", skipped: dict[str, str]) -> dict[str, SIDCodes]:
    """Fit each compared tokenizer in-process on its embedding space; reasons for the missing ones go to ``skipped``."""
    try:
        from lgsid.tokenizer import FEATURE_COLUMNS, build_tokenizer, dedup_suffix
    except ImportError as e:  # pragma: no cover - the tokenizer package is part of the project
        for v in cfg.evaluate.variants:
            skipped[f"variant:{v}"] = f"lgsid.tokenizer not importable: {e}"
        return {}
    tcfg = cfg.tokenizer
    if cfg.evaluate.tokenizer_epochs >= 0:
        tcfg = dataclasses.replace(tcfg, epochs=cfg.evaluate.tokenizer_epochs)
    aligned = newest_aligned(inp.embeddings)
    features = inp.items[list(FEATURE_COLUMNS)].reset_index(drop=True)
    out: dict[str, SIDCodes] = {}
    for name in cfg.evaluate.variants:
        kind, space, _ = VARIANTS[name]
        version = REFERENCE if space == "reference" else aligned
        if version is None or version not in inp.embeddings:
            skipped[f"variant:{name}"] = (
                "no aligned item embeddings (model_version 'aligned-<N>'; run `lgsid gdpo` then `lgsid embed`)"
                if space == "aligned" else "no 'reference' item embeddings (run `lgsid embed`)"
            )
            continue
        t0 = time.perf_counter()
        emb = inp.embeddings[version]
        codes = np.asarray(build_tokenizer(tcfg, kind).fit(emb, features).encode(emb, features), dtype=np.int64)
        out[name] = SIDCodes(codes=codes, suffix=np.asarray(dedup_suffix(codes), dtype=np.int64), embedding_version=version, seconds=time.perf_counter() - t0)
        log.info("evaluate: tokenizer %s on %s fitted in %.1fs", name, version, out[name].seconds)
    return out


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
    """Per-tokenizer codebook health, reusing :mod:`lgsid.tokenizer.health`."""
    try:
        from lgsid.tokenizer.health import codebook_health, health_plots
    except ImportError as e:  # pragma: no cover
        return {"skipped": f"lgsid.tokenizer.health not importable: {e}"}
    if not sids:
        return {"skipped": "no tokenizer could be trained (see skipped variants)"}
    cats = inp.items["category_l1"].fillna("<none>").astype(str).to_numpy()
    out: dict[str, Any] = {}
    for name, s in sids.items():
        sizes = [max(int(k), int(s.codes[:, i].max()) + 1) for i, k in enumerate(cfg.tokenizer.codebook_sizes[: s.codes.shape[1]])]
        entry: dict[str, Any] = {"embedding_version": s.embedding_version, "fit_seconds": s.seconds, "metrics": codebook_health(s.codes, sizes, cats)}
        entry["top_l1_categories"] = top_l1_categories(s.codes, cats)
        if plot_dir:
            entry["plots"] = health_plots(s.codes, sizes, os.path.join(plot_dir, f"codebook_{name}"), cats)
        out[name] = entry
    return out


def _indexed(inp: EvalInputs, split: Split) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Train sequences per user (item indices, time order), plus test users' row, target, and seq index."""
    pos = pd.Series(np.arange(len(inp.items)), index=inp.items["item_id"].to_numpy())
    tr = split.train.assign(ix=pos.reindex(split.train["item_id"]).to_numpy())
    users = tr["user_id"].drop_duplicates().to_numpy()
    seq_of = {u: i for i, u in enumerate(users)}
    seqs = [g.to_numpy(dtype=np.int64) for _, g in tr.groupby("user_id", sort=False)["ix"]]
    te = split.test[split.test["user_id"].isin(seq_of)]
    test_seq = te["user_id"].map(seq_of).to_numpy(dtype=np.int64)
    test_target = pos.reindex(te["item_id"]).to_numpy(dtype=np.int64)
    return seqs, test_seq, test_target, te["user_id"].to_numpy()


def _train_examples(seqs: list[np.ndarray], cfg: "LGSIDConfig") -> tuple[np.ndarray, np.ndarray]:
    """Next-item training examples (hist (M, H), target (M,)), capped at ``max_train_examples`` with ``data_seed``."""
    from lgsid.evaluate.tiger import training_examples

    ec = cfg.evaluate
    hist, tgt = training_examples(seqs, ec.max_history)
    if ec.max_train_examples and len(tgt) > ec.max_train_examples:
        keep = np.sort(np.random.default_rng(ec.data_seed).choice(len(tgt), size=ec.max_train_examples, replace=False))
        hist, tgt = hist[keep], tgt[keep]
    return hist, tgt


def generative_section(inp: EvalInputs, sids: dict[str, SIDCodes], cfg: "LGSIDConfig", test_users: tuple, progress: bool = True) -> dict:
    """Table 2: TIGER-style generative retrieval per SID variant, mean ± std over seeds, plus reachability."""
    from tqdm.auto import tqdm

    from lgsid.evaluate import tiger

    if not sids:
        return {"skipped": "no SID variant available (see skipped variants)"}
    ec = cfg.evaluate
    seqs, test_seq, test_target, _ = test_users
    hist_tr, tgt_tr = _train_examples(seqs, cfg)
    if len(tgt_tr) == 0 or len(test_seq) == 0:
        return {"skipped": f"not enough interactions: {len(tgt_tr)} training examples, {len(test_seq)} test users"}
    hist_te = tiger.history_matrix([seqs[i] for i in test_seq], ec.max_history)  # (U, H)
    recent = hist_te[:, -ec.reach_recent:]
    lat, lon = inp.items["lat"].to_numpy(float), inp.items["lon"].to_numpy(float)
    variants: dict[str, Any] = {}
    jobs = [(n, s) for n in sids for s in ec.seeds]
    for name, seed in tqdm(jobs, desc="evaluate: generative (variant x seed)", disable=not progress):
        s = sids[name]
        vocab = tiger.SIDVocab.from_codes(s.codes, s.suffix)
        trie = tiger.PrefixTrie(vocab.sids)
        t0 = time.perf_counter()
        model = tiger.train_tiger(vocab, hist_tr, tgt_tr, seed=int(seed), epochs=ec.tiger_epochs, d_model=ec.tiger_d_model, nhead=ec.tiger_heads,
                                  layers=ec.tiger_layers, batch_size=ec.tiger_batch_size, lr=ec.tiger_lr)
        rec = tiger.recommend(model, vocab, trie, hist_te, ec.beam_size)  # (U, beam)
        runs = variants.setdefault(name, {"runs": []})["runs"]
        r: dict[str, float] = {"seed": int(seed), "seconds": time.perf_counter() - t0}
        for k in GEN_KS:
            r[f"Hit@{k}"], r[f"NDCG@{k}"] = hit_ndcg_from_ranked(rec, test_target, k)
        r[f"Reach@{ec.beam_size}"] = tiger.reach_share(rec, recent, lat, lon, ec.reach_radius_km)
        r["valid_share"] = float((rec >= 0).mean())
        runs.append(r)
    for name, v in variants.items():
        keys = [k for k in v["runs"][0] if k not in ("seed", "seconds")]
        v["summary"] = {k: _mean_std([r[k] for r in v["runs"]]) for k in keys}
        v["display"] = VARIANTS[name][2]
        v["embedding_version"] = sids[name].embedding_version
    target_reach = tiger.reach_share(test_target[:, None], recent, lat, lon, ec.reach_radius_km)
    return {
        "n_train_examples": int(len(tgt_tr)), "n_test_users": int(len(test_seq)), "reach_radius_km": ec.reach_radius_km,
        "reach_target_share": target_reach, "variants": variants,
    }


def discriminative_section(inp: EvalInputs, sids: dict[str, SIDCodes], cfg: "LGSIDConfig", test_users, progress: bool = True) -> dict:
    """Table 1: DIN-style CTR test AUC for ID only ("Origin") and ID + each SID variant, mean ± std over seeds."""
    from tqdm.auto import tqdm

    from lgsid.evaluate import din, tiger

    ec = cfg.evaluate
    seqs, test_seq, test_target, _ = test_users
    n_items = len(inp.items)
    if n_items < 2:
        return {"skipped": f"only {n_items} items"}
    hist_tr, pos_tr = _train_examples(seqs, cfg)
    if len(pos_tr) == 0 or len(test_seq) == 0:
        return {"skipped": f"not enough interactions: {len(pos_tr)} training examples, {len(test_seq)} test users"}
    rng = np.random.default_rng(ec.data_seed)  # negatives shared by every variant and seed
    H_tr, T_tr, Y_tr = din.ctr_examples(hist_tr, pos_tr, n_items, ec.din_negatives, rng)
    hist_te = tiger.history_matrix([seqs[i] for i in test_seq], ec.max_history)
    H_te, T_te, Y_te = din.ctr_examples(hist_te, test_target, n_items, ec.din_negatives, rng)
    arms: dict[str, np.ndarray | None] = {"origin": None}
    arms.update({name: s.codes for name, s in sids.items()})
    variants: dict[str, Any] = {}
    jobs = [(a, s) for a in arms for s in ec.seeds]
    for arm, seed in tqdm(jobs, desc="evaluate: discriminative (variant x seed)", disable=not progress):
        torch_seed = int(seed)
        import torch

        torch.manual_seed(torch_seed)
        model = din.DIN(n_items, arms[arm], dim=ec.din_dim, sid_mode=ec.din_sid_mode)
        t0 = time.perf_counter()
        din.train_din(model, H_tr, T_tr, Y_tr, seed=torch_seed, epochs=ec.din_epochs, batch_size=ec.din_batch_size, lr=ec.din_lr)
        p = din.predict(model, H_te, T_te)
        variants.setdefault(arm, {"runs": []})["runs"].append({"seed": torch_seed, "seconds": time.perf_counter() - t0, "AUC": auc(Y_te, p)})
    for arm, v in variants.items():
        v["summary"] = {"AUC": _mean_std([r["AUC"] for r in v["runs"]])}
        v["display"] = "Origin (ID only)" if arm == "origin" else f"+ {VARIANTS[arm][2]}"
    return {"n_train_rows": int(len(Y_tr)), "n_test_rows": int(len(Y_te)), "negatives_per_positive": ec.din_negatives, "sid_mode": ec.din_sid_mode, "variants": variants}


def evaluate_frames(inp: EvalInputs, cfg: "LGSIDConfig", plot_dir: str | None = None, sids: dict[str, SIDCodes] | None = None, progress: bool = True) -> dict:
    """The whole evaluation on in-memory inputs; returns the ``metrics.json`` dict.

    Args:
        inp: items (row order = item index), interactions, embeddings per model version (rows aligned with items).
        cfg: resolved config (``cfg.evaluate`` sizes, ``cfg.tokenizer`` for the compared tokenizers).
        plot_dir: where PNG plots go (None = no plots).
        sids: precomputed codes per variant (tests); None = train the tokenizers in-process.
        progress: show tqdm bars.

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
        sids = train_tokenizers(inp, cfg, skipped) if needs_sids else {}
    timings["tokenizers"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["codebook"] = off("codebook") or codebook_section(inp, sids, cfg, plot_dir)
    timings["codebook"] = time.perf_counter() - t0

    split = None
    test_users = None
    if inp.interactions is None or len(inp.interactions) == 0:
        reason = "no interactions (run `lgsid ingest`)"
    else:
        known = inp.interactions[inp.interactions["item_id"].isin(inp.items["item_id"])]
        split = leave_last_out(known)
        assert_no_leak(split)
        test = split.test
        if ec.max_users and test["user_id"].nunique() > ec.max_users:
            keep = np.random.default_rng(ec.data_seed).choice(test["user_id"].unique(), size=ec.max_users, replace=False)
            split = Split(train=split.train, test=test[test["user_id"].isin(keep)].reset_index(drop=True))
        test_users = _indexed(inp, split)
        reason = "" if len(test_users[1]) else "no user has >= 2 interactions with evaluated items"
    t0 = time.perf_counter()
    out["generative"] = off("generative") or ({"skipped": reason} if reason else generative_section(inp, sids, cfg, test_users, progress))
    timings["generative"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["discriminative"] = off("discriminative") or ({"skipped": reason} if reason else discriminative_section(inp, sids, cfg, test_users, progress))
    timings["discriminative"] = time.perf_counter() - t0

    for sec in ("geo", "codebook", "generative", "discriminative"):
        if "skipped" in out[sec]:
            skipped[sec] = out[sec]["skipped"]
    out["skipped"] = skipped
    out["meta"] = {
        "n_items": int(len(inp.items)),
        "n_interactions": 0 if inp.interactions is None else int(len(inp.interactions)),
        "n_train_interactions": 0 if split is None else int(len(split.train)),
        "n_test_users": 0 if test_users is None else int(len(test_users[1])),
        "embedding_versions": sorted(inp.embeddings),
        "seeds": list(ec.seeds),
        "seconds": time.perf_counter() - t_start,
        "section_seconds": timings,
    }
    return out


# --------------------------------------------------------------------------------------------
# I/O: read the Delta tables, write + log the report
# --------------------------------------------------------------------------------------------


def load_inputs(store, cfg: "LGSIDConfig", notes: list[str]) -> EvalInputs:
    """Read items, interactions and item_embeddings (whatever exists) into :class:`EvalInputs`.

    Items are restricted to those with an embedding in every model version the evaluation uses
    (reference and the newest aligned), sorted by item_id.
    """
    from lgsid.errors import TableNotFoundError

    if not store.exists("items"):
        raise TableNotFoundError("evaluate needs the 'items' table; run `lgsid ingest` first")
    items = store.to_pandas("items", ["item_id", "lat", "lon", "state", "county", "town", "category_l1", "category_l2", "brand"])
    items = items.drop_duplicates("item_id").sort_values("item_id").reset_index(drop=True)
    inter = store.to_pandas("interactions", ["user_id", "item_id", "ts"]) if store.exists("interactions") else None
    if inter is None:
        notes.append("interactions table missing: downstream sections skipped")
    embs: dict[str, np.ndarray] = {}
    if store.exists("item_embeddings"):
        e = store.to_pandas("item_embeddings", ["item_id", "model_version", "embedding"])
        versions = sorted(e["model_version"].unique())
        use = set(versions)
        common = set(items["item_id"])
        for v in (REFERENCE, newest_aligned(versions)):
            if v is not None and v in use:
                common &= set(e.loc[e["model_version"] == v, "item_id"])
        dropped = len(items) - len(common)
        if dropped:
            notes.append(f"{dropped} items without embeddings in every evaluated version were left out")
        items = items[items["item_id"].isin(common)].reset_index(drop=True)
        for v in versions:
            ev = e[e["model_version"] == v].drop_duplicates("item_id").set_index("item_id")
            if not items["item_id"].isin(ev.index).all():
                notes.append(f"embedding version {v!r} does not cover every evaluated item: left out of the geo table")
                continue
            embs[v] = np.stack(ev.loc[items["item_id"], "embedding"].to_numpy()).astype(np.float32)
    else:
        notes.append("item_embeddings table missing: geo and SID sections skipped")
    return EvalInputs(items=items, interactions=inter, embeddings=embs)


def downstream_for(metrics: dict, kind: str, embedding_version: str) -> tuple[str | None, dict[str, float]]:
    """The evaluated variant matching a tokenizer ``kind`` fitted on ``embedding_version``, and its gate metrics.

    Returns:
        (variant name or None, ``{"downstream.hit_at_10": .., "downstream.auc": ..}`` for what was measured).
    """
    gen = metrics.get("generative", {}).get("variants", {})
    dis = metrics.get("discriminative", {}).get("variants", {})
    for name, (k, _, _) in VARIANTS.items():
        v = gen.get(name) or {}
        if k == kind and v.get("embedding_version") == embedding_version:
            out = {"downstream.hit_at_10": v["summary"]["Hit@10"]["mean"]}
            if name in dis:
                out["downstream.auc"] = dis[name]["summary"]["AUC"]["mean"]
            return name, {k2: float(x) for k2, x in out.items() if x is not None and np.isfinite(x)}
    return None, {}


def tag_candidate(cfg: "LGSIDConfig", metrics: dict, run_id: str | None) -> str:
    """Set ``downstream.*`` tags on the registered SID model version holding the ``candidate`` alias,
    when one evaluated variant is the same tokenizer kind on the same embedding version (the
    promotion gate reads these tags). Returns a note saying what was done."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from lgsid.tracking import setup_mlflow

    setup_mlflow(cfg)
    client, name = MlflowClient(), cfg.mlflow.sid_model_name
    try:
        mv = client.get_model_version_by_alias(name, "candidate")
    except MlflowException:
        return f"no '{name}@candidate' registered: downstream gate tags not set"
    kind, ver = mv.tags.get("lgsid.tokenizer_kind"), mv.tags.get("lgsid.embedding_model_version")
    variant, vals = downstream_for(metrics, str(kind), str(ver))
    if not vals:
        return f"'{name}' v{mv.version} (candidate: {kind} on {ver}) is not among the evaluated variants: downstream gate tags not set"
    for k, v in vals.items():
        client.set_model_version_tag(name, mv.version, k, f"{v:.6g}")
    if run_id:
        client.set_model_version_tag(name, mv.version, "lgsid.evaluate_run_id", run_id)
    return f"tagged '{name}' v{mv.version} (candidate) with {', '.join(f'{k}={v:.4f}' for k, v in vals.items())} from variant {variant}"


def run(spark, cfg: "LGSIDConfig") -> "StepSummary":
    """Step ``evaluate``: compute every section with inputs, write report.md + metrics.json + plots to
    ``cfg.evaluate.out_dir`` and log them to MLflow."""
    import torch

    from lgsid.evaluate.report import headline_table, write_report
    from lgsid.steps import StepSummary
    from lgsid.storage import DeltaStore

    ec = cfg.evaluate
    if ec.torch_threads:
        torch.set_num_threads(ec.torch_threads)
    store = DeltaStore(spark, cfg.storage)
    notes: list[str] = []
    inp = load_inputs(store, cfg, notes)
    # out_dir may be a URI: write locally (a file: URI's own path, else a temp dir copied there at the end)
    from lgsid import fs

    local = fs.local_path(ec.out_dir)
    out_dir = local or tempfile.mkdtemp(prefix="lgsid-report-")
    os.makedirs(out_dir, exist_ok=True)
    plot_dir = os.path.join(out_dir, "plots")
    metrics = evaluate_frames(inp, cfg, plot_dir=plot_dir)
    metrics["meta"]["notes"] = notes
    paths = write_report(metrics, out_dir)
    if local is None:
        fs.copy_dir(out_dir, ec.out_dir)
        paths = {k: fs.join(ec.out_dir, os.path.relpath(p, out_dir)) for k, p in paths.items()}
    if ec.log_mlflow:
        from lgsid.evaluate.report import log_to_mlflow

        run_id = log_to_mlflow(cfg, metrics, out_dir)
        notes.append(tag_candidate(cfg, metrics, run_id))
        notes.append(f"MLflow run {run_id} in experiment '{cfg.mlflow.experiment}'; browse: mlflow ui --backend-store-uri {cfg.mlflow.tracking_uri}")
    if local is None:
        shutil.rmtree(out_dir, ignore_errors=True)
    notes.append(f"report: {paths['report']}  metrics: {paths['metrics']}")
    for sec, why in metrics["skipped"].items():
        notes.append(f"skipped {sec}: {why}")
    notes.append("")
    notes.extend(headline_table(metrics).splitlines())
    from lgsid.evaluate.report import flat_metrics

    return StepSummary(step="evaluate", metrics=dict(list(flat_metrics(metrics, headline_only=True).items())), notes=notes)
