"""The SID model in the MLflow registry: logging, the ``candidate`` alias and the promotion gate.

Versions of ``mlflow.sid_model_name`` carry aliases, not the deprecated stages: ``lgsid tokenize``
gives each new version ``candidate``; ``lgsid promote`` (:func:`run`) moves ``champion`` to it
only if the metrics logged in the version's run pass ``promote.*``:

=============================  ==============================================================
gate (config key)              metric (in the version's MLflow run)
=============================  ==============================================================
``min_usage_l1``               ``usage_l1`` (share of level-1 codes used) — must be >=
``min_usage_deeper``           ``usage_l2``, ``usage_l3``, ... — each must be >=
``max_collision_rate``         ``collision_rate`` (items sharing all levels) — must be <=
``min_county_coverage_at_10``  ``geo_C_at_10`` (C@10 of the quantised vectors) — must be >=
``min_downstream_hit_at_10``   ``downstream.hit_at_10`` — checked when present
``min_downstream_auc``         ``downstream.auc`` — checked when present
=============================  ==============================================================

Downstream metrics are read from the version's run metrics or, failing that, from model-version
tags of the same name (evaluation may set either). A refusal raises :class:`PromotionRefused`
naming the metric, its value and the threshold.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import TYPE_CHECKING, Any

from lgsid.config import LGSIDConfig
from lgsid.errors import ModelError, PromotionRefused
from lgsid.steps import StepSummary

if TYPE_CHECKING:  # pragma: no cover
    from lgsid.tokenizer import SIDTokenizer

CANDIDATE, CHAMPION = "candidate", "champion"
MODEL_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mlflow", "sid_model.py")
DOWNSTREAM = {"downstream.hit_at_10": "min_downstream_hit_at_10", "downstream.auc": "min_downstream_auc"}


def sid_model_module():
    """Import ``mlflow/sid_model.py`` as module ``sid_model`` (the name it has inside the logged model)."""
    mod = sys.modules.get("sid_model")
    if mod is not None and getattr(mod, "__file__", None) == MODEL_FILE:
        return mod
    if not os.path.isfile(MODEL_FILE):
        raise ModelError(f"pyfunc model code not found at {MODEL_FILE} (the repository's mlflow/ directory)")
    spec = importlib.util.spec_from_file_location("sid_model", MODEL_FILE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sid_model"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def model_signature(dim: int):
    """Input: item attributes + ``embedding_f32`` (or, in mode ``cold_start``, raw item fields); output: SID columns.

    Column order matters to the Spark write-back, which passes the columns by position (see
    :func:`lgsid.sid_store.udf_arguments`): the required attributes, then ``item_id``,
    ``category_l1``, ``brand`` and ``embedding_f32``, then the raw fields only cold start reads.

    ``embedding_f32`` (BINARY, ``4 · dim`` little-endian float32 bytes, :mod:`lgsid.embedding_f32`)
    is the only embedding input: MLflow passes a binary column through untouched and the model checks
    each row's length. An ARRAY<FLOAT> column could only be declared ``Any``/``Array``, which MLflow
    enforces row by row in Python on every batch even when the column is absent (``spark_udf``
    materialises every declared column): 0.17 s per 100k rows, a third of the model's own time.

    Params: ``mode`` = ``"embedding"`` (default: codes from ``embedding_f32``) or ``"cold_start"``
    (raw item rows are embedded by the packaged encoder). Explicit, so a caller who forgot
    ``embedding_f32`` gets an error rather than silently re-encoded embeddings.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    req = [ColSpec("double", "lat"), ColSpec("double", "lon")] + [ColSpec("string", c) for c in ("state", "county", "town", "category_l2")]
    opt = [ColSpec("string", c, required=False) for c in ("item_id", "category_l1", "brand")]
    opt += [ColSpec("binary", "embedding_f32", required=False)]
    opt += [ColSpec("string", c, required=False) for c in ("name", "address")] + [ColSpec("double", "price", required=False)]
    out = [ColSpec("integer", c) for c in ("sid_l1", "sid_l2", "sid_l3")] + [ColSpec("string", "sid_codes"), ColSpec("string", "sid_path")]
    params = ParamSchema([ParamSpec("mode", "string", "embedding")])
    return ModelSignature(inputs=Schema(req + opt), outputs=Schema(out), params=params)


