"""The ``evaluate`` step's reads (:mod:`lgsid.steps.evaluate`): the Delta tables, the registered candidate's codes, and
the downstream metrics of the variant that scored them (the values the step tags the candidate with)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lgsid.evaluate.variants import CANDIDATE, REFERENCE, VARIANTS, EvalInputs, SIDCodes, newest_aligned, registered_codes, variant_for

if TYPE_CHECKING:  # pragma: no cover
    from lgsid.config import LGSIDConfig

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
        common = set(items["item_id"])
        for v in (REFERENCE, newest_aligned(versions)):
            if v is not None and v in versions:
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


def candidate_codes(store, cfg: "LGSIDConfig", inp: EvalInputs, mv: Any, notes: list[str]) -> tuple[dict[str, SIDCodes], str | None]:
    """The codes of registered SID model version ``mv`` (its ``sid_items`` rows), as the variant it is.

    The codes are those ``tokenize`` wrote for that version. The variant is the matching row of
    :data:`VARIANTS` (same tokenizer kind on the same embedding version), else :data:`CANDIDATE`.

    Returns:
        (``{variant: codes}`` or ``{}``, the variant name or None); what happened is appended to ``notes``.
    """
    name = cfg.mlflow.sid_model_name
    kind, emb = str(mv.tags.get("lgsid.tokenizer_kind")), str(mv.tags.get("lgsid.embedding_model_version"))
    label = f"registered {name} v{mv.version}"
    if not store.exists("sid_items"):
        notes.append(f"{label} ({kind} on {emb}): no sid_items table, so its codes are unknown; not scored, no gate tags set")
        return {}, None
    try:
        sid_items = store.to_pandas("sid_items", ["sid_model_version", "item_id", "sid_l1", "sid_l2", "sid_l3", "sid_suffix"])
        codes = registered_codes(sid_items, inp.items["item_id"], str(mv.version), emb, label)
    except ValueError as e:
        notes.append(f"{label}: {e}; not scored, no gate tags set")
        return {}, None
    variant = variant_for(kind, emb, inp.embeddings) or CANDIDATE
    base = VARIANTS[variant][2] if variant in VARIANTS else f"Candidate ({kind} on {emb})"
    codes.display = f"{base} [v{mv.version}]"
    notes.append(f"{label} ({kind} on {emb}) scored from its sid_items as variant '{variant}' (not refitted)")
    return {variant: codes}, variant


def downstream_metrics(metrics: dict, variant: str) -> dict[str, float]:
    """The gate's ``downstream.*`` values of one evaluated variant (plain beam decoding; DIN uniform-negative AUC).

    Returns:
        ``{"downstream.hit_at_10", "downstream.ndcg_at_10", "downstream.auc", "downstream.auc_exposure"}``
        for whatever was measured and finite.
    """
    out: dict[str, Any] = {}
    g = metrics.get("generative", {}).get("variants", {}).get(variant)
    if g:
        out["downstream.hit_at_10"] = g["summary"]["Hit@10"]["mean"]
        out["downstream.ndcg_at_10"] = g["summary"]["NDCG@10"]["mean"]
    d = metrics.get("discriminative", {}).get("variants", {}).get(variant)
    if d:
        out["downstream.auc"] = d["summary"]["AUC"]["mean"]
        if "AUC_exposure" in d["summary"]:
            out["downstream.auc_exposure"] = d["summary"]["AUC_exposure"]["mean"]
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}
