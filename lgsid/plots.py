"""Small PNG helpers shared by the training stages (headless: the Agg backend)."""

from __future__ import annotations


def plot_curves(history: list[dict], keys: tuple[str, ...], xlabel: str, path: str, ylabel: str = "loss", figsize: tuple[float, float] = (6, 3.5)) -> None:
    """One line per ``key`` of ``history`` (a list of per-step/epoch dicts), saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    for k in keys:
        ax.plot([h[k] for h in history], label=k)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
