"""The G-DPO training loop, top to bottom (single process, or one rank under ``TorchDistributor``).

Reads the examples DataFrame through Petastorm, tokenises chosen / rejected / true prompts in the
collate step (:func:`lgsid.gdpo.examples.make_collate`), computes Eq. 6-8
(:func:`lgsid.gdpo.losses.gdpo_batch_loss`) and updates only the LoRA parameters. Seeded,
resumable (checkpoints on any path or URI), with a tqdm bar showing the losses and prompts/s.

:func:`train_in_process` runs it in this process; :func:`train_distributed` runs one copy per rank
through :func:`lgsid.train.distributed.run_distributed` and hands rank 0's adapter back as bytes.
"""

from __future__ import annotations

import tempfile
import time
from typing import TYPE_CHECKING, Callable

import torch

from lgsid import fs
from lgsid.config import LGSIDConfig
from lgsid.errors import ValidationError
from lgsid.gdpo.examples import make_collate
from lgsid.gdpo.losses import gdpo_batch_loss
from lgsid.train.data import make_converter, petastorm_batches
from lgsid.train.runtime import Checkpointer, fingerprint, release_memory, resolve_device, seed_everything

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

    from lgsid.reward import RewardMLP


def run_key(cfg: LGSIDConfig, n_examples: int) -> str:
    """Fingerprint of everything that shapes the run (so a checkpoint is only resumed by the same run).

    ``gdpo.max_steps`` and ``gdpo.max_seconds`` are left out: raising them continues a finished shorter run.
    """
    g = {k: v for k, v in cfg.gdpo.__dict__.items() if k not in ("max_steps", "max_seconds")}  # a longer run may resume a shorter one
    return "gdpo-" + fingerprint({"encoder": cfg.encoder.__dict__, "gdpo": g, "reward": cfg.reward.__dict__, "n": n_examples})


