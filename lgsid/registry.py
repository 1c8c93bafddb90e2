"""The SID model in the MLflow registry: logging, the ``candidate`` alias and the promotion gate.

Versions of ``mlflow.sid_model_name`` carry aliases, not the deprecated stages: ``lgsid tokenize``
gives each new version ``candidate``; ``lgsid promote`` (:mod:`lgsid.steps.promote`) moves ``champion`` to it
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
``max_sid_churn``              ``sid_churn_full`` (share of the items whose codes changed against
                               the champion, :mod:`lgsid.sid_churn`) — must be <=, unless
                               ``promote.force``; measured by ``lgsid promote`` when a champion exists
=============================  ==============================================================

Downstream metrics are read from the version's run metrics or, failing that, from model-version
tags of the same name (evaluation may set either). A refusal raises :class:`PromotionRefused`
naming the metric, its value and the threshold.
"""

from __future__ import annotations

from typing import Any

from lgsid.config import LGSIDConfig
from lgsid.errors import ModelError, PromotionRefused

CANDIDATE, CHAMPION = "candidate", "champion"
DOWNSTREAM = {"downstream.hit_at_10": "min_downstream_hit_at_10", "downstream.auc": "min_downstream_auc"}


PAUSE_ENV = "LGSID_PAUSE_AT_REGISTER"
"""Test hook: when set to a file path, :func:`log_sid_model` creates that file at the point named by
:data:`PAUSE_POINT_ENV` (``register``, the default: artifacts uploaded, no version yet; ``alias``: the
version is READY, ``candidate`` not yet moved) and waits (up to 10 min) until the file is removed, so a
test can stop the tracking server there and let the step run on against it."""
PAUSE_POINT_ENV = "LGSID_PAUSE_REGISTER_POINT"


def _pause_at(point: str) -> None:
    import os
    import time

    flag = os.environ.get(PAUSE_ENV)
    if not flag or os.environ.get(PAUSE_POINT_ENV, "register") != point:
        return
    with open(flag, "w") as f:
        f.write(f"{os.getpid()} {point}\n")
    deadline = time.time() + 600
    while os.path.exists(flag) and time.time() < deadline:
        time.sleep(0.2)


def log_sid_model(cfg: LGSIDConfig, artifact_dir: str, signature, tags: dict[str, str]) -> str:
    """Log the SID pyfunc from ``artifact_dir`` in the active run, register it and give the new version ``candidate``.

    The model is :class:`lgsid.serving.sid_model.SIDModel` with the ``lgsid`` package as
    ``code_paths`` and :func:`lgsid.serving.requirements` as its pinned pip requirements, so it
    loads where this repository is absent.

    Order, so that a tracking server going away at any point leaves nothing half-registered: the
    artifacts are uploaded first (the logged model is READY only once they all are); then the
    version is created with its tags in one call; ``candidate`` moves only once the version is
    READY. A failure before that leaves at most an untagged logged model or a complete version
    without an alias, and the previous ``candidate`` where it was.

    Args:
        cfg: Resolved config (``mlflow.sid_model_name``).
        artifact_dir: Written by :func:`lgsid.serving.sid_model.save_artifacts` (tokenizer, info, adapter).
        signature: The model's ``ModelSignature`` (:func:`lgsid.serving.sid_model.signature`).
        tags: Model-version tags to set (``lgsid.embedding_model_version`` and ``lgsid.embedding_dim``
            are what ``write-sids`` reads; ``lgsid.input_fingerprint`` makes a rerun reuse the version).

    Returns:
        The registered version (string).

    Raises:
        ModelError: the tracking server failed during logging or registration (names the point reached).
    """
    import mlflow
    from mlflow import MlflowClient

    from lgsid.serving import PACKAGE_DIR, requirements
    from lgsid.serving.sid_model import SIDModel, artifacts_of

    name = cfg.mlflow.sid_model_name
    reached = "uploading the model artifacts"
    try:
        info = mlflow.pyfunc.log_model(
            name="sid_model", python_model=SIDModel(), artifacts=artifacts_of(artifact_dir), code_paths=[PACKAGE_DIR],
            signature=signature, pip_requirements=requirements(),
        )
        reached = "creating the model version (artifacts uploaded)"
        _pause_at("register")
        client = MlflowClient()
        logged = client.get_logged_model(info.model_id)
        if logged.status != "READY":
            raise ModelError(f"logged model {info.model_id} is {logged.status}, not READY; its artifacts are incomplete, not registering it")
        mv = mlflow.register_model(info.model_uri, name, tags={k: str(v) for k, v in tags.items()})
        version = str(mv.version)
        reached = f"moving alias '{CANDIDATE}' to version {version}"
        _pause_at("alias")
        if client.get_model_version(name, version).status != "READY":
            raise ModelError(f"{name} version {version} is not READY; alias '{CANDIDATE}' not moved")
        client.set_registered_model_alias(name, CANDIDATE, version)
    except mlflow.exceptions.MlflowException as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"MLflow ({mlflow.get_tracking_uri()}) failed while {reached} for '{name}': {first}; "
            f"alias '{CANDIDATE}' was not moved; rerun `lgsid tokenize` once the tracking server is back"
        ) from None
    return version


