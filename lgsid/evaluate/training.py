"""The minibatch loop shared by the downstream models (TIGER-style and DIN-style)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn


def train_minibatches(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    n: int,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    progress: bool = False,
    desc: str = "epochs",
    lr_schedule: str = "constant",
    valid_loss: Callable[[], float] | None = None,
    patience: int = 0,
) -> nn.Module:
    """``epochs`` passes over ``n`` examples in a fresh ``rng`` permutation each pass.

    With ``valid_loss`` the model's loss on the validation examples is recorded after every epoch in
    ``model.fit_history`` (``{"valid_loss": [...], "best_epoch", "epochs_run"}``, epochs counted from 1), so a
    report can show whether validation converged at its budget. With ``patience`` > 0 as well, ``epochs`` is
    the most epochs: training stops once the validation loss has not improved for ``patience`` epochs, and
    the weights of the best epoch are restored (early stopping).

    Args:
        batch_loss: maps a (B,) int64 index tensor of the batch's examples to its scalar loss.
        valid_loss: the validation loss of the current weights (called in eval mode, under no_grad).
        patience: early-stopping patience in epochs (0 = run every epoch).
        lr_schedule: ``constant`` keeps the optimiser's learning rate; ``onecycle`` runs
            :class:`torch.optim.lr_scheduler.OneCycleLR` over all ``epochs * ceil(n / batch_size)`` steps with the
            optimiser's learning rate as the peak (torch's defaults: start at peak / 25, warm-up over the first 30%,
            cosine decay to the start / 10^4).

    Returns:
        ``model``, in eval mode.
    """
    from tqdm.auto import tqdm

    if lr_schedule not in ("constant", "onecycle"):
        raise ValueError(f"lr_schedule {lr_schedule!r} is not one of constant, onecycle")
    steps = epochs * -(-n // batch_size)
    sched = None
    if lr_schedule == "onecycle" and steps > 0:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=steps)
    history: list[float] = []
    best, best_state = float("inf"), None
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        order = rng.permutation(n)
        for s in range(0, n, batch_size):
            loss = batch_loss(torch.from_numpy(order[s:s + batch_size]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        if valid_loss is not None:
            model.eval()
            with torch.no_grad():
                history.append(float(valid_loss()))
            model.train()
            if history[-1] < best:
                best = history[-1]
                if patience > 0:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif patience > 0 and len(history) - 1 - int(np.argmin(history)) >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if valid_loss is not None:
        model.fit_history = {"valid_loss": history, "best_epoch": int(np.argmin(history)) + 1 if history else 0, "epochs_run": len(history)}
    return model
