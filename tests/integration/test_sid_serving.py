"""Online SIDs: ``mlflow models serve`` on the champion, as the README runs it, answers like ``write-sids``.

The module builds the smallest real pipeline state: toy items whose embeddings are the packaged
encoder's embeddings of their prompts (so a raw row re-encoded at serving time must land on the same
codes), ``tokenize`` (registers version 1 and, with ``bootstrap_champion``, makes it the champion) and
``write-sids`` into ``item_sid_features``. Then the README's command starts a server on 127.0.0.1:
``mlflow models serve -m models:/<name>@champion --env-manager local``, with the venv's ``bin`` on
``PATH`` (without it the server dies with ``uvicorn: not found``); the command is read from the README's
``serve-line`` block, so the README and this test cannot drift apart. Existing items are POSTed both as
raw rows (``cold_start``) and with their stored embeddings (``embedding``, binary base64-encoded as
MLflow's JSON format wants it) and must get exactly the codes ``write-sids`` wrote; new items, in
``cold_start`` mode, must get the tokenizer's codes of their encoder embeddings. The server is
always stopped (its whole process group) when the module ends.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lgsid.serving.process import free_port, stop_process_group, wait_for_ping

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[2]
N_OLD, N_NEW = 40, 6
SIGNATURE_RAW = ["item_id", "name", "brand", "category_l1", "category_l2", "price", "town", "county", "state", "lat", "lon"]


def readme_serve_command() -> list[str]:
    """The ``mlflow models serve`` argv under the README's ``serve-line`` marker (its ``PATH=...`` prefix checked)."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- serve-line.*?-->\s*```bash\n(.+?)\n```", text, re.S)
    assert m, "README.md lost its serve-line block"
    export, line = m.group(1).strip().splitlines()
    assert export.startswith("export MLFLOW_TRACKING_URI=")
    prefix = 'PATH="$PWD/.venv/bin:$PATH" '
    assert line.startswith(prefix), "the README's serve line must put the venv's bin on PATH (uvicorn)"
    argv = shlex.split(line[len(prefix):])
    assert argv[:3] == ["mlflow", "models", "serve"] and "--env-manager" in argv and "--port" in argv
    return argv


def serve_env(tracking_uri: str) -> dict:
    """The environment the README asks for: the tracking URI, and the venv's ``bin`` first on ``PATH``.

    ``mlflow`` itself is found through that ``PATH`` (as in the shell), and so is the ``uvicorn`` command
    MLflow starts the server with.
    """
    env = dict(os.environ)
    env.update({"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri,
                "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")})
    return env


