"""The evaluation report: ``metrics.json`` (machines, the promotion gate), ``report.md`` (people),
MLflow logging, and the headline table the demo prints.

    python -m lgsid.evaluate.report lgsid-work/report/metrics.json   # print the headline table again
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from typing import Any

SECTIONS = ("geo", "codebook", "generative", "discriminative", "ranker")


def _clean(x: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _pm(s: dict | None) -> str:
    if not s:
        return "n/a"
    if len(s.get("runs", [])) > 1:
        return f"{_fmt(s['mean'])} ± {_fmt(s['std'])}"
    return _fmt(s.get("mean"))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    w = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(c).ljust(wi) for c, wi in zip(r, w))  # noqa: E731
    return [line(header), "  ".join("-" * wi for wi in w)] + [line(r) for r in rows]


def _geo_cols(geo: dict, k: int = 10) -> list[str]:
    radii = geo.get("radii_km", [])
    want = [f"Similarity@{k}", f"P@{k}", f"C@{k}", f"T@{k}", f"km_median@{k}"] + [f"within_{float(r):g}km@{k}" for r in radii]
    return [c for c in want if any(c in r for r in geo["rows"].values())]


GEN_HEADLINE = ["Hit@5", "Hit@10", "NDCG@10", "revisit.Hit@10", "new.Hit@10", "revisit.NDCG@10", "new.NDCG@10"]


def _gen_rows(gen: dict, cols: list[str]) -> list[list[str]]:
    """Baselines first, then SID rows, each with its display name."""
    vs = gen["variants"]
    order = [n for n, v in vs.items() if v.get("kind") == "baseline"] + [n for n, v in vs.items() if v.get("kind") != "baseline"]
    return [[vs[n].get("display", n)] + [_pm(vs[n]["summary"].get(c)) for c in cols] for n in order]


def _gen_sources(gen: dict) -> list[str]:
    vs = gen["variants"]
    order = [n for n, v in vs.items() if v.get("kind") == "baseline"] + [n for n, v in vs.items() if v.get("kind") != "baseline"]
    return [("baseline" if vs[n].get("kind") == "baseline" else f"{vs[n].get('source', '')} on {vs[n].get('embedding_version', '')}") for n in order]


RANKER_COLS = ["Hit@10", "NDCG@10", "revisit.Hit@10", "new.Hit@10"]


def _ranker_rows(rk: dict) -> list[list[str]]:
    """One row per ranker arm with its candidate recall on test (the heuristic ranks history + nearby)."""
    rec = rk.get("recall", {})
    out = []
    for n, v in rk["variants"].items():
        if n == "heuristic":  # ranks every item (history, then nearby popularity): no candidate set
            r = None
        elif n == "ranker":
            r = rec.get("history+nearby (no SIDs, equal count)")
        else:
            r = rec.get("per_variant", {}).get(n.removeprefix("ranker+"), {}).get("union")
        out.append([v.get("display", n)] + [_pm(v["summary"].get(c)) for c in RANKER_COLS] + [_fmt(r, 3)])
    return out


def headline_table(metrics: dict) -> str:
    """The headline numbers as plain text: geo P/C/T@10, Similarity@10 and neighbour distances per embedding
    version and the geographic oracle; next-item Hit/NDCG (all, revisit, new targets) for the baselines
    then each SID variant and decoding lever; DIN AUC on uniform and exposure-like negatives; skipped sections."""
    lines = ["LGSID evaluation — headline"]
    geo = metrics.get("geo", {})
    if "rows" in geo:
        cols = _geo_cols(geo)
        rows = [[v] + [_fmt(r.get(c)) for c in cols] for v, r in geo["rows"].items()]
        lines += ["", "Geo-awareness (Table 3; km_median / within_r: haversine distance to the top-10 embedding neighbours; "
                      "geo-oracle = the 10 nearest items):"] + _text_table(["embeddings"] + cols, rows)
    gen = metrics.get("generative", {})
    if "variants" in gen:
        reach = next((k for v in gen["variants"].values() for k in v["summary"] if k.startswith("Reach@")), "Reach@10")
        cols = GEN_HEADLINE + [reach]
        lines += ["", f"Next item (Table 2; {gen['n_test_users']} test users; revisit targets {_fmt(gen.get('revisit_share'), 3)}, "
                      f"new {_fmt(1 - gen['revisit_share'], 3) if gen.get('revisit_share') is not None else 'n/a'}; reach within "
                      f"{gen['reach_radius_km']:g} km, held-out items themselves: {_fmt(gen.get('reach_target_share'))}):"]
        lines += _text_table(["model"] + [c.replace("revisit.", "rev ").replace("new.", "new ") for c in cols], _gen_rows(gen, cols))
    dis = metrics.get("discriminative", {})
    if "variants" in dis:
        cols = ["AUC"] + (["AUC_exposure"] if any("AUC_exposure" in v["summary"] for v in dis["variants"].values()) else [])
        rows = [[v.get("display", n)] + [_pm(v["summary"].get(c)) for c in cols] for n, v in dis["variants"].items()]
        hdr = ["features", "AUC (uniform neg.)"] + (["AUC (exposure neg.)"] if len(cols) > 1 else [])
        lines += ["", "Discriminative, DIN-style (Table 1):"] + _text_table(hdr, rows)
    rk = metrics.get("ranker", {})
    if "variants" in rk:
        lines += ["", f"Ranker, LightGBM LambdaMART (fit on {rk['n_train_queries']} validation queries, {rk['n_test_queries']} test queries; "
                      f"candidates: {rk['history_candidates']} history + {rk['nearby_candidates']} nearby + {rk['beam_size']} beam):"]
        lines += _text_table(["model"] + [c.replace("revisit.", "rev ").replace("new.", "new ") for c in RANKER_COLS] + ["cand. recall"], _ranker_rows(rk))
    skipped = metrics.get("skipped", {})
    if skipped:
        lines += ["", "Skipped:"] + [f"  {k}: {v}" for k, v in skipped.items()]
    return "\n".join(lines)


def flat_metrics(metrics: dict, headline_only: bool = False) -> dict[str, float]:
    """MLflow-safe flat metrics (``@`` -> ``_at_``): ``geo.<version>.<metric>``, ``codebook.<variant>.<metric>``,
    ``generative.<variant>.<metric>`` / ``discriminative.<variant>.AUC`` (means; ``.std`` too unless headline_only)."""
    out: dict[str, float] = {}

    def put(k: str, v: Any) -> None:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", k.replace("@", "_at_"))] = float(v)

    geo = metrics.get("geo", {})
    for ver, row in geo.get("rows", {}).items():
        for k, v in row.items():
            if not headline_only or k in ("C@10", "P@10", "T@10", "Similarity@10", "km_median@10") or (k.startswith("within_") and k.endswith("@10")):
                put(f"geo.{ver}.{k}", v)
    if not headline_only:
        for name, e in metrics.get("codebook", {}).items():
            if isinstance(e, dict) and "metrics" in e:
                for k, v in e["metrics"].items():
                    put(f"codebook.{name}.{k}", v)
    for sec in ("generative", "discriminative", "ranker"):
        for name, v in metrics.get(sec, {}).get("variants", {}).items():
            for k, s in v["summary"].items():
                if headline_only and k not in ("Hit@10", "NDCG@10", "AUC", "AUC_exposure", "revisit.Hit@10", "new.Hit@10") and not k.startswith("Reach@"):
                    continue
                put(f"{sec}.{name}.{k}", s["mean"])
                if not headline_only:
                    put(f"{sec}.{name}.{k}.std", s["std"])
    return out


def render_markdown(metrics: dict, out_dir: str) -> str:
    """report.md text: every section's table, skipped sections with reasons, plots by relative path."""
    rel = lambda p: os.path.relpath(p, out_dir)  # noqa: E731
    m = metrics.get("meta", {})
    L = ["# LGSID evaluation report", ""]
    L.append(f"{m.get('n_items', 0)} items, {m.get('n_interactions', 0)} interactions ({m.get('n_train_interactions', 0)} train), "
             f"{m.get('n_test_users', 0)} test users; embedding versions: {', '.join(m.get('embedding_versions', [])) or 'none'}; "
             f"seeds {m.get('seeds')}; {m.get('seconds', 0):.0f} s.")
    for n in m.get("notes", []):
        L.append(f"- {n}")
    if metrics.get("skipped"):
        L += ["", "**Skipped:**", ""] + [f"- `{k}`: {v}" for k, v in metrics["skipped"].items()]

    L += ["", "## Geo-awareness (Table 3, Fig. 3)", ""]
    geo = metrics.get("geo", {})
    if "skipped" in geo:
        L.append(f"Skipped: {geo['skipped']}")
    else:
        cols = list(dict.fromkeys(c for r in geo["rows"].values() for c in r))
        L += [f"Top-K cosine retrieval over {geo['n_items']} items. Similarity@K: mean cosine between an item and its retrieved items in the "
              "reference space. P/C/T@K: share of retrieved items in the same state / county / town. NMI: K-Means clusters vs true labels. "
              "km_median@K / within_r km@K: haversine distance from an item to its retrieved items. geo-oracle: the K nearest items by "
              "distance (the best any space can do on distance; its Similarity@K is what that costs semantically).", ""]
        L += _table(["embeddings"] + cols, [[v] + [_fmt(r.get(c)) for c in cols] for v, r in geo["rows"].items()])
        if geo.get("note"):
            L += ["", geo["note"]]
        L += [""] + [f"![{os.path.basename(p)}]({rel(p)})" for p in geo.get("plots", [])]

    L += ["", "## Codebook health (Fig. 4, Fig. 5)", ""]
    cb = metrics.get("codebook", {})
    if "skipped" in cb:
        L.append(f"Skipped: {cb['skipped']}")
    else:
        keys = list(next(iter(cb.values()))["metrics"].keys())
        names = list(cb)
        L += _table(["metric"] + names, [["embeddings"] + [cb[n]["embedding_version"] for n in names]]
                    + [[k] + [_fmt(cb[n]["metrics"].get(k), 3) for n in names] for k in keys])
        L += ["", "Category distribution (category_l1) under the largest level-1 codes:", ""]
        rows = []
        for n, e in cb.items():
            for c in e.get("top_l1_categories", []):
                rows.append([n, str(c["code"]), str(c["items"]), ", ".join(f"{k} {v:.0%}" for k, v in c["categories"])])
        L += _table(["tokenizer", "L1 code", "items", "top categories"], rows)
        for n, e in cb.items():
            L += [""] + [f"![{n} {os.path.basename(p)}]({rel(p)})" for p in e.get("plots", [])]

    L += ["", "## Generative recommendation, TIGER-style (Table 2)", ""]
    gen = metrics.get("generative", {})
    if "skipped" in gen:
        L.append(f"Skipped: {gen['skipped']}")
    else:
        L += [f"Test split (the last interaction of each user; models trained on the train split); {gen['n_train_examples']} training examples, {gen['n_test_users']} test users; trie-constrained beam search. "
              f"Reach@K: share of recommended items within {gen['reach_radius_km']:g} km of the user's recent locations "
              f"(held-out items themselves: {_fmt(gen.get('reach_target_share'))}). Mean ± std over seeds.", ""]
        cols = [k for k in next(iter(gen["variants"].values()))["summary"] if k not in ("valid_share", "revisit_share")]
        L += [f"Revisit targets (in the user's training history): {_fmt(gen.get('revisit_share'), 3)} of test users; the last training "
              f"item repeated: {_fmt(gen.get('last_item_repeat_share'), 3)}. Baselines first (nearby popularity decays over "
              f"{gen.get('nearby_decay_km', 0):g} km); best baseline by Hit@10: {gen.get('best_baseline')}.", ""]
        L += _table(["model", "source"] + cols, [[r[0], vs_src] + r[1:] for r, vs_src in zip(_gen_rows(gen, cols), _gen_sources(gen))])

    L += ["", "## Discriminative recommendation, DIN-style (Table 1)", ""]
    dis = metrics.get("discriminative", {})
    if "skipped" in dis:
        L.append(f"Skipped: {dis['skipped']}")
    else:
        L += [f"{dis['n_train_rows']} train rows, {dis['n_test_rows']} test rows ({dis['negatives_per_positive']} sampled negatives per positive), "
              f"SID level embeddings combined by {dis['sid_mode']}. Mean ± std over seeds.", ""]
        cols = ["AUC"] + (["AUC_exposure"] if any("AUC_exposure" in v["summary"] for v in dis["variants"].values()) else [])
        if len(cols) > 1:
            L += [f"AUC_exposure: the same positives against unvisited items within {dis.get('exposure_radius_km', 0):g} km of the user's recent "
                  f"visits ({_fmt(dis.get('exposure_uniform_fallback_share'), 3)} of them topped up uniformly where too few exist).", ""]
        L += _table(["features"] + cols, [[v["display"]] + [_pm(v["summary"].get(c)) for c in cols] for v in dis["variants"].values()])

    L += ["", "## Ranker, LightGBM LambdaMART (what a ranking team ships)", ""]
    rk = metrics.get("ranker", {})
    if "skipped" in rk:
        L.append(f"Skipped: {rk['skipped']}")
    elif rk:
        L += [f"{rk['split']}. {rk['n_train_queries']} validation queries, {rk['n_test_queries']} test queries. Candidates per query: the user's "
              f"{rk['history_candidates']} most visited places, {rk['nearby_candidates']} nearby popular places and, for each SID arm, the "
              f"TIGER beam of {rk['beam_size']} (the arm without SIDs gets {rk['beam_size']} more nearby places). Mean ± std over seeds.", ""]
        L += _table(["model"] + RANKER_COLS + ["candidate recall"], _ranker_rows(rk))
        rec = rk.get("recall", {})
        L += ["", "Candidate recall on test (share of queries whose target is a candidate), per source:", ""]
        L += _table(["source", "recall"], [[k, _fmt(v, 3)] for k, v in rec.items() if k != "per_variant"]
                    + [[f"beam {n}", _fmt(r.get("beam"), 3)] for n, r in rec.get("per_variant", {}).items()]
                    + [[f"history + nearby + beam {n}", _fmt(r.get("union"), 3)] for n, r in rec.get("per_variant", {}).items()])
        L += [""] + [f"- {n}" for n in rk.get("notes", [])]
        for name, imp in rk.get("importance", {}).items():
            top = ", ".join(f"{k} {v:.0%}" for k, v in list(imp.items())[:6])
            L += ["", f"`{name}` top features by gain (first seed): {top}"]
        L += [""] + [f"![{os.path.basename(p)}]({rel(p)})" for p in rk.get("plots", [])]
    return "\n".join(L) + "\n"


