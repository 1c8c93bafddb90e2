"""The reliability suite's tiny dataset and helpers (Phoenix-like coordinates, so geocoding is offline and fast)."""

from __future__ import annotations

import time

from lgsid.config import load_config, replace

ITEMS_CSV = """item_id,lat,lon,name,category
a1,33.4484,-112.0740,Joe's BBQ,BBQ
a2,33.4500,-112.0700,Cafe One,Coffee Shop
a3,33.5000,-112.1000,Rose Pizza,Pizza
"""
INTER_CSV = """user_id,item_id,timestamp
u1,a1,2024-01-01T10:00:00Z
u1,a2,2024-01-02T10:00:00Z
u2,a3,2024-01-03T11:00:00Z
u2,a1,2024-01-04T11:00:00Z
"""
INGEST_TABLES = ("items", "users", "interactions", "items_rejects", "interactions_rejects")


def config(root, **ingest):
    """Default config with every location under ``root`` and the filters off (tiny inputs)."""
    ingest = {"min_user_interactions": 0, "min_item_interactions": 0, **ingest}
    return replace(
        load_config(None),
        storage={"root": str(root / "tables"), "staging_dir": str(root / "staging")},
        spark={"petastorm_cache_dir": str(root / "petastorm"), "shuffle_partitions": 1},
        ingest=ingest,
    )


def write_inputs(d, items: str | bytes = ITEMS_CSV, inter: str | bytes = INTER_CSV, items_name="items.csv", inter_name="interactions.csv"):
    """Write the two input files under ``d``; returns the ``ingest`` overrides that point at them."""
    for name, data in ((items_name, items), (inter_name, inter)):
        p = d / name
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
    return {"source": "files", "items_path": str(d / items_name), "interactions_path": str(d / inter_name)}


def versions(store, tables=INGEST_TABLES) -> dict:
    return {t: store.version(t) for t in tables}


def wait_for_pause(proc, flag, what: str, timeout_s: float) -> None:
    """Wait until the child ``proc`` writes ``flag`` (it paused at ``what``); fail if it exits first or ``timeout_s`` passes."""
    deadline = time.time() + timeout_s
    while not flag.exists():
        assert proc.poll() is None, f"child exited before {what}: {proc.stdout.read().decode()[-3000:]}"
        assert time.time() < deadline, f"child never reached {what}"
        time.sleep(0.3)