def post(url: str, df: pd.DataFrame, mode: str) -> tuple[int, dict]:
    """POST ``df`` as ``dataframe_split`` JSON with ``params={"mode": mode}``; (HTTP status, decoded body)."""
    df = df.copy()
    if "embedding_f32" in df.columns:
        df["embedding_f32"] = [base64.b64encode(b).decode("ascii") for b in df["embedding_f32"]]
    split = json.loads(df.to_json(orient="split", index=False))  # NaN/None -> null
    body = json.dumps({"dataframe_split": {"columns": split["columns"], "data": split["data"]}, "params": {"mode": mode}}).encode()
    req = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def codes_of(resp: dict) -> np.ndarray:
    """(N, 3) codes of a response's predictions."""
    return pd.DataFrame(resp["predictions"])[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64)


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    """Items + encoder embeddings in Delta, tokenize (champion v1), write-sids; plus the held-out new items."""
    import torch

    from lgsid.config import load_config, replace
    from lgsid.embedding_f32 import encode_f32
    from lgsid.encoder import load_encoder
    from lgsid.prompts import combine_prompt, format_content, format_location
    from lgsid.steps import run_step
    from lgsid.storage import DeltaStore
    from lgsid.tokenizer.toy import toy_catalogue

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("serving")
    cfg = replace(
        load_config(None),
        storage={"root": str(root / "tables"), "staging_dir": str(root / "staging")},
        spark={"petastorm_cache_dir": str(root / "petastorm"), "shuffle_partitions": 1},
        mlflow={"tracking_uri": f"sqlite:///{root}/mlflow.db", "artifact_root": str(root / "mlartifacts")},
        tokenizer={"codebook_sizes": [4, 3, 2], "epochs": 2, "batch_size": 64, "geo_coverage_sample": 40, "bootstrap_champion": True},
        promote={"max_collision_rate": 1.0, "min_usage_l1": 0.1},
        sid_store={"batch_size": 64},
        prompts={"location_level": "town"},  # the town template; district-level cold start: test_sid_cold_start_district.py
    )
    items, _ = toy_catalogue(N_OLD + N_NEW, 4, seed=8)
    enc = load_encoder(cfg.encoder)
    prompt = lambda df: [combine_prompt(format_content(r, cfg.prompts), format_location(r, cfg.prompts), cfg.prompts)  # noqa: E731
                         for r in df.to_dict("records")]
    old = items.iloc[:N_OLD].reset_index(drop=True)
    new = items.iloc[N_OLD:].reset_index(drop=True)
    # encoded in the batches they are POSTed in below, so padding is the same at serving time
    emb_old, emb_new = enc.encode(prompt(old)), enc.encode(prompt(new))
    store = DeltaStore(spark, cfg.storage)
    store.write(spark.createDataFrame(old), "items")
    store.write(spark.createDataFrame(pd.DataFrame({
        "item_id": old["item_id"].to_numpy(), "model_name": "toy", "model_version": "reference", "embedding": list(emb_old),
        "dim": emb_old.shape[1], "created_at": pd.Timestamp("2026-01-01", tz="UTC"), "embedding_f32": encode_f32(emb_old), "input_sha": "toy",
    })), "item_embeddings")
    assert run_step("tokenize", spark, cfg).metrics["sid_model_version"] == "1"
    run_step("write-sids", spark, cfg)
    written = store.to_pandas("item_sid_features").set_index("item_id").loc[old["item_id"]]
    return {"cfg": cfg, "old": old, "new": new, "emb_old": emb_old, "emb_new": emb_new, "written": written}


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    """``mlflow models serve`` of the champion on a free 127.0.0.1 port; stopped (process group) at the end."""
    from lgsid.tracking import tracking_uri

    cfg = world["cfg"]
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    cmd = readme_serve_command()
    cmd[cmd.index("--port") + 1] = str(port)  # a free port instead of the README's 5001
    assert cmd[cmd.index("-m") + 1] == f"models:/{cfg.mlflow.sid_model_name}@champion"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=serve_env(tracking_uri(cfg)), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for_ping(proc, url, 240, str(log_path))
        except RuntimeError as e:
            pytest.fail(f"{e}: {log_path.read_text()[-2000:]}")
        yield url
    finally:
        stop_process_group(proc)


def test_served_codes_match_write_sids_and_cold_start(world, server):
    import mlflow

    from lgsid.embedding_f32 import encode_f32
    from lgsid.tracking import setup_mlflow

    old, new, written = world["old"], world["new"], world["written"]
    want_old = written[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64)

    # existing items, raw rows re-encoded by the served model: exactly what write-sids wrote
    status, resp = post(server, old[SIGNATURE_RAW], "cold_start")
    assert status == 200, resp
    np.testing.assert_array_equal(codes_of(resp), want_old)
    assert [p["sid_path"] for p in resp["predictions"]] == written["sid_path"].tolist()

    # existing items with their stored embeddings (binary, base64 in JSON): the same codes
    feats = old[["lat", "lon", "state", "county", "town", "category_l2", "item_id", "category_l1", "brand"]]
    status, resp = post(server, feats.assign(embedding_f32=encode_f32(world["emb_old"])), "embedding")
    assert status == 200, resp
    np.testing.assert_array_equal(codes_of(resp), want_old)

    # new items (not in any table): the champion's tokenizer codes of their encoder embeddings
    setup_mlflow(world["cfg"])
    model = mlflow.pyfunc.load_model(f"models:/{world['cfg'].mlflow.sid_model_name}@champion").unwrap_python_model()
    status, resp = post(server, new[SIGNATURE_RAW], "cold_start")
    assert status == 200, resp
    np.testing.assert_array_equal(codes_of(resp), model.tokenizer.encode(world["emb_new"], new))
    assert [p["sid_codes"] for p in resp["predictions"]] == ["-".join(map(str, c)) for c in codes_of(resp)]


def test_served_bad_requests_get_one_line_errors(world, server):
    """HTTP 400 with the model's own one-line message (after MLflow's "Error: " prefix); no predictions."""
    new = world["new"][SIGNATURE_RAW].copy()
    bad = new.assign(lat=new["lat"].where(new.index != 2, 123.0))
    status, resp = post(server, bad, "cold_start")
    assert status == 400 and "predictions" not in resp
    line = f"Error: SID model (mode 'cold_start'): field 'lat' out of range [-90, 90] in row(s) [2] (item_id ['{new['item_id'][2]}']): [123.0] (1 bad row(s) of {len(new)})"
    assert resp["message"].endswith(line)
    status, resp = post(server, new, "fast")
    assert status == 400 and resp["message"].endswith("Error: SID model: unknown param mode='fast'; expected one of ['embedding', 'cold_start']")
