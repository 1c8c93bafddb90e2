"""The compared SID variants: the variant table, the in-memory inputs, the in-process refits of the
comparison tokenizers, and the registered candidate's own codes (read from ``sid_items``)."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from lgsid.config import LGSIDConfig

log = logging.getLogger(__name__)

REFERENCE = "reference"
VARIANTS: dict[str, tuple[str, str, str]] = {
    # name: (tokenizer kind, embedding space, display name)
    "rqvae": ("rqvae", "reference", "RQ-VAE"),
    "rqkmeans": ("rqkmeans", "reference", "RQ-KMeans"),
    "hgit-ref": ("hgit", "reference", "HGIT (reference emb.)"),
    "lgsid": ("hgit", "aligned", "LGSID (HGIT + aligned emb.)"),
    "rqkmeans-aligned": ("rqkmeans", "aligned", "RQ-KMeans (aligned emb.)"),  # with hgit-ref: the 2 x 2 ablation
}
CANDIDATE = "candidate"
"""Variant name of the registered candidate when it matches none of :data:`VARIANTS`."""


@dataclass
class SIDCodes:
    """Codes of one compared tokenizer over the evaluated items (rows in item order).

    Attributes:
        codes: (N, L) int64 level codes.
        suffix: (N,) int64 dedup suffix.
        embedding_version: item_embeddings model version the tokenizer read.
        seconds: fit + encode time (0 for registered codes).
        source: ``"refit"`` (trained in-process) or ``"registered <name> v<N>"`` (read from sid_items).
        display: row name in the report (default: the variant table's).
    """

    codes: np.ndarray
    suffix: np.ndarray
    embedding_version: str
    seconds: float = 0.0
    source: str = "refit"
    display: str | None = None


@dataclass
class EvalInputs:
    """Everything the evaluation reads, as in-memory frames/arrays (rows of ``items`` = item order)."""

    items: pd.DataFrame  # item_id, lat, lon, state, county, town, category_l1, category_l2, brand
    interactions: pd.DataFrame | None  # user_id, item_id, ts
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # model_version -> (N, D)


def display_name(name: str, s: SIDCodes | None = None) -> str:
    """Report row name of a variant."""
    if s is not None and s.display:
        return s.display
    return VARIANTS[name][2] if name in VARIANTS else name


def newest_aligned(versions) -> str | None:
    """The highest ``aligned-<N>`` model version, or None."""
    best = None
    for v in versions:
        m = re.fullmatch(r"aligned-(\d+)", str(v))
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), v)
    return best[1] if best else None


def variant_for(kind: str, embedding_version: str, versions) -> str | None:
    """The variant of :data:`VARIANTS` that is tokenizer ``kind`` on ``embedding_version`` (given the
    available embedding ``versions``), or None."""
    aligned = newest_aligned(versions)
    for name, (k, space, _) in VARIANTS.items():
        v = REFERENCE if space == "reference" else aligned
        if k == kind and v is not None and v == embedding_version:
            return name
    return None


def registered_codes(sid_items: pd.DataFrame, item_ids, version: str, embedding_version: str, label: str) -> SIDCodes:
    """A registered SID model version's codes from its ``sid_items`` rows, in ``item_ids`` order.

    Args:
        sid_items: rows of the ``sid_items`` table (item_id, sid_model_version, sid_l1..sid_l3, sid_suffix).
        item_ids: (N,) evaluated items, in item order.
        version: the model version N (``sid_model_version`` value).
        embedding_version: the item_embeddings version the model was fitted on.
        label: e.g. ``"registered lgsid-sid-model v3"``.

    Raises:
        ValueError: the version has no rows, or does not cover every evaluated item (names how many).
    """
    rows = sid_items[sid_items["sid_model_version"].astype(str) == str(version)].drop_duplicates("item_id").set_index("item_id")
    if rows.empty:
        raise ValueError(f"sid_items has no rows for sid_model_version {version!r}")
    ids = pd.Index(np.asarray(item_ids, dtype=object))
    missing = ids.difference(rows.index)
    if len(missing):
        raise ValueError(f"sid_items of sid_model_version {version!r} lacks {len(missing)} of {len(ids)} evaluated items (e.g. {missing[0]!r})")
    rows = rows.loc[ids]
    levels = [c for c in ("sid_l1", "sid_l2", "sid_l3") if c in rows and rows[c].notna().all()]
    codes = rows[levels].to_numpy(dtype=np.int64)
    return SIDCodes(codes=codes, suffix=rows["sid_suffix"].to_numpy(dtype=np.int64), embedding_version=embedding_version, source=label)


def _fit_tokenizer(job: tuple[str, str, str], sh: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit + encode one comparison tokenizer: (codes (N, L), dedup suffix (N,), seconds)."""
    from lgsid.tokenizer import build_tokenizer, dedup_suffix

    _, kind, version = job
    t0 = time.perf_counter()
    emb = sh["embeddings"][version]
    codes = np.asarray(build_tokenizer(sh["tcfg"], kind).fit(emb, sh["features"]).encode(emb, sh["features"]), dtype=np.int64)
    return codes, np.asarray(dedup_suffix(codes), dtype=np.int64), time.perf_counter() - t0


def train_tokenizers(inp: EvalInputs, cfg: "LGSIDConfig", skipped: dict[str, str], fixed: dict[str, SIDCodes] | None = None,
                     spark=None) -> dict[str, SIDCodes]:
    """Fit each compared tokenizer on its embedding space (in ``evaluate.workers`` processes, or on the executors of ``spark``:
    see :mod:`lgsid.evaluate.jobs`); reasons for the missing ones go to ``skipped``.

    Args:
        fixed: codes already known per variant (the registered candidate's); those variants are
            not refitted, and a name outside ``cfg.evaluate.variants`` is appended.
    """
    from lgsid.evaluate.jobs import run_jobs
    from lgsid.tokenizer import FEATURE_COLUMNS

    fixed = dict(fixed or {})
    tcfg = cfg.tokenizer
    if cfg.evaluate.tokenizer_epochs >= 0:
        tcfg = dataclasses.replace(tcfg, epochs=cfg.evaluate.tokenizer_epochs)
    aligned = newest_aligned(inp.embeddings)
    features = inp.items[list(FEATURE_COLUMNS)].reset_index(drop=True)
    out: dict[str, SIDCodes] = {}
    fits: list[tuple[str, str, str]] = []  # (variant, tokenizer kind, embedding version)
    for name in cfg.evaluate.variants:
        if name in fixed:
            out[name] = fixed.pop(name)
            continue
        kind, space, _ = VARIANTS[name]
        version = REFERENCE if space == "reference" else aligned
        if version is None or version not in inp.embeddings:
            skipped[f"variant:{name}"] = (
                "no aligned item embeddings (model_version 'aligned-<N>'; run `lgsid gdpo` then `lgsid embed`)"
                if space == "aligned" else "no 'reference' item embeddings (run `lgsid embed`)"
            )
            continue
        out[name] = None  # keeps cfg.evaluate.variants order
        fits.append((name, kind, version))
    shared = {"tcfg": tcfg, "features": features, "embeddings": {v: inp.embeddings[v] for _, _, v in fits}}
    results = run_jobs(_fit_tokenizer, fits, shared, workers=cfg.evaluate.workers, threads=cfg.evaluate.torch_threads, desc="evaluate: tokenizer refits",
                       spark=spark)
    for (name, _, version), (codes, suffix, seconds) in zip(fits, results):
        out[name] = SIDCodes(codes=codes, suffix=suffix, embedding_version=version, seconds=seconds)
        log.info("evaluate: tokenizer %s on %s fitted in %.1fs", name, version, seconds)
    out.update(fixed)
    return out