def train_gdpo(
    encoder,
    reward,
    converter,
    cfg: LGSIDConfig,
    device: str,
    *,
    n_examples: int,
    rank: int = 0,
    world: int = 1,
    model=None,
    log_fn: Callable[[dict, int], None] | None = None,
    progress: bool = True,
    eval_fn: Callable[[], dict] | None = None,
) -> dict:
    """Optimise the encoder's LoRA parameters with L_align + λ·L_sim over the examples.

    Args:
        encoder: :class:`lgsid.encoder.Encoder` with a LoRA adapter attached, on ``device``.
        reward: Frozen :class:`lgsid.reward.RewardMLP` on ``device``.
        converter: Petastorm converter of the examples DataFrame.
        cfg: Resolved config (``gdpo``, ``train``, ``encoder``, ``prompts``).
        device: ``cpu`` or ``cuda``.
        n_examples: Rows in the examples table (for the run key and the bar's total).
        rank, world: This process's rank and the world size (Petastorm shards by rank).
        model: The module to call for the policy forward (a DDP wrapper of ``encoder``); default ``encoder``.
        log_fn: Called with ``(metrics, step)`` after every step (rank 0 only).
        progress: Show the tqdm bar (rank 0 only).
        eval_fn: Held-out geo metrics of the current policy (``{"within_1km": .., ...}``), called
            before the first step and every ``gdpo.eval_every`` steps (single process only).
            Training stops once ``within_1km`` has not improved for ``gdpo.eval_patience``
            evaluations, and the LoRA weights of the best evaluation are restored.

    The loop also stops after the step that crosses ``gdpo.max_seconds`` of wall clock.

    Returns:
        ``{"history": [per-step dicts], "steps": int, "resumed_from": int, "seconds": float,
        "prompts_per_s": float, "rows_read": set of (anchor, other, pair_type) trained on,
        "evals": [{"step": int, **eval_fn()}], "best_step": int | None, "stopped": str}``.
    """
    from tqdm.auto import tqdm

    g, t = cfg.gdpo, cfg.train
    seed_everything(g.seed + rank)
    policy = model if model is not None else encoder
    encoder.eval()  # dropout off (TRL's DPO default): policy and reference see the same network
    params = encoder.lora_parameters()
    if not params:
        raise RuntimeError("encoder has no trainable parameters: attach LoRA with add_lora() first")
    opt = torch.optim.AdamW(params, lr=g.lr)

    # Resume: the newest checkpoint of the same run configuration (and rank) restores the adapter,
    # the optimiser, the RNG states and the loss history.
    ck = Checkpointer(t.checkpoint_dir, run_key(cfg, n_examples) + (f"-r{rank}" if world > 1 else ""))
    history: list[dict] = []
    start = 0
    if t.resume:
        state = ck.latest()
        if state is not None:
            named = dict(encoder.named_parameters())
            with torch.no_grad():
                for n, v in state["trainable"].items():
                    named[n].copy_(v.to(named[n].device))
            opt.load_state_dict(state["optimizer"])
            history = list(state["history"])
            start = int(state["step"])

    per_epoch = max(1, -(-n_examples // (g.batch_size * world)))
    total = per_epoch * g.epochs
    if g.max_steps:
        total = min(total, g.max_steps)
    collate = make_collate(encoder.tokenizer, cfg.encoder.max_length, cfg.prompts)
    bar = tqdm(total=total, initial=min(start, total), desc="gdpo", unit="step", disable=not progress or rank != 0)
    step = 0
    n_prompts = 0
    rows_read: set = set()
    t0 = time.perf_counter()
    done = start >= total
    evals: list[dict] = []
    best: tuple[float, int, dict | None] = (-1.0, -1, None)  # (held-out within_1km, step, LoRA weights)
    stopped = "steps"

    def evaluate(at: int) -> bool:
        """Held-out metrics at step ``at``; True when the patience is used up."""
        nonlocal best
        rec = {"step": at, **eval_fn()}
        evals.append(rec)
        if log_fn is not None:
            log_fn({f"heldout.{k}": v for k, v in rec.items() if k != "step"}, at)
        if rec["within_1km"] > best[0]:
            best = (rec["within_1km"], at, {n: p.detach().clone() for n, p in encoder.named_parameters() if p.requires_grad})
            return False
        return bool(g.eval_patience) and len(evals) - 1 - next(i for i, e in enumerate(evals) if e["step"] == best[1]) >= g.eval_patience

    if eval_fn is not None and world == 1 and not done:
        evaluate(start)
    # Under DDP every rank must take the same number of steps (an idle rank would stall the
    # all-reduce): the ranks then read their shard in an endless loop and all stop at `total`.
    passes, reader_epochs = (range(g.epochs), 1) if world == 1 else ([0], None)
    for epoch in passes:
        if done:
            break
        with petastorm_batches(
            converter, g.batch_size, collate, seed=g.seed + epoch, num_epochs=reader_epochs, shuffle_buffer=t.shuffle_buffer,
            workers=t.num_workers, cur_shard=rank, shard_count=world,
        ) as loader:
            for batch in loader:
                if batch["n"] < 2:  # L_sim is in-batch; a 1-row tail batch carries no contrast
                    continue
                if step < start:  # resuming: replay the same deterministic order up to the checkpoint
                    step += 1
                    continue

                # One optimiser step on Eq. 8 (only the LoRA parameters move).
                loss, parts = gdpo_batch_loss(policy, encoder, reward, batch, g, device)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

                step += 1
                n_prompts += 3 * batch["n"]
                rows_read.update(batch["keys"])
                rec = {k: float(v) for k, v in parts.items()}
                rec["epoch"] = epoch
                history.append(rec)
                rate = n_prompts / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", align=f"{rec['l_align']:.4f}", sim=f"{rec['l_sim']:.4f}", prompts_s=f"{rate:.0f}")
                bar.update(1)
                if log_fn is not None and rank == 0:
                    log_fn(rec, step)
                if step % t.checkpoint_every == 0 or step >= total:
                    trainable = {n: p.detach().cpu() for n, p in encoder.named_parameters() if p.requires_grad}
                    ck.save(step, {"trainable": trainable, "optimizer": opt.state_dict(), "history": history})
                if step >= total:
                    done = True
                    break
                if eval_fn is not None and world == 1 and g.eval_every and step % g.eval_every == 0 and evaluate(step):
                    done, stopped = True, "eval_patience"
                    break
                if g.max_seconds and time.perf_counter() - t0 >= g.max_seconds:
                    done, stopped = True, "max_seconds"
                    break
    bar.close()
    if eval_fn is not None and world == 1 and evals and evals[-1]["step"] != step and step > start:
        evaluate(step)
    if best[2] is not None and best[1] != step:  # keep the adapter of the best held-out evaluation
        named = dict(encoder.named_parameters())
        with torch.no_grad():
            for n, v in best[2].items():
                named[n].copy_(v)
    secs = time.perf_counter() - t0
    return {
        "history": history, "steps": max(step, start), "resumed_from": start, "seconds": secs,
        "prompts_per_s": n_prompts / max(secs, 1e-9), "rows_read": rows_read,
        "evals": evals, "best_step": best[1] if best[2] is not None else None, "stopped": stopped,
    }


def _policy(cfg: LGSIDConfig, reward: "RewardMLP", device: str):
    """A fresh LoRA policy on the base encoder (seeded: every rank starts from the same weights)."""
    from lgsid.encoder import load_encoder

    seed_everything(cfg.gdpo.seed)  # LoRA init draws from torch's RNG
    encoder = load_encoder(cfg.encoder, device=device, runtime="torch").add_lora()  # training runs on torch
    if reward.dim != encoder.dim:
        raise ValidationError(f"reward model expects {reward.dim}-dim embeddings but encoder {cfg.encoder.checkpoint} gives {encoder.dim}; rerun `lgsid reward`")
    return encoder


def train_in_process(examples: "DataFrame", cfg: LGSIDConfig, reward: "RewardMLP", n_examples: int, log_fn=None, eval_fn_of=None):
    """Single-process training (CPU, or one GPU).

    Args:
        examples: The examples DataFrame (:func:`lgsid.gdpo.examples.load_examples`).
        cfg: Resolved config.
        reward: The frozen reward model.
        n_examples: Rows of ``examples``.
        log_fn: Called with ``(metrics, step)`` after every step.
        eval_fn_of: ``encoder -> eval_fn`` (see :func:`train_gdpo`), or None.

    Returns:
        ``(encoder with LoRA, result dict of train_gdpo)``.
    """
    device = resolve_device(cfg.train.device)
    reward = reward.to(device)
    encoder = _policy(cfg, reward, device)
    converter = make_converter(examples)
    try:
        eval_fn = eval_fn_of(encoder) if eval_fn_of is not None else None
        result = train_gdpo(encoder, reward, converter, cfg, device, n_examples=n_examples, log_fn=log_fn, eval_fn=eval_fn)
    finally:
        converter.delete()
    release_memory()  # the loop's freed batches, back to the OS before the step re-embeds and checks on the driver
    return encoder, result


def _rank_train(rank: int, world: int, device: str, cfg: LGSIDConfig, reward: "RewardMLP", converter, n_examples: int) -> dict | None:
    """One TorchDistributor rank: DDP over the LoRA policy, its Petastorm shard, the same step count.

    Rank 0 returns the result with ``adapter`` (the saved adapter directory as ``{relative path:
    bytes}``, so the driver needs no path this process wrote), ``dim`` and ``ranks`` (every rank's
    ``rank``, ``steps`` and ``rows_read``, gathered).
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    reward = reward.to(device)
    encoder = _policy(cfg, reward, device)
    model = DDP(encoder, device_ids=[torch.cuda.current_device()] if device == "cuda" else None)
    result = train_gdpo(encoder, reward, converter, cfg, device, n_examples=n_examples, rank=rank, world=world, model=model)
    mine = {"rank": rank, "steps": result["steps"], "rows_read": sorted(result.pop("rows_read"))}
    ranks: list = [None] * world
    dist.all_gather_object(ranks, mine)
    if rank != 0:
        return None
    with tempfile.TemporaryDirectory(prefix="lgsid-adapter-") as tmp:
        encoder.save_adapter(tmp)
        result["adapter"] = fs.read_dir(tmp)
    result["dim"] = encoder.dim
    result["ranks"] = ranks
    return result


def train_distributed(spark: "SparkSession", examples: "DataFrame", cfg: LGSIDConfig, reward: "RewardMLP", n_examples: int) -> dict:
    """G-DPO on ``train.num_processes`` TorchDistributor processes.

    Returns:
        Rank 0's result (see :func:`_rank_train`): ``history``, ``steps``, ``adapter`` files,
        ``dim`` and per-rank ``ranks``.
    """
    from lgsid.train.distributed import run_distributed

    device = resolve_device(cfg.train.device)
    # Petastorm shards by row group (one per file here): give every rank at least two.
    converter = make_converter(examples.repartition(2 * cfg.train.num_processes))
    try:
        return run_distributed(spark, _rank_train, cfg, reward.cpu(), converter, n_examples, num_processes=cfg.train.num_processes, device=device)
    finally:
        converter.delete()
