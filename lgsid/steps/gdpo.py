"""Step ``gdpo``: G-DPO post-training of the encoder with LoRA (Eq. 6-8; :mod:`lgsid.gdpo`), logged and registered in MLflow.

The MLflow run, the held-out geo check, registration and the re-embedding of the items are
helpers in :mod:`lgsid.gdpo.job`; the training loop is :mod:`lgsid.gdpo.loop`. A rerun whose
input fingerprint matches a registered version trains and registers nothing.
"""

from __future__ import annotations

import os
import tempfile

from lgsid import fs
from lgsid.config import LGSIDConfig
from lgsid.errors import ValidationError
from lgsid.gdpo.examples import load_examples
from lgsid.gdpo.job import (
    coverage_frames,
    embed_missing,
    heldout_geo_metrics,
    heldout_oracle,
    heldout_split,
    input_fingerprint,
    log_aligned_encoder,
    plot_heldout,
    plot_losses,
    plot_projection,
)
from lgsid.gdpo.loop import train_distributed, train_in_process
from lgsid.steps.summary import StepSummary


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``gdpo``: train LoRA with Eq. 6-8 from Delta via Petastorm; log, register, re-embed items.

    Logs to one MLflow run: params (resolved config), per-step losses, the reward model (and its
    metrics and run id), the LoRA adapter + tokenizer files, loss and PCA plots, under
    ``train.distributed`` each rank's step count and example keys (``train/ranks.json``), and the
    geo-coverage check (P@K / C@K / T@K of top-K neighbours) of the reference vs the aligned item
    embeddings, both taken per ``item_id`` from the same items. With unchanged inputs and config
    (same :func:`input_fingerprint` as a registered version) nothing is trained or registered.
    """
    import mlflow
    from mlflow import MlflowClient

    from lgsid.embed import REFERENCE, embed_items
    from lgsid.fingerprint import TAG, find_model_version
    from lgsid.metrics import geo_coverage
    from lgsid.reward import REWARD_ARTIFACT, find_reward_run, load_logged_reward_model
    from lgsid.storage import DeltaStore
    from lgsid.tracking import setup_mlflow, stage_run

    store = DeltaStore(spark, cfg.storage)
    name = cfg.mlflow.encoder_model_name
    setup_mlflow(cfg)
    reward_run = find_reward_run(spark, cfg)
    fp = input_fingerprint(spark, cfg, reward_run.info.run_id)
    done = find_model_version(MlflowClient(), name, fp)
    if done is not None:
        version = f"aligned-{done.version}"
        written = (embed_missing(spark, cfg, store, REFERENCE), embed_missing(spark, cfg, store, version, f"models:/{name}/{done.version}"))
        tables = [t for t in written if t]
        return StepSummary(
            "gdpo", tables=tables, metrics={"steps": 0, "aligned_version": version},
            notes=[f"inputs and config unchanged (fingerprint {fp}): reusing {name} v{done.version} (run {done.run_id}); nothing trained or registered"],
        )

    examples, n_examples, counts = load_examples(spark, cfg)
    held = None
    if cfg.gdpo.eval_every and not cfg.train.distributed:
        examples, held = heldout_split(spark, cfg, examples)
        n_examples = examples.count()
        if n_examples == 0:
            raise ValidationError(f"gdpo: every example's anchor is among the gdpo.eval_items={cfg.gdpo.eval_items} held-out items; lower gdpo.eval_items")
    k_eval = min(cfg.gdpo.coverage_k, len(held) - 1) if held is not None else 0

    def eval_fn_of(encoder):
        """encoder -> () -> held-out geo metrics of its current weights."""
        texts = held["prompt"].tolist()
        return lambda: {
            k.replace(f"@{k_eval}", ""): v
            for k, v in heldout_geo_metrics(encoder.encode(texts), held["lat"], held["lon"], held["state"], held["county"], held["town"], k_eval).items()
        }

    tables = []
    with stage_run(cfg, "gdpo", tags={TAG: fp}) as run_, tempfile.TemporaryDirectory(prefix="lgsid-gdpo-") as scratch:
        run_id = run_.info.run_id
        mlflow.log_params({"gdpo.n_examples": n_examples, "gdpo.reward_run_id": reward_run.info.run_id, **{f"gdpo.n_{k}": v for k, v in counts.items()}})
        reward = load_logged_reward_model(reward_run.info.run_id, dst=os.path.join(scratch, "reward"))
        rmeta = reward.meta
        mlflow.log_metrics({f"reward.{k}": float(v) for k, v in rmeta.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.log_params({"gdpo.reward_conditioning": reward.conditioning})
        mlflow.log_artifacts(os.path.join(scratch, "reward", REWARD_ARTIFACT), REWARD_ARTIFACT)

        def log(rec: dict, step: int) -> None:
            mlflow.log_metrics({k: v for k, v in rec.items() if k != "epoch"}, step=step)

        adapter_dir = os.path.join(scratch, "adapter")  # scratch of this step only: the model carries it on
        if cfg.train.distributed:
            result = train_distributed(spark, examples, cfg, reward, n_examples)
            fs.write_dir(adapter_dir, result["adapter"])
            dim = int(result["dim"])
            mlflow.log_dict({"ranks": result["ranks"]}, "train/ranks.json")  # per rank: steps and the example keys it read
            for i, rec in enumerate(result["history"], start=1):
                log(rec, i)
        else:
            encoder, result = train_in_process(examples, cfg, reward, n_examples, log_fn=log, eval_fn_of=eval_fn_of if held is not None else None)
            for i, rec in enumerate(result["history"][: result["resumed_from"]], start=1):
                log(rec, i)  # steps done before a resume belong to this run's curves too
            encoder.save_adapter(adapter_dir)
            dim = encoder.dim
        mlflow.log_artifacts(adapter_dir, "adapter")  # LoRA weights + adapter_config + tokenizer files
        mlflow.log_metrics({"train_seconds": result["seconds"], "train_prompts_per_s": result["prompts_per_s"], "train_steps": result["steps"]})
        mlflow.set_tag("lgsid.gdpo_stopped", result.get("stopped", "steps"))
        if result.get("evals"):
            oracle = heldout_oracle(held, k_eval)
            mlflow.log_metrics({f"heldout_oracle.{k}": v for k, v in oracle.items()} | {"heldout.best_step": result["best_step"]})
            mlflow.log_dict({"evals": result["evals"], "oracle": oracle, "best_step": result["best_step"]}, "train/heldout_geo.json")
            ph = os.path.join(scratch, "heldout_geo.png")
            plot_heldout(result["evals"], k_eval, ph)
            mlflow.log_artifact(ph, "plots")
        mv = log_aligned_encoder(cfg, adapter_dir, dim, fingerprint=fp)
        version = f"aligned-{mv.version}"
        ref = embed_missing(spark, cfg, store, REFERENCE)
        tables += [ref] if ref else []
        tables.append(embed_items(spark, cfg, version, f"models:/{name}/{mv.version}"))
        _, before, after, st, co, tw = coverage_frames(spark, cfg, REFERENCE, version, sample=cfg.gdpo.coverage_sample)
        k = min(cfg.gdpo.coverage_k, len(before) - 1)
        cov_b = geo_coverage(before, st, co, tw, k=k)
        cov_a = geo_coverage(after, st, co, tw, k=k)
        cov = {f"geo_before.{m}": v for m, v in cov_b.items()} | {f"geo_after.{m}": v for m, v in cov_a.items()}
        mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in cov.items()})  # MLflow names may not hold '@'

        p1, p2 = os.path.join(scratch, "gdpo_loss.png"), os.path.join(scratch, "embeddings_pca_by_state.png")
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
        notes=[f"registered {name} v{mv.version} (run {run_id}): models:/{name}/{mv.version}", f"reward model: runs:/{reward_run.info.run_id}/{REWARD_ARTIFACT}"],
    )
