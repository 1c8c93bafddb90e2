"""item_embeddings.input_sha: what a rerun of `lgsid embed` re-embeds is decided by the input, not by a recomputed vector."""

import hashlib

import pytest
from pyspark.sql import functions as F

from lgsid.config import EncoderConfig
from lgsid.embed import INPUT_SHA, encoder_key, input_sha, prompts_to_embed

pytestmark = pytest.mark.spark


def test_input_sha_by_hand(spark):
    key = encoder_key(EncoderConfig(pooling="mean", max_length=64, normalize=True), "all-MiniLM-L6-v2", "reference")
    assert key == "all-MiniLM-L6-v2|reference|pooling=mean|max_length=64|normalize=True"
    got = spark.createDataFrame([("Corner Cafe; located in Tempe",)], "prompt STRING").select(input_sha(F.col("prompt"), key)).first()[0]
    assert got == hashlib.sha256(("Corner Cafe; located in Tempe" + "\x1f" + key).encode()).hexdigest()
    # what shapes the vector changes the key; precision, batch size and device do not
    assert encoder_key(EncoderConfig(max_length=32), "m", "reference") != encoder_key(EncoderConfig(max_length=64), "m", "reference")
    assert encoder_key(EncoderConfig(pooling="cls"), "m", "reference") != encoder_key(EncoderConfig(pooling="mean"), "m", "reference")
    assert encoder_key(EncoderConfig(), "m", "aligned-2") != encoder_key(EncoderConfig(), "m", "aligned-3")
    assert encoder_key(EncoderConfig(cpu_bf16="on", batch_size=8), "m", "reference") == encoder_key(EncoderConfig(cpu_bf16="off", batch_size=64), "m", "reference")


def test_prompts_to_embed_keeps_new_changed_and_legacy_rows(spark):
    prompts = spark.createDataFrame(
        [("a", "p-a", "h-a"), ("b", "p-b", "h-b2"), ("c", "p-c", "h-c"), ("d", "p-d", "h-d")], f"item_id STRING, prompt STRING, {INPUT_SHA} STRING",
    )
    old = spark.createDataFrame(
        [("a", "h-a"), ("b", "h-b1"), ("c", None)], f"item_id STRING, {INPUT_SHA} STRING",
    )  # a unchanged, b changed, c written before input_sha existed, d new
    got = sorted(r["item_id"] for r in prompts_to_embed(prompts, old).collect())
    assert got == ["b", "c", "d"]
    assert prompts_to_embed(prompts, old).columns == prompts.columns
    assert prompts_to_embed(prompts, None).count() == 4  # no table yet
    assert prompts_to_embed(prompts, old.drop(INPUT_SHA)).count() == 4  # a table from before the column: all re-embedded once
