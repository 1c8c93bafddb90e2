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


def sid_map_plot(lat, lon, level1, path: str, title: str, top_codes: int = 20, max_points: int = 20000, seed: int = 0) -> str:
    """Where the SIDs live: a lat/lon scatter of items coloured by their level-1 code.

    The ``top_codes`` most frequent level-1 codes get their own colour (tab20); the others are grey.
    Returns the PNG path.
    """
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat, lon, level1 = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float), np.asarray(level1)
    sel = np.random.default_rng(seed).choice(len(lat), size=min(max_points, len(lat)), replace=False)
    lat, lon, level1 = lat[sel], lon[sel], level1[sel]
    codes, counts = np.unique(level1, return_counts=True)
    top = codes[np.argsort(-counts, kind="stable")][:top_codes]
    fig, ax = plt.subplots(figsize=(8, 5))
    other = ~np.isin(level1, top)
    ax.scatter(lon[other], lat[other], s=3, c="lightgrey", label="other codes")
    cmap = plt.get_cmap("tab20")
    for i, c in enumerate(top):
        m = level1 == c
        ax.scatter(lon[m], lat[m], s=4, color=cmap(i % 20), label=f"L1={c}")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title)
    ax.legend(markerscale=3, fontsize=6, loc="best", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
