"""Step ``tokenize``: fit the SID tokenizer (:mod:`lgsid.tokenizer.job`), register it as ``candidate``, write ``sid_items``; bootstrap promotion.

The tokenizer job fits and measures; the registry (:mod:`lgsid.registry`) owns logging, aliases and
the gate. Only this step joins them, so neither imports the other. A rerun with unchanged inputs
and config reuses the registered version (see :mod:`lgsid.tokenizer.job`). With
``tokenizer.bootstrap_champion`` and no version holding ``champion`` yet, the new (or reused)
version goes through the promotion gate at once; a refusal is a note, not an error.
"""

from __future__ import annotations

import os
import tempfile

from lgsid.config import LGSIDConfig
from lgsid.registry import CANDIDATE, CHAMPION, bootstrap_champion, log_sid_model, tokenizer_of, version_by_alias
from lgsid.spark.joins import driver_memory_bytes
from lgsid.steps.summary import StepSummary
from lgsid.tokenizer.align import alignment_note
from lgsid.tokenizer.job import (
    HEADLINE,
    assign_on_executors,
    check_fit_sample,
    check_training_input,
    choose_embedding_version,
    embedding_dim,
    fit_on_sample,
    fit_sample_condition,
    input_fingerprint,
    model_tags,
    read_sample,
    reusable_version,
    sid_items_df,
    tokenizer_metrics,
)


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``tokenize``: :func:`fit_and_register`, then the bootstrap promotion (module docstring)."""
    summary = fit_and_register(spark, cfg)
    version = str(summary.metrics.get("sid_model_version", "unregistered"))
    if cfg.tokenizer.log_model and cfg.tokenizer.bootstrap_champion and version != "unregistered":
        note = bootstrap_champion(cfg, version)
        if note:
            summary.notes.append(note)
    return summary


def fit_and_register(spark, cfg: LGSIDConfig) -> StepSummary:
    """Fit the configured tokenizer, log its health, register it as ``candidate`` and write ``sid_items``.

    A rerun with unchanged inputs and config reuses the registered version (module docstring).
    """
    import mlflow

    from lgsid.fingerprint import TAG
    from lgsid.serving.sid_model import save_artifacts, save_pyfunc, signature
    from lgsid.sid_store import broadcast_items, udf_input
    from lgsid.storage import DeltaStore
    from lgsid.tokenizer import health_plots
    from lgsid.tokenizer.health import codebook_health_df
    from lgsid.tracking import setup_mlflow, stage_run

    store = DeltaStore(spark, cfg.storage)
    version_in = choose_embedding_version(store, cfg.tokenizer.embedding_model_version)
    fp = input_fingerprint(cfg, store, version_in)
    if cfg.tokenizer.log_model:
        setup_mlflow(cfg)
        mv = reusable_version(cfg, store, fp)
        if mv is not None:
            return reuse(cfg, mv, fp)
    items, embeddings = store.read("items"), store.read("item_embeddings")
    n_items = check_training_input(items, embeddings, version_in)
    dim = embedding_dim(embeddings, version_in)
    n_fit = check_fit_sample(cfg, n_items, dim, driver_memory_bytes(spark))
    adapter = None
    if version_in.startswith("aligned-"):
        from lgsid.embed import resolve_aligned

        _, adapter = resolve_aligned(cfg, version_in)

    cond = fit_sample_condition(items, n_items, cfg.tokenizer.fit_sample, cfg.tokenizer.seed)
    if cond is None:  # the whole catalogue (at most fit_sample items): its attributes broadcast, the vectors never shuffled
        sample = udf_input(items, embeddings, version_in, broadcast_items=True)
    else:  # both sides filtered to the sample on the executors, then joined: no sort or broadcast of the catalogue
        sample = udf_input(items.where(cond), embeddings.where(cond), version_in)
    pdf, emb = read_sample(spark, sample, n_fit, dim)
    ref_version, reference = champion_reference(cfg)
    tok, sample_codes, l1_paths = fit_on_sample(cfg, pdf, emb, reference=reference, n_items=n_items)
    notes = [f"tokenizer {tok.kind} fitted on {len(pdf):,} of {n_items:,} items (tokenizer.fit_sample={cfg.tokenizer.fit_sample:,}) "
             f"of item_embeddings model_version={version_in} (dim {tok.dim}); every item assigned on the executors by the SID model's UDF"]
    if tok.alignment:
        notes.append(f"codes aligned to champion version {ref_version}: " + alignment_note(tok.alignment))
    tables = []
    sid_version = "unregistered"
    sections = cfg.to_dict()
    with tempfile.TemporaryDirectory() as tmp:
        level, origins = serving_location(store, cfg)
        art = save_artifacts(os.path.join(tmp, "sid_model"), tok, list(l1_paths), version_in, sections["encoder"], sections["prompts"], adapter,
                             location_level=level, town_origins=origins)
        udf_rows = udf_input(items, embeddings, version_in, broadcast_items=broadcast_items(spark, cfg, n_items))
        assigned = assign_on_executors(spark, udf_rows, save_pyfunc(os.path.join(tmp, "pyfunc"), art, int(tok.dim)),
                                       cfg.sid_store.batch_size, cfg.sid_store.udf_partitions)
        metrics = tokenizer_metrics(cfg, tok, emb, pdf, sample_codes)  # geo coverage: on the sample
        metrics.update(codebook_health_df(assigned, tok.codebook_sizes))  # codebook health: every item, Spark aggregates
        metrics["fit_items"] = float(len(pdf))
        metrics.update({f"align_{k}": v for k, v in tok.alignment.items()})
        with stage_run(cfg, "tokenize") as run:
            mlflow.log_metrics(metrics)
            mlflow.set_tags({"lgsid.embedding_model_version": version_in, "lgsid.tokenizer_kind": tok.kind, TAG: fp})
            for name, values in tok.history.items():
                for step, v in enumerate(values):
                    mlflow.log_metric(f"train_{name}", float(v), step=step)
            cats = pdf["category_l1"].fillna(pdf["category_l2"]).to_numpy()
            for p in health_plots(sample_codes, tok.codebook_sizes, os.path.join(tmp, "plots"), cats):  # plots: the sample
                mlflow.log_artifact(p, "health")
            if cfg.tokenizer.log_model:
                sid_version = log_sid_model(cfg, art, signature(int(tok.dim)), model_tags(tok, version_in, fp))
                notes.append(f"registered {cfg.mlflow.sid_model_name} version {sid_version} (alias candidate), run {run.info.run_id}")
    if cfg.tokenizer.log_model:
        tables.append(store.merge(sid_items_df(assigned, sid_version), "sid_items"))
    headline = {k: metrics[k] for k in HEADLINE if k in metrics}
    headline["sid_model_version"] = sid_version
    headline["fit_items"] = len(pdf)
    return StepSummary("tokenize", tables=tables, metrics=headline, notes=notes)


def serving_location(store, cfg: LGSIDConfig):
    """(location level, town origins) the catalogue's prompts were built with, for the model's cold start.

    Resolved by :func:`lgsid.prompts.catalogue_location`, the function the ``prompts`` step uses, on
    ``geo_prompts`` (the rows the embedded prompts came from: the same ``state, county, town, lat,
    lon`` as the ``items`` version that step read), or on ``items`` when no ``geo_prompts`` table
    exists (embeddings written by other means).
    """
    from lgsid.prompts import catalogue_location

    src = store.read("geo_prompts") if store.exists("geo_prompts") else store.read("items")
    return catalogue_location(src, cfg.prompts)


def champion_reference(cfg: LGSIDConfig):
    """(version, tokenizer) of the champion when a refit should keep its codes stable (``tokenizer.*_champion``), else (None, None)."""
    t = cfg.tokenizer
    if not t.log_model or not any((t.align_to_champion, t.freeze_level1_from_champion, t.warm_start_from_champion)):
        return None, None
    return tokenizer_of(cfg, CHAMPION)


def reuse(cfg: LGSIDConfig, mv, fp: str) -> StepSummary:
    """Summary of a rerun that reuses version ``mv``; moves ``candidate`` back to it if another version holds it."""
    from mlflow import MlflowClient

    client = MlflowClient()
    name, version = cfg.mlflow.sid_model_name, str(mv.version)
    notes = [f"inputs and config unchanged (fingerprint {fp}): reused {name} version {version} and its sid_items rows; "
             "nothing fitted, registered or written"]
    cand = version_by_alias(cfg, CANDIDATE)
    if cand is None or str(cand.version) != version:
        client.set_registered_model_alias(name, CANDIDATE, version)
        notes.append(f"alias {CANDIDATE} moved to version {version} (was {cand.version if cand else 'unset'})")
    metrics = dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}
    headline = {k: metrics[k] for k in HEADLINE if k in metrics}
    headline["sid_model_version"] = version
    return StepSummary("tokenize", metrics=headline, notes=notes)