def log_sid_model(cfg: LGSIDConfig, tok: "SIDTokenizer", l1_paths: list[str], workdir: str,
                  embedding_model_version: str, adapter_dir: str | None = None) -> str:
    """Log ``tok`` as a pyfunc in the active run, register it and give the new version ``candidate``.

    Args:
        cfg: Resolved config (tokenizer, encoder and prompts sections are saved with the model).
        tok: Fitted tokenizer. l1_paths: readable path per level-1 code.
        workdir: Scratch directory for the artifacts.
        embedding_model_version: ``item_embeddings.model_version`` the tokenizer was fitted on.
        adapter_dir: LoRA adapter of that encoder (aligned embeddings), packaged for cold start.

    Returns:
        The registered version (string).
    """
    import json

    import mlflow
    from mlflow import MlflowClient

    from lgsid.tokenizer import save_tokenizer

    mod = sid_model_module()
    tok_dir = save_tokenizer(tok, os.path.join(workdir, "tokenizer"))
    info_path = os.path.join(workdir, "sid_model_info.json")
    with open(info_path, "w") as f:
        json.dump({
            "l1_paths": l1_paths, "kind": tok.kind, "dim": tok.dim,
            "embedding_model_version": embedding_model_version,
            "encoder": cfg.to_dict()["encoder"], "prompts": cfg.to_dict()["prompts"],
        }, f, indent=1)
    artifacts = {"tokenizer": tok_dir, "sid_model_info": info_path}
    if adapter_dir:
        artifacts["adapter"] = adapter_dir
    import numpy as np
    import pandas as pd
    import sklearn

    reqs = [f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}", f"pandas=={pd.__version__}",
            f"scikit-learn=={sklearn.__version__}", "lgsid"]
    info = mlflow.pyfunc.log_model(
        name="sid_model", python_model=mod.SIDModel(), artifacts=artifacts, code_paths=[MODEL_FILE],
        signature=model_signature(int(tok.dim)), registered_model_name=cfg.mlflow.sid_model_name,
        pip_requirements=reqs,
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    name = cfg.mlflow.sid_model_name
    client.set_registered_model_alias(name, CANDIDATE, version)
    for k, v in {"lgsid.tokenizer_kind": tok.kind, "lgsid.embedding_model_version": embedding_model_version,
                 "lgsid.embedding_dim": str(tok.dim), "lgsid.codebook_sizes": json.dumps(tok.codebook_sizes)}.items():
        client.set_model_version_tag(name, version, k, v)
    return version


def version_by_alias(cfg: LGSIDConfig, alias: str) -> Any | None:
    """The ModelVersion holding ``alias`` of the SID model, or None."""
    import mlflow
    from mlflow import MlflowClient

    try:
        return MlflowClient().get_model_version_by_alias(cfg.mlflow.sid_model_name, alias)
    except mlflow.exceptions.MlflowException:
        return None


def gate(cfg: LGSIDConfig, metrics: dict[str, float], tags: dict[str, str] | None = None) -> list[str]:
    """Check ``metrics`` against ``promote.*``; return notes on what was checked.

    Raises:
        PromotionRefused: the first failing metric (name, value, threshold and config key).
    """
    p = cfg.promote
    notes = []

    def need(metric: str) -> float:
        if metric not in metrics:
            raise PromotionRefused(f"metric '{metric}' is missing from the version's run; cannot check the promotion gate")
        return float(metrics[metric])

    checks = [("usage_l1", ">=", p.min_usage_l1, "promote.min_usage_l1"),
              ("collision_rate", "<=", p.max_collision_rate, "promote.max_collision_rate"),
              ("geo_C_at_10", ">=", p.min_county_coverage_at_10, "promote.min_county_coverage_at_10")]
    checks += [(k, ">=", p.min_usage_deeper, "promote.min_usage_deeper") for k in sorted(metrics) if k.startswith("usage_l") and k != "usage_l1"]
    for metric, op, thr, key in checks:
        v = need(metric)
        ok = v >= thr if op == ">=" else v <= thr
        if not ok:
            raise PromotionRefused(f"metric '{metric}' = {v:.4g} fails the gate {key} ({op} {thr})")
        notes.append(f"{metric} = {v:.4g} {op} {thr}: ok")
    for metric, key in DOWNSTREAM.items():
        v = metrics.get(metric, (tags or {}).get(metric))
        thr = getattr(p, key)
        if v is None:
            notes.append(f"{metric}: not evaluated yet, skipped")
            continue
        if float(v) < thr:
            raise PromotionRefused(f"metric '{metric}' = {float(v):.4g} fails the gate promote.{key} (>= {thr})")
        notes.append(f"{metric} = {float(v):.4g} >= {thr}: ok")
    return notes


def promote(cfg: LGSIDConfig, version: str | None = None) -> tuple[str, list[str]]:
    """Move ``champion`` to ``version`` (default: ``promote.version``, else the ``candidate``) if it passes.

    Returns:
        (promoted version, gate notes).

    Raises:
        ModelError: no such version / no candidate. PromotionRefused: a metric fails the gate.
    """
    from mlflow import MlflowClient

    from lgsid.tracking import setup_mlflow

    setup_mlflow(cfg)
    client = MlflowClient()
    name = cfg.mlflow.sid_model_name
    version = version or cfg.promote.version
    if not version:
        mv = version_by_alias(cfg, CANDIDATE)
        if mv is None:
            raise ModelError(f"no version of '{name}' holds the alias '{CANDIDATE}'; run `lgsid tokenize` first")
        version = str(mv.version)
    try:
        mv = client.get_model_version(name, str(version))
    except Exception:
        raise ModelError(f"registered model '{name}' has no version {version!r}") from None
    metrics = dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}
    notes = gate(cfg, metrics, dict(mv.tags or {}))
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return str(version), notes


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``promote``: move ``champion`` if the gate passes (raises PromotionRefused otherwise)."""
    from lgsid.tracking import setup_mlflow

    setup_mlflow(cfg)
    prev = version_by_alias(cfg, CHAMPION)
    version, notes = promote(cfg)
    return StepSummary(
        "promote",
        metrics={"champion_version": version, "previous_champion": str(prev.version) if prev else "none"},
        notes=notes,
    )