def write_report(metrics: dict, out_dir: str) -> dict[str, str]:
    """Write ``metrics.json`` (strict JSON, every section present or ``{"skipped": ...}``) and ``report.md``."""
    os.makedirs(out_dir, exist_ok=True)
    clean = _clean(metrics)
    for sec in SECTIONS:
        clean.setdefault(sec, {"skipped": "not computed"})
    mpath = os.path.join(out_dir, "metrics.json")
    with open(mpath, "w") as f:
        json.dump(clean, f, indent=2, allow_nan=False)
    rpath = os.path.join(out_dir, "report.md")
    with open(rpath, "w") as f:
        f.write(render_markdown(clean, out_dir))
    return {"metrics": mpath, "report": rpath}


def log_to_mlflow(cfg, metrics: dict, out_dir: str) -> str:
    """Log flat metrics, report.md, metrics.json and plots (the whole ``out_dir``) to an MLflow run; returns its id."""
    import mlflow

    from lgsid.tracking import stage_run

    with stage_run(cfg, "evaluate") as run:
        flat = flat_metrics(metrics)
        if flat:
            mlflow.log_metrics(flat)
        mlflow.set_tags({f"lgsid.skipped.{k}": v[:250] for k, v in metrics.get("skipped", {}).items()})
        mlflow.log_artifacts(out_dir, artifact_path="report")
        return run.info.run_id


def main(argv: list[str] | None = None) -> int:
    """``python -m lgsid.evaluate.report [metrics.json]``: print the headline table."""
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else "lgsid-work/report/metrics.json"
    with open(path) as f:
        print(headline_table(json.load(f)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
