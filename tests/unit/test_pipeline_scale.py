"""bench/pipeline_scale.py's pure parts: size parsing, the --data-plane targets, the bench-only encoder; demo input files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


@pytest.fixture(scope="module")
def bench(bench_module):
    return bench_module("pipeline_scale")


def test_parse_sizes(bench):
    assert bench.parse_sizes("10000,1e5") == [(10_000, None), (100_000, None)]
    assert bench.parse_sizes("100000:2000000, 2330000:5e7") == [(100_000, 2_000_000), (2_330_000, 50_000_000)]
    assert bench.demo_sizes(3000) == {"demo.n_items": 3000, "demo.n_users": 2000, "demo.n_interactions": 30000}
    assert bench.demo_sizes(3000, 60000)["demo.n_interactions"] == 60000


def _result(n: int, driver_gb: float, seconds: float, completed: bool = True) -> dict:
    return {"n_items": n, "completed": completed, "end_to_end_s": seconds, "driver_peak_rss_gb": driver_gb,
            "steps": {"ingest": {"rc": 0 if completed else 1, "seconds": seconds, "step_seconds": seconds}}}


def test_data_plane_targets_judge_growth_and_the_paper_size(bench):
    # 100k at 1.2 GB, 2.33M at 1.9 GB: under 2 GB, growth 1.58x > 1.5x; 6,000 s <= 2 h
    tg, na = bench.data_plane_targets([_result(100_000, 1.2, 600), _result(2_330_000, 1.9, 6000)], {})
    assert tg["every_size_completed"]["pass"]
    assert tg["driver_rss_gb_at_2330000"] == {"target": "<= 2.0", "value": 1.9, "pass": True}
    assert tg["driver_rss_growth_100000_to_2330000"]["value"] == 1.58
    assert not tg["driver_rss_growth_100000_to_2330000"]["pass"]
    assert tg["end_to_end_2.33M_s"]["pass"]
    assert any(s.startswith("no_step_super_nlogn") for s in na)
    # judged in MB, not on the rounded GB: 2,050 MB prints as 2.0 GB and is over the line
    over = {**_result(2_330_000, 2.0, 6000), "driver_peak_rss_mb": 2050}
    tg, _ = bench.data_plane_targets([{**_result(100_000, 2.0, 600), "driver_peak_rss_mb": 2000}, over], {})
    assert tg["driver_rss_gb_at_2330000"] == {"target": "<= 2.0", "value": 2.002, "pass": False}
    assert tg["driver_rss_growth_100000_to_2330000"]["value"] == 1.02


def test_data_plane_targets_not_judged_below_the_paper_size(bench):
    tg, na = bench.data_plane_targets([_result(100_000, 1.0, 600, completed=False)], {})
    assert tg["every_size_completed"] == {"target": "true", "value": False, "pass": False}
    assert "end_to_end_2.33M_s" not in tg
    assert any("2,330,000" in s for s in na) and any(s.startswith("driver_rss_growth") for s in na)


def test_random_encoder_is_local_and_loads(bench, tmp_path):
    from lgsid.config import load_config, replace
    from lgsid.encoder import load_encoder

    d = bench.build_random_encoder(str(tmp_path / "enc"), seed=3)
    cfg = replace(load_config(None), encoder={"checkpoint": d, "runtime": "torch", "cpu_bf16": "off", "max_length": 16}).encoder
    enc = load_encoder(cfg)
    v = enc.encode(["coffee shop in Tempe, Arizona", "a bakery"], batch_size=2)
    assert v.shape == (2, bench.RANDOM_ENCODER["hidden_size"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # seeded: the same config and seed give the same weights
    again = load_encoder(dataclasses.replace(cfg, checkpoint=bench.build_random_encoder(str(tmp_path / "enc2"), seed=3)))
    np.testing.assert_allclose(again.encode(["a bakery"]), v[1:], atol=1e-6)


def test_demo_input_files_are_what_ingest_reads(tmp_path):
    from lgsid.config import load_config, replace
    from lgsid.sources.demo import generate, write_input_files

    demo = generate(replace(load_config(None), demo={"n_items": 60, "n_users": 20, "n_interactions": 200, "n_towns": 6}).demo)
    items_path, inter_path = write_input_files(demo, str(tmp_path / "raw"))
    items, inter = pq.read_table(items_path), pq.read_table(inter_path)
    assert items.column_names == ["item_id", "lat", "lon", "name", "category", "parent_category", "brand", "price"]
    assert items.num_rows == 60 and inter.num_rows == len(demo.interactions)
    assert inter.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert inter.column("item_id").to_pylist() == demo.interactions["item_id"].tolist()
