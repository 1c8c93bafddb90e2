"""The SID model as an MLflow pyfunc: tokenizer + level-1 paths (+ the encoder for cold start).

Logged by :func:`lgsid.registry.log_sid_model` from an artifact directory written by
:func:`save_artifacts`, with the ``lgsid`` package as ``code_paths`` and
:func:`lgsid.serving.requirements` as its pinned requirements, so it loads without this repository.

Two entry modes, chosen by the ``mode`` param (``predict(df, params={"mode": ...})``):

* ``"embedding"`` (default, the fast path) — rows with ``embedding_f32`` (BINARY: the embedding as
  little-endian float32 bytes, ``4 · dim`` per row; build it with
  :func:`lgsid.embedding_f32.encode_f32`) plus the item attributes (lat, lon, state, county, town,
  category_l1, category_l2, brand). The batch's bytes are joined and read with one
  ``np.frombuffer`` into an (N, D) matrix, then assigned with one matmul per level. This is what
  the write-back Spark UDF feeds: a BINARY column crosses Spark's JVM -> Arrow boundary as one
  buffer, an ARRAY<FLOAT> column element by element.
* ``"cold_start"`` — raw item rows (name, brand, category_l1/_l2, price, town, county, state, lat,
  lon): the prompt is built by :func:`lgsid.prompts.prompt_texts`, the function that built the
  catalogue's ``geo_prompts``, at the location level the catalogue was built at (with its town
  origins at district level, both recorded by :func:`save_artifacts`), and embedded with the encoder the tokenizer
  was trained on (the aligned LoRA adapter is packaged with the model when the embeddings were
  aligned ones), then assigned as above.

The mode is explicit so that a caller who forgot ``embedding_f32`` gets an error instead of
embeddings silently recomputed from the raw fields.

Output columns: ``sid_l1, sid_l2, sid_l3`` (INT; null past the model's levels), ``sid_codes``
(``"l1-l2-l3"``; the dedup suffix is assigned by the write-back job, which knows existing items)
and ``sid_path`` (the area and category that cover the level-1 code's items, with their shares:
:mod:`lgsid.tokenizer.paths`).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from lgsid.embedding_f32 import COLUMN as EMBEDDING_F32
from lgsid.embedding_f32 import decode_f32
from lgsid.errors import ValidationError
from lgsid.serving import config_from_dict

OUTPUT_COLUMNS = ("sid_l1", "sid_l2", "sid_l3", "sid_codes", "sid_path")
SPARK_RESULT_TYPE = "sid_l1 INT, sid_l2 INT, sid_l3 INT, sid_codes STRING, sid_path STRING"
MODES = ("embedding", "cold_start")
RAW_COLUMNS = ("name", "brand", "category_l1", "category_l2", "price", "town", "county", "state", "lat", "lon")


class RequestError(ValidationError, MlflowException):
    """A bad request to the SID model: a :class:`~lgsid.errors.ValidationError` in process, and an
    ``MlflowException`` with ``INVALID_PARAMETER_VALUE`` so that ``mlflow models serve`` answers HTTP 400
    with this message (any other exception becomes its generic "unexpected error" message)."""

    def __init__(self, message: str):
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)

    def __str__(self) -> str:
        return self.message


REQUIRED_COLUMNS = ("lat", "lon", "state", "county", "town", "category_l2")
"""Columns every request needs (the signature's required inputs); ``cold_start`` also needs :data:`RAW_COLUMNS`."""
COORDINATE_RANGES = {"lat": (-90.0, 90.0), "lon": (-180.0, 180.0)}
ORIGIN_COLUMNS = ("state", "county", "town", "lat", "lon")
"""Columns of the ``town_origins`` table a district-level model stores (:func:`lgsid.prompts.town_origins`)."""
TOKENIZER, INFO, ADAPTER = "tokenizer", "sid_model_info.json", "adapter"
"""The artifact directory's entries: the saved tokenizer, the JSON info file, the optional LoRA adapter."""


def signature(dim: int):
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

    Args:
        dim: The embedding dimension D the tokenizer was fitted on (checked per row at predict).
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    req = [ColSpec("double", "lat"), ColSpec("double", "lon")] + [ColSpec("string", c) for c in ("state", "county", "town", "category_l2")]
    opt = [ColSpec("string", c, required=False) for c in ("item_id", "category_l1", "brand")]
    opt += [ColSpec("binary", EMBEDDING_F32, required=False)]
    opt += [ColSpec("string", c, required=False) for c in ("name", "address")] + [ColSpec("double", "price", required=False)]
    out = [ColSpec("integer", c) for c in ("sid_l1", "sid_l2", "sid_l3")] + [ColSpec("string", "sid_codes"), ColSpec("string", "sid_path")]
    params = ParamSchema([ParamSpec("mode", "string", "embedding")])
    return ModelSignature(inputs=Schema(req + opt), outputs=Schema(out), params=params)


def save_artifacts(out_dir: str, tok, l1_paths: list[str], embedding_model_version: str,
                   encoder: dict[str, Any], prompts: dict[str, Any], adapter_dir: str | None = None,
                   location_level: str | None = None, town_origins: pd.DataFrame | None = None) -> str:
    """Write the SID model's artifact directory (what :class:`SIDModel` loads) and return it.

    Layout: ``tokenizer/`` (:func:`lgsid.tokenizer.save_tokenizer`), ``sid_model_info.json``
    (level-1 paths, tokenizer kind and dimension, the embedding version, the ``encoder`` and
    ``prompts`` config sections, the catalogue's resolved ``location_level`` and, at district level,
    its ``town_origins``) and, for aligned embeddings, a copy of the LoRA ``adapter/``.

    Args:
        out_dir: Directory to create (must not hold an earlier model's files).
        tok: Fitted tokenizer. l1_paths: Readable path per level-1 code (K_1 strings).
        embedding_model_version: ``item_embeddings.model_version`` the tokenizer was fitted on.
        encoder: The ``encoder`` config section (dict). prompts: The ``prompts`` config section (dict).
        adapter_dir: LoRA adapter of that encoder (aligned embeddings), packaged for cold start.
        location_level: The level the catalogue's prompts were built at (``"town"`` or ``"district"``,
            :func:`lgsid.prompts.catalogue_location`); ``None`` writes no level, and cold start then
            uses the town template (the behaviour of models saved before the level was recorded).
        town_origins: At district level, ``state, county, town, lat, lon`` per town
            (:func:`lgsid.prompts.town_origins`); required there.

    Raises:
        ValidationError: an unknown ``location_level``, or ``"district"`` without ``town_origins``.
    """
    from lgsid.tokenizer import save_tokenizer

    if location_level not in (None, "town", "district"):
        raise ValidationError(f"SID model: location_level must be 'town' or 'district' (resolved), got {location_level!r}")
    if location_level == "district" and town_origins is None:
        raise ValidationError("SID model: location_level 'district' needs town_origins (lgsid.prompts.town_origins) for cold start")
    os.makedirs(out_dir, exist_ok=True)
    save_tokenizer(tok, os.path.join(out_dir, TOKENIZER))
    info = {"l1_paths": list(l1_paths), "kind": tok.kind, "dim": tok.dim, "embedding_model_version": embedding_model_version,
            "encoder": encoder, "prompts": prompts}
    if location_level is not None:
        info["location_level"] = location_level
        if location_level == "district":
            o = town_origins[list(ORIGIN_COLUMNS)]
            info["town_origins"] = {c: [None if pd.isna(v) else (float(v) if c in ("lat", "lon") else str(v)) for v in o[c]]
                                    for c in ORIGIN_COLUMNS}
    with open(os.path.join(out_dir, INFO), "w") as f:
        json.dump(info, f, indent=1)
    if adapter_dir:
        shutil.copytree(adapter_dir, os.path.join(out_dir, ADAPTER), dirs_exist_ok=True)
    return out_dir


def artifacts_of(artifact_dir: str) -> dict[str, str]:
    """The ``artifacts`` mapping of ``mlflow.pyfunc.log_model`` for a directory written by :func:`save_artifacts`.

    Raises:
        ValidationError: the tokenizer or the info file is missing.
    """
    arts = {"tokenizer": os.path.join(artifact_dir, TOKENIZER), "sid_model_info": os.path.join(artifact_dir, INFO)}
    missing = [p for p in arts.values() if not os.path.exists(p)]
    if missing:
        raise ValidationError(f"SID model artifact directory {artifact_dir} lacks {missing}; write it with lgsid.serving.sid_model.save_artifacts")
    if os.path.isdir(os.path.join(artifact_dir, ADAPTER)):
        arts["adapter"] = os.path.join(artifact_dir, ADAPTER)
    return arts


class SIDModel(mlflow.pyfunc.PythonModel):
    """Tokenizer + level-1 paths (+ optional aligned encoder) behind ``predict``."""

    _encoder = _prompts_cfg = _prompt_location = None  # loaded on first cold-start request

    def load_context(self, context):
        from lgsid.tokenizer import load_tokenizer

        self.tokenizer = load_tokenizer(context.artifacts["tokenizer"])
        with open(context.artifacts["sid_model_info"]) as f:
            self.info = json.load(f)
        self.l1_paths = np.asarray(self.info["l1_paths"], dtype=object)
        self.adapter_dir = context.artifacts.get("adapter")
        self._encoder = self._prompts_cfg = self._prompt_location = None

    # ------------------------------------------------------------------ cold start
    def _encoder_and_prompts(self, load_encoder: bool = True):
        """(encoder, PromptsConfig) from the info; the encoder is loaded on first need (``None`` until then)."""
        from lgsid.config import EncoderConfig, PromptsConfig

        if self._prompts_cfg is None:
            self._prompts_cfg = config_from_dict(PromptsConfig, self.info["prompts"])
        if load_encoder and self._encoder is None:
            from lgsid.encoder import load_encoder as load

            self._encoder = load(config_from_dict(EncoderConfig, self.info["encoder"]), adapter_dir=self.adapter_dir)
        return self._encoder, self._prompts_cfg

    def prompt_location(self) -> tuple[str, pd.DataFrame | None]:
        """(location level, town origins) of the catalogue the model was fitted on, for cold-start prompts.

        Models saved by the ``tokenize`` step record the level the ``prompts`` step resolved
        (``location_level``) and, at district level, the town origins it used (``town_origins``).
        A model saved before that (its info has no ``location_level``) uses the town template, as it
        always did, whatever its ``prompts.location_level`` says: it carries no town origins, so it
        could not name a district the way its catalogue's prompts did.
        """
        level = self.info.get("location_level") or "town"
        o = self.info.get("town_origins")
        return level, (pd.DataFrame({c: o[c] for c in ORIGIN_COLUMNS}) if o is not None else None)

    def cold_start_prompts(self, df: pd.DataFrame) -> list[str]:
        """The prompts of raw item rows: :func:`lgsid.prompts.prompt_texts` at the catalogue's level (N strings)."""
        from lgsid.prompts import prompt_texts

        if self._prompt_location is None:
            self._prompt_location = self.prompt_location()
        _, pcfg = self._encoder_and_prompts(load_encoder=False)
        level, origins = self._prompt_location
        return prompt_texts(df, pcfg, level, origins)["prompt"].tolist()

    def embed_raw(self, df: pd.DataFrame) -> np.ndarray:
        """Cold start: raw item rows -> prompts (:meth:`cold_start_prompts`) -> (N, D) embeddings (lgsid.encoder).

        The prompt of an existing item's raw row is its ``geo_prompts.prompt``, so its cold-start
        codes are the codes ``write-sids`` wrote from its stored embedding (same encoder, same text).
        """
        check_request(df, "cold_start")
        prompts = self.cold_start_prompts(df)
        enc, _ = self._encoder_and_prompts()
        return np.asarray(enc.encode(prompts), dtype=np.float32)

    # ------------------------------------------------------------------ predict
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        # The pd.DataFrame hints tell MLflow that the signature is explicit (no type-hint inference, no warning).
        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        mode = (params or {}).get("mode", "embedding")
        if mode in MODES:
            check_request(df, mode)
        if mode == "cold_start":
            emb = self.embed_raw(df)
        elif mode == "embedding":
            if EMBEDDING_F32 not in df.columns:
                raise RequestError(
                    f"SID model: column '{EMBEDDING_F32}' is missing (mode 'embedding'): pass each embedding as float32 "
                    "bytes (lgsid.embedding_f32.encode_f32), or raw item rows with params={'mode': 'cold_start'}")
            ids = df["item_id"] if "item_id" in df.columns else None
            emb = decode_f32(df[EMBEDDING_F32], int(self.tokenizer.dim), ids)  # (N, D), one frombuffer
        else:
            raise RequestError(f"SID model: unknown param mode={mode!r}; expected one of {list(MODES)}")
        codes = self.tokenizer.encode(emb, df)
        return sids_frame(codes, self.l1_paths)


def check_request(df: pd.DataFrame, mode: str) -> None:
    """Refuse a request that would give a silently wrong row, before any encoding.

    Every mode needs :data:`REQUIRED_COLUMNS`; ``cold_start`` also needs :data:`RAW_COLUMNS`. ``lat``
    and ``lon`` must be numbers inside ±90 and ±180 on every row (a null, NaN or non-number is
    refused too). One bad row fails the whole request, so no row of a response is wrong.

    Args:
        df: The request's rows (N rows). mode: ``"embedding"`` or ``"cold_start"``.

    Raises:
        RequestError: (a ValidationError) one line naming the mode, the field and the first offending
            rows (0-based row numbers, with ``item_id`` when the request has one).
    """
    need = REQUIRED_COLUMNS + tuple(c for c in RAW_COLUMNS if c not in REQUIRED_COLUMNS) if mode == "cold_start" else REQUIRED_COLUMNS
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise RequestError(f"SID model (mode {mode!r}): request is missing required column(s) {missing}; "
                           f"mode {mode!r} needs {list(need)}")
    for c, (lo, hi) in COORDINATE_RANGES.items():
        raw = df[c]
        val = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)  # (N,), NaN where null or not a number
        bad = ~((val >= lo) & (val <= hi))
        if bad.any():
            rows = np.flatnonzero(bad)[:5]
            what = "missing or not a number" if np.isnan(val[rows[0]]) else f"out of range [{lo:g}, {hi:g}]"
            ids = f" (item_id {list(df['item_id'].iloc[rows])})" if "item_id" in df.columns else ""
            raise RequestError(f"SID model (mode {mode!r}): field '{c}' {what} in row(s) {rows.tolist()}{ids}: "
                               f"{[raw.iloc[i] for i in rows]} ({int(bad.sum())} bad row(s) of {len(df)})")


