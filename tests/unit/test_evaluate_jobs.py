"""lgsid.evaluate.jobs: the independent fits give the same results in worker processes as in-process."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lgsid.evaluate.jobs import fits_on_executors, resolve_workers, run_jobs


def _seeded_draw(job, shared):
    import torch

    torch.manual_seed(job)
    return float(torch.randn(3).sum() + shared["offset"]), torch.get_num_threads()


def _fails_on_two(job, shared):
    if job == 2:
        raise ValueError(f"fit {job} failed")
    return job


def test_fits_on_executors_by_master():
    assert fits_on_executors("auto", "spark://127.0.0.1:7077") and fits_on_executors("auto", "yarn")
    assert not fits_on_executors("auto", "local[2]") and not fits_on_executors("auto", "local")
    assert fits_on_executors("executors", "local[1]") and not fits_on_executors("local", "spark://h:7077")
    with pytest.raises(ValueError, match="evaluate.fit_on: 'driver' is not one of auto, local, executors"):
        fits_on_executors("driver", "local")


@pytest.mark.spark
def test_run_jobs_on_executors_same_results_order_and_threads(spark):
    import sys

    import torch
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Spark's workers cannot import this test module

    jobs = [5, 1, 3]
    seq = run_jobs(_seeded_draw, jobs, {"offset": 1.0}, workers=1, threads=1)
    before = torch.get_num_threads()
    on_spark = run_jobs(_seeded_draw, jobs, {"offset": 1.0}, workers=0, threads=1, cost=lambda j: j, spark=spark)
    assert on_spark == seq  # same values in jobs order, each fit on 1 thread
    assert torch.get_num_threads() == before
    again = run_jobs(_seeded_draw, jobs, {"offset": 2.0}, workers=2, threads=1, spark=spark)  # a new round's shared arrays
    assert [v for v, _ in again] == pytest.approx([v + 1.0 for v, _ in seq])
    with pytest.raises(Exception, match="fit 2 failed"):
        run_jobs(_fails_on_two, [1, 2, 3], None, workers=0, threads=1, spark=spark)


@pytest.mark.spark
def test_downstream_sections_identical_on_executors(spark):
    from lgsid.config import LGSIDConfig, replace
    from lgsid.evaluate.sections import evaluate_frames

    inp, sids = _inputs()
    cfg = replace(LGSIDConfig(), evaluate={"sections": ["generative", "discriminative"], "seeds": [0], "ks": [5, 10], "tiger_epochs": 1,
                                           "din_epochs": 1, "tiger_d_model": 16, "tiger_heads": 2, "max_history": 4, "torch_threads": 1,
                                           "baselines": ["popularity", "sasrec"], "workers": 1})
    local = evaluate_frames(inp, cfg, sids=dict(sids), progress=False)
    remote = evaluate_frames(inp, cfg, sids=dict(sids), progress=False, spark=spark)
    for sec in ("generative", "discriminative"):
        a, b = _strip(local[sec]), _strip(remote[sec])
        assert "skipped" not in local[sec] and set(a) >= {"sasrec", "lgsid", "rqkmeans"} - ({"sasrec"} if sec == "discriminative" else set())
        assert a == b


def _strip(sec):
    return {name: [{k: v for k, v in r.items() if k != "seconds"} for r in row["runs"]] for name, row in sec["variants"].items()}


def test_resolve_workers():
    assert resolve_workers(1, 10) == 1
    assert resolve_workers(4, 2) == 2  # never more workers than jobs
    assert resolve_workers(3, 0) == 1
    assert resolve_workers(0, 100) >= 1  # 0 = one per CPU


def test_run_jobs_keeps_job_order_and_threads_in_workers():
    jobs = [5, 1, 3]
    seq = run_jobs(_seeded_draw, jobs, {"offset": 1.0}, workers=1, threads=1)
    par = run_jobs(_seeded_draw, jobs, {"offset": 1.0}, workers=2, threads=1, cost=lambda j: j)  # submitted 5, 3, 1
    assert seq == par
    assert [t for _, t in par] == [1, 1, 1]
    assert len({v for v, _ in par}) == 3  # different seeds, different draws


def _inputs(n_items=120, n_users=40, seed=0):
    from lgsid.evaluate.variants import EvalInputs, SIDCodes
    from lgsid.tokenizer import dedup_suffix

    rng = np.random.default_rng(seed)
    town = np.arange(n_items) % 6
    items = pd.DataFrame({"item_id": [f"i{i:03d}" for i in range(n_items)], "lat": 30 + town + rng.normal(0, 0.05, n_items),
                          "lon": -100 + town + rng.normal(0, 0.05, n_items), "state": "S", "county": [f"C{t % 2}" for t in town],
                          "town": [f"T{t}" for t in town], "category_l1": [f"c{i % 4}" for i in range(n_items)], "category_l2": "x", "brand": None})
    rows = []
    for u in range(n_users):
        near = np.flatnonzero(town == u % 6)
        for j in range(int(rng.integers(3, 8))):
            rows.append((f"u{u:02d}", items["item_id"][int(rng.choice(near))], pd.Timestamp("2024-01-01") + pd.Timedelta(minutes=int(rng.integers(10**5)))))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]).drop_duplicates()
    sids = {}
    for name in ("rqkmeans", "lgsid"):
        codes = np.stack([town if name == "lgsid" else rng.integers(0, 6, n_items), rng.integers(0, 4, n_items), rng.integers(0, 4, n_items)], 1)
        sids[name] = SIDCodes(codes=codes, suffix=np.asarray(dedup_suffix(codes)), embedding_version="reference")
    return EvalInputs(items=items, interactions=inter, embeddings={}), sids


@pytest.mark.parametrize("workers", [2])
def test_downstream_sections_identical_with_worker_processes(workers):
    from lgsid.config import LGSIDConfig, replace
    from lgsid.evaluate.sections import evaluate_frames

    inp, sids = _inputs()
    base = {"sections": ["generative", "discriminative"], "seeds": [0, 1], "ks": [5, 10], "tiger_epochs": 1, "din_epochs": 1, "tiger_d_model": 16,
            "tiger_heads": 2, "max_history": 4, "torch_threads": 1, "baselines": ["popularity", "history", "sasrec"]}
    out = {}
    for w in (1, workers):
        cfg = replace(LGSIDConfig(), evaluate={**base, "workers": w})
        out[w] = evaluate_frames(inp, cfg, sids=dict(sids), progress=False)

    def strip(sec):
        return {name: [{k: v for k, v in r.items() if k != "seconds"} for r in row["runs"]] for name, row in sec["variants"].items()}

    for sec in ("generative", "discriminative"):
        assert "skipped" not in out[1][sec]
        a, b = strip(out[1][sec]), strip(out[workers][sec])
        assert list(a) == list(b)  # same rows in the same order
        assert a == b
    rows = out[1]["generative"]["variants"]
    assert {"sasrec", "rqkmeans", "lgsid", "lgsid+repeat", "lgsid+reach"} <= set(rows)
    assert [r["seed"] for r in rows["lgsid"]["runs"]] == [0, 1]
    assert set(strip(out[1]["discriminative"])) == {"popularity", "origin", "rqkmeans", "lgsid"}


def test_model_seeds_drop_to_the_first_above_multi_seed_max_items():
    from lgsid.config import LGSIDConfig, replace
    from lgsid.evaluate.sections import evaluate_frames, model_seeds

    ec = replace(LGSIDConfig(), evaluate={"seeds": [3, 1, 2], "multi_seed_max_items": 100}).evaluate
    assert model_seeds(ec, 100) == [3, 1, 2] and model_seeds(ec, 101) == [3]
    assert model_seeds(dataclasses.replace(ec, multi_seed_max_items=0), 10**7) == [3, 1, 2]  # 0 = no limit

    inp, sids = _inputs()
    n = len(inp.items)
    cfg = replace(LGSIDConfig(), evaluate={"sections": ["generative", "discriminative"], "seeds": [0, 1], "multi_seed_max_items": n - 1,
                                           "ks": [5, 10], "tiger_epochs": 1, "din_epochs": 1, "tiger_d_model": 16, "tiger_heads": 2,
                                           "max_history": 4, "torch_threads": 1, "baselines": ["popularity", "sasrec"]})
    out = evaluate_frames(inp, cfg, sids={"lgsid": sids["lgsid"]}, progress=False)
    assert out["meta"]["seeds"] == [0]
    assert [r["seed"] for r in out["generative"]["variants"]["lgsid"]["runs"]] == [0]
    assert [r["seed"] for r in out["generative"]["variants"]["sasrec"]["runs"]] == [0]
    assert [r["seed"] for r in out["discriminative"]["variants"]["lgsid"]["runs"]] == [0]
    assert "evaluate.multi_seed_max_items" in out["meta"]["notes"][0] and "seed 0 only" in out["meta"]["notes"][0]
