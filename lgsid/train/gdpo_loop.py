"""The G-DPO optimisation loop for one process (or one rank under ``TorchDistributor``).

Reads the examples DataFrame through Petastorm, tokenises chosen / rejected / true prompts in the
collate step, computes Eq. 6-8 (:func:`lgsid.gdpo.gdpo_batch_loss`) and updates only the LoRA
parameters. Seeded, resumable, with a tqdm bar showing the losses and prompts/s.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from lgsid.config import LGSIDConfig
from lgsid.train.data import petastorm_batches
from lgsid.train.runtime import Checkpointer, fingerprint, seed_everything


def make_collate(tokenizer, max_length: int, prompts_cfg) -> Callable[[list[dict]], dict]:
    """Collate rows of the examples table into one tokenised batch.

    Each row has ``content_text``, ``chosen_location``, ``rejected_location`` and ``true_prompt``.
    The chosen / rejected prompts are ``combine_prompt(content, location)``. All 3B texts are
    tokenised together (one padding length) in the order chosen, rejected, true.

    Returns:
        ``fn(rows) -> {"input_ids": (3B, T), "attention_mask": (3B, T), ..., "n": B}``.
    """
    from lgsid.prompts import combine_prompt as combine

    def collate(rows: list[dict]) -> dict:
        chosen = [combine(r["content_text"], r["chosen_location"], prompts_cfg) for r in rows]
        rejected = [combine(r["content_text"], r["rejected_location"], prompts_cfg) for r in rows]
        true = [r["true_prompt"] for r in rows]
        tok = tokenizer(chosen + rejected + true, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        out = dict(tok)
        out["n"] = len(rows)
        return out

    return collate


def run_key(cfg: LGSIDConfig, n_examples: int) -> str:
    """Fingerprint of everything that shapes the run (so a checkpoint is only resumed by the same run).

    ``gdpo.max_steps`` is left out: raising it continues a finished shorter run.
    """
    g = {k: v for k, v in cfg.gdpo.__dict__.items() if k != "max_steps"}  # a longer run may resume a shorter one
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

    Returns:
        ``{"history": [per-step dicts], "steps": int, "resumed_from": int, "seconds": float, "prompts_per_s": float}``.
    """
    from tqdm.auto import tqdm

    from lgsid.gdpo import gdpo_batch_loss

    g, t = cfg.gdpo, cfg.train
    seed_everything(g.seed + rank)
    policy = model if model is not None else encoder
    encoder.eval()  # dropout off (TRL's DPO default): policy and reference see the same network
    params = encoder.lora_parameters()
    if not params:
        raise RuntimeError("encoder has no trainable parameters: attach LoRA with add_lora() first")
    opt = torch.optim.AdamW(params, lr=g.lr)
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
    t0 = time.perf_counter()
    done = start >= total
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
                loss, parts = gdpo_batch_loss(policy, encoder, reward, batch, g, device)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                n_prompts += 3 * batch["n"]
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
    bar.close()
    secs = time.perf_counter() - t0
    return {"history": history, "steps": max(step, start), "resumed_from": start, "seconds": secs, "prompts_per_s": n_prompts / max(secs, 1e-9)}
