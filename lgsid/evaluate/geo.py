"""Geo-awareness of item embeddings (paper Table 3, Fig. 3).

For every embedding model version (reference, aligned-N, ablations): top-K cosine retrieval, then

* Similarity@K: mean cosine similarity **in the reference space** between each item and the K
  items retrieved in the evaluated space (does alignment keep semantics?);
* P@K / C@K / T@K: share of retrieved items in the same state / county / town
  (:func:`lgsid.metrics.neighbour_share`, admin names qualified by their parents);
* NMI between true state / county / town labels and K-Means clusters of the embeddings;
* a 2-D PCA projection coloured by state.
"""

from __future__ import annotations

import numpy as np

from lgsid.metrics import neighbour_share, topk_neighbours, unit_rows


def similarity_at_k(neighbours: np.ndarray, ref_emb: np.ndarray, max_elements: int = 1 << 24) -> float:
    """Similarity@K: mean reference-space cosine between each item and its retrieved items.

    ``Sim@K = mean_i (1/K) Σ_{j ∈ topK(i)} cos(r_i, r_j)`` where ``topK`` comes from the evaluated
    space and ``r`` are reference embeddings.

    Args:
        neighbours: (N, K) indices retrieved for each item (in any embedding space).
        ref_emb: (N, D) reference embeddings of the same items, same order.
        max_elements: rows are scored in blocks whose gathered (rows, K, D) neighbours hold at most
            this many floats (64 MB), so memory does not grow with N x K x D.
    """
    r = unit_rows(ref_emb)  # (N, D)
    neighbours = np.asarray(neighbours)
    n, k = neighbours.shape
    sims = np.empty((n, k), dtype=np.float32)
    chunk = max(1, int(max_elements) // max(k * r.shape[1], 1))
    for s in range(0, n, chunk):
        sims[s:s + chunk] = np.einsum("nd,nkd->nk", r[s:s + chunk], r[neighbours[s:s + chunk]])  # (b, K)
    return float(sims.mean())


def nmi_kmeans(emb: np.ndarray, labels: np.ndarray, n_clusters: int | None = None, max_clusters: int = 500, seed: int = 0) -> float:
    """NMI between ``labels`` and K-Means clusters of the L2-normalised embeddings (scikit-learn).

    Args:
        emb: (N, D) embeddings.
        labels: (N,) true labels (state, qualified county or town).
        n_clusters: number of clusters; default = number of distinct labels, capped by ``max_clusters``
            and by N.
        seed: K-Means seed.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    from lgsid.tokenizer.base import fit_kmeans

    labels = np.asarray(labels)
    n = len(labels)
    k = n_clusters or min(len(np.unique(labels)), max_clusters)
    k = max(1, min(k, n))
    if k == 1:
        clusters = np.zeros(n, dtype=np.int64)
    else:
        clusters = fit_kmeans(KMeans(n_clusters=k, n_init=1, random_state=seed), unit_rows(emb)).labels_
    return float(normalized_mutual_info_score(labels, clusters))


def geo_awareness(emb: np.ndarray, ref_emb: np.ndarray | None, labels: dict[str, np.ndarray], ks, seed: int = 0, max_clusters: int = 500) -> dict[str, float]:
    """One row of the Table-3-like report for one embedding space.

    Args:
        emb: (N, D) embeddings of the evaluated model version.
        ref_emb: (N, D') reference embeddings of the same items (None: Similarity@K is left out).
        labels: output of :func:`qualified_labels`.
        ks: cut-offs; each is clamped to N - 1.
        seed: K-Means seed.

    Returns:
        ``{"Similarity@K", "P@K", "C@K", "T@K" for each K, "NMI_state", "NMI_county", "NMI_town"}``.
    """
    n = emb.shape[0]
    ks = sorted({min(int(k), n - 1) for k in ks})
    idx, _ = topk_neighbours(emb, max(ks))  # (N, Kmax) sorted by similarity
    row: dict[str, float] = {}
    for k in ks:
        nb = idx[:, :k]
        if ref_emb is not None:
            row[f"Similarity@{k}"] = similarity_at_k(nb, ref_emb)
        row[f"P@{k}"] = neighbour_share(nb, labels["state"])
        row[f"C@{k}"] = neighbour_share(nb, labels["county"])
        row[f"T@{k}"] = neighbour_share(nb, labels["town"])
    for level in ("state", "county", "town"):
        row[f"NMI_{level}"] = nmi_kmeans(emb, labels[level], max_clusters=max_clusters, seed=seed)
    return row


def projection_plot(emb: np.ndarray, state: np.ndarray, path: str, title: str, top_states: int = 10, max_points: int = 5000, seed: int = 0) -> str:
    """2-D PCA projection of the embeddings coloured by state (the most frequent ``top_states``; others grey).

    Returns the PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    state = np.asarray(state, dtype=str)
    sel = rng.choice(len(state), size=min(max_points, len(state)), replace=False)
    xy = PCA(n_components=2, random_state=seed).fit_transform(unit_rows(emb[sel]))
    st = state[sel]
    names, counts = np.unique(st, return_counts=True)
    top = names[np.argsort(-counts)][:top_states]
    fig, ax = plt.subplots(figsize=(7, 6))
    other = ~np.isin(st, top)
    ax.scatter(xy[other, 0], xy[other, 1], s=4, c="lightgrey", label="other")
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(top):
        m = st == name
        ax.scatter(xy[m, 0], xy[m, 1], s=5, color=cmap(i % 10), label=name)
    ax.set_title(title)
    ax.legend(markerscale=3, fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
