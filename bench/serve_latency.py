"""Benchmark: online SIDs, request latency of ``mlflow models serve`` on the SID model (champion).

    python bench/serve_latency.py [--requests 60] [--warmup 3] [--quick]

Builds a small registered SID model in a throwaway MLflow store, without Spark: a toy catalogue
(:func:`lgsid.tokenizer.toy.toy_catalogue`) whose embeddings are the packaged encoder's embeddings of
its prompts, an HGIT tokenizer fitted on them, logged with :func:`lgsid.registry.log_sid_model` and
aliased ``champion``. Then it starts the server exactly as the README does (venv ``bin`` on ``PATH``,
``--env-manager local``, 127.0.0.1, a free port), and POSTs ``dataframe_split`` JSON to
``/invocations``, one request at a time (the latency a single caller sees, HTTP and JSON included):

* ``cold_start``: raw item rows, prompts built and embedded by the packaged encoder in the server;
* ``embedding``: item attributes + the stored embedding as float32 bytes (base64 in JSON).

Each (mode, items per request) pair gets ``--warmup`` untimed requests (the first cold-start request
loads the encoder), then ``--requests`` timed ones; the pairs are interleaved round by round so load
changes hit them alike. Prints p50 / p99 / mean milliseconds per pair and, last, one JSON line. The
server is always stopped. Items per request: 1 and 32.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

from lgsid.serving.process import free_port, stop_process_group, wait_for_ping

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SIZES = (1, 32)
MODES = ("cold_start", "embedding")
RAW = ["item_id", "name", "brand", "category_l1", "category_l2", "price", "town", "county", "state", "lat", "lon"]
FEATURES = ["lat", "lon", "state", "county", "town", "category_l2", "item_id", "category_l1", "brand"]


def build_model(root: str, n_items: int = 96):
    """Register a toy SID model as ``champion`` in ``root``; returns (cfg, items, embeddings)."""
    import mlflow
    from mlflow import MlflowClient

    from lgsid.config import load_config, replace
    from lgsid.encoder import load_encoder
    from lgsid.prompts import combine_prompt, format_content, format_location
    from lgsid.registry import log_sid_model
    from lgsid.serving.sid_model import save_artifacts, signature
    from lgsid.tokenizer import build_tokenizer
    from lgsid.tokenizer.hgit import level1_paths
    from lgsid.tokenizer.job import model_tags
    from lgsid.tokenizer.toy import toy_catalogue
    from lgsid.tracking import setup_mlflow, stage_run

    cfg = replace(load_config(None), mlflow={"tracking_uri": f"sqlite:///{root}/mlflow.db", "artifact_root": f"{root}/mlartifacts"},
                  tokenizer={"codebook_sizes": [8, 4, 4], "epochs": 2, "batch_size": 64})
    setup_mlflow(cfg)
    items, _ = toy_catalogue(n_items, 4, seed=3)
    prompts = [combine_prompt(format_content(r, cfg.prompts), format_location(r, cfg.prompts), cfg.prompts) for r in items.to_dict("records")]
    emb = load_encoder(cfg.encoder).encode(prompts)  # (N, D)
    tok = build_tokenizer(cfg.tokenizer).fit(emb, items)
    codes = tok.encode(emb, items)
    with stage_run(cfg, "tokenize", log_config=False):
        sections = cfg.to_dict()
        art = save_artifacts(os.path.join(root, "art"), tok, level1_paths(items, codes[:, 0], tok.codebook_sizes[0]), "reference",
                             sections["encoder"], sections["prompts"])
        version = log_sid_model(cfg, art, signature(int(tok.dim)), model_tags(tok, "reference"))
    MlflowClient().set_registered_model_alias(cfg.mlflow.sid_model_name, "champion", version)
    mlflow.end_run()
    return cfg, items, emb


def start_server(model_uri: str, tracking_uri: str, log_path: str, timeout: float = 300.0):
    """``mlflow models serve`` as the README runs it; returns (process, base URL) once ``/ping`` answers."""
    bin_dir = os.path.dirname(sys.executable)
    port = free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_REGISTRY_URI=tracking_uri, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    cmd = [os.path.join(bin_dir, "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_for_ping(proc, url, timeout, log_path)
    return proc, url


def payload(df, mode: str) -> bytes:
    """The request body: ``dataframe_split`` JSON (binary columns base64) with ``params={"mode": mode}``."""
    df = df.copy()
    if "embedding_f32" in df.columns:
        df["embedding_f32"] = [base64.b64encode(b).decode("ascii") for b in df["embedding_f32"]]
    split = json.loads(df.to_json(orient="split", index=False))
    return json.dumps({"dataframe_split": {"columns": split["columns"], "data": split["data"]}, "params": {"mode": mode}}).encode()


def timed_post(url: str, body: bytes, n_items: int) -> float:
    """Seconds for one POST; raises unless it answers 200 with ``n_items`` predictions."""
    req = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        out = json.loads(r.read())
    dt = time.perf_counter() - t0
    if len(out.get("predictions", [])) != n_items:
        raise RuntimeError(f"expected {n_items} predictions, got {str(out)[:200]}")
    return dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=60, help="timed requests per (mode, size) pair (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed requests per pair first (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="--requests 10 --warmup 2")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.warmup = 10, 2

    from lgsid.embedding_f32 import encode_f32
    from lgsid.tracking import tracking_uri

    with tempfile.TemporaryDirectory(prefix="lgsid-serve-bench-") as root:
        t0 = time.perf_counter()
        cfg, items, emb = build_model(root)
        build_s = time.perf_counter() - t0
        bodies = {}
        for mode in MODES:
            for n in SIZES:
                rows = items.iloc[:n]
                df = rows[RAW] if mode == "cold_start" else rows[FEATURES].assign(embedding_f32=encode_f32(emb[:n]))
                bodies[(mode, n)] = payload(df, mode)
        t0 = time.perf_counter()
        proc, url = start_server(f"models:/{cfg.mlflow.sid_model_name}@champion", tracking_uri(cfg), os.path.join(root, "serve.log"))
        start_s = time.perf_counter() - t0
        try:
            for key, body in bodies.items():
                for _ in range(args.warmup):
                    timed_post(url, body, key[1])
            times = {key: [] for key in bodies}
            for _ in range(args.requests):
                for key, body in bodies.items():
                    times[key].append(timed_post(url, body, key[1]))
        finally:
            stop_process_group(proc)

    load = os.getloadavg()[0]
    print(f"serve_latency: {len(items)}-item toy model (dim {emb.shape[1]}), built in {build_s:.1f} s; server up in {start_s:.1f} s; "
          f"{args.requests} timed requests per pair after {args.warmup} warm-up; load avg {load:.1f}")
    print(f"{'mode':<12}{'items/request':>14}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'items/s':>10}")
    result = {"requests": args.requests, "warmup": args.warmup, "server_start_s": round(start_s, 1), "load_avg": round(load, 2)}
    for (mode, n), ts in times.items():
        a = np.asarray(ts) * 1000.0
        p50, p99, mean = np.percentile(a, 50), np.percentile(a, 99), a.mean()
        print(f"{mode:<12}{n:>14}{p50:>10.1f}{p99:>10.1f}{mean:>10.1f}{n / (mean / 1000):>10.1f}")
        result[f"{mode}_{n}_p50_ms"] = round(float(p50), 2)
        result[f"{mode}_{n}_p99_ms"] = round(float(p99), 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
