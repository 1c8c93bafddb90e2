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
) -> nn.Module:
    """``epochs`` passes over ``n`` examples in a fresh ``rng`` permutation each pass.

    Args:
        batch_loss: maps a (B,) int64 index tensor of the batch's examples to its scalar loss.

    Returns:
        ``model``, in eval mode.
    """
    from tqdm.auto import tqdm

    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        order = rng.permutation(n)
        for s in range(0, n, batch_size):
            loss = batch_loss(torch.from_numpy(order[s:s + batch_size]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    return model