def version_by_alias(cfg: LGSIDConfig, alias: str) -> Any | None:
    """The ModelVersion holding ``alias`` of the SID model, or None."""
    import mlflow
    from mlflow import MlflowClient

    try:
        return MlflowClient().get_model_version_by_alias(cfg.mlflow.sid_model_name, alias)
    except mlflow.exceptions.MlflowException:
        return None


def tokenizer_of(cfg: LGSIDConfig, alias: str):
    """(version, fitted tokenizer) of the SID model version holding ``alias``, or (None, None) when none does."""
    import mlflow.pyfunc

    mv = version_by_alias(cfg, alias)
    if mv is None:
        return None, None
    model = mlflow.pyfunc.load_model(f"models:/{cfg.mlflow.sid_model_name}/{mv.version}").unwrap_python_model()
    return str(mv.version), model.tokenizer


def gate(cfg: LGSIDConfig, metrics: dict[str, float], tags: dict[str, str] | None = None,
         churn: dict[str, float] | None = None) -> list[str]:
    """Check ``metrics`` against ``promote.*``; return notes on what was checked.

    Args:
        cfg: resolved config (``promote.*``).
        metrics: the version's run metrics. tags: its model-version tags (downstream metrics may be there).
        churn: SID churn against the champion (:mod:`lgsid.sid_churn`), or None when there is
            none to compare with: ``sid_churn_full`` must be <= ``promote.max_sid_churn`` unless
            ``promote.force``.

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
    notes.append(churn_gate(p.max_sid_churn, p.force, churn))
    return notes


def churn_gate(max_churn: float, force: bool, churn: dict[str, float] | None) -> str:
    """The ``promote.max_sid_churn`` check: a note, or :class:`PromotionRefused` when the full-SID churn is over it and not forced."""
    from lgsid.sid_churn import churn_line

    if churn is None:
        return "sid_churn: no champion sid_items to compare with, skipped"
    v = float(churn["sid_churn_full"])
    if v <= max_churn:
        return f"sid_churn_full = {v:.4g} <= {max_churn}: ok ({churn_line(churn)})"
    if force:
        return f"sid_churn_full = {v:.4g} > {max_churn}: promoted anyway (promote.force) ({churn_line(churn)})"
    raise PromotionRefused(
        f"metric 'sid_churn_full' = {v:.4g} fails the gate promote.max_sid_churn (<= {max_churn}): against the champion, "
        f"{churn_line(churn)}; `lgsid promote --force` (promote.force=true) promotes it anyway")


def target_version(cfg: LGSIDConfig, version: str | None = None) -> str:
    """The version ``promote`` acts on: ``version``, else ``promote.version``, else the one holding ``candidate``.

    Raises:
        ModelError: no version given and none holds ``candidate``.
    """
    version = version or cfg.promote.version
    if not version:
        mv = version_by_alias(cfg, CANDIDATE)
        if mv is None:
            raise ModelError(f"no version of '{cfg.mlflow.sid_model_name}' holds the alias '{CANDIDATE}'; run `lgsid tokenize` first")
        version = str(mv.version)
    return str(version)


def promote(cfg: LGSIDConfig, version: str | None = None, churn: dict[str, float] | None = None) -> tuple[str, list[str]]:
    """Move ``champion`` to ``version`` (default: :func:`target_version`) if it passes.

    Args:
        churn: SID churn of ``version`` against the champion (see :func:`gate`); None skips that check.

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
    version = target_version(cfg, version)
    try:
        mv = client.get_model_version(name, str(version))
    except Exception:
        raise ModelError(f"registered model '{name}' has no version {version!r}") from None
    metrics = dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}
    notes = gate(cfg, metrics, dict(mv.tags or {}), churn)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return str(version), notes


def bootstrap_champion(cfg: LGSIDConfig, version: str) -> str | None:
    """When no version holds ``champion``, run the gate on ``version`` and promote it if it passes.

    Returns:
        A note on what happened, or None when a champion already exists (nothing checked).
    """
    if version_by_alias(cfg, CHAMPION) is not None:
        return None
    try:
        promote(cfg, version)
    except PromotionRefused as e:
        return f"no champion yet and version {version} was refused: {e}"
    return f"no champion existed: version {version} passed the gate and is now champion"