def sids_frame(codes: np.ndarray, l1_paths: np.ndarray) -> pd.DataFrame:
    """(N, L) codes -> the model's output frame (see module docstring).

    Strings are gathered from per-level tables of ``K_l`` entries (``"12"``, ``"-7"``, ...), so a
    batch costs two object concatenations per row for ``sid_codes`` and one gather for ``sid_path``.
    """
    n, L = codes.shape
    out = {}
    for l in range(3):
        out[f"sid_l{l + 1}"] = codes[:, l].astype(np.int32) if l < L else pd.array([None] * n, dtype="Int32")
    s = _code_strings(codes[:, 0], "")
    for l in range(1, L):
        s = s + _code_strings(codes[:, l], "-")  # (N,) object
    out["sid_codes"] = s
    out["sid_path"] = l1_paths[codes[:, 0]]
    return pd.DataFrame(out)


def _code_strings(c: np.ndarray, prefix: str) -> np.ndarray:
    """(N,) int codes -> (N,) object array of ``prefix + str(code)`` via a table of max(code) + 1 strings."""
    if len(c) == 0:
        return np.zeros(0, dtype=object)
    table = np.array([prefix + str(i) for i in range(int(c.max()) + 1)], dtype=object)
    return table[c]


def save_pyfunc(path: str, artifact_dir: str, dim: int) -> str:
    """Save the SID pyfunc from ``artifact_dir`` at ``path``, as :func:`lgsid.registry.log_sid_model` logs it.

    The same :class:`SIDModel`, artifacts, ``code_paths``, signature and requirements, so a Spark
    UDF over ``path`` runs exactly the code the registered model's UDF runs (``tokenize`` assigns
    every item this way before registering anything).

    Args:
        path: A directory that does not exist yet. artifact_dir: Written by :func:`save_artifacts`.
        dim: The embedding dimension D (:func:`signature`).

    Returns:
        ``path``.
    """
    from lgsid.serving import PACKAGE_DIR, requirements

    mlflow.pyfunc.save_model(path=path, python_model=SIDModel(), artifacts=artifacts_of(artifact_dir), code_paths=[PACKAGE_DIR],
                             signature=signature(dim), pip_requirements=requirements())
    return path
