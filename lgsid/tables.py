"""The table catalogue: every Delta table the pipeline reads or writes, with its primary key,
description, schema and CHECK constraints. ``sql/*.sql`` holds the equivalent DDL.

The schema strings are Spark DDL; the storage layer turns them into Arrow schemas for delta-rs.
A step writes a table through :meth:`lgsid.storage.DeltaStore.write` or ``.merge``, which conform the
DataFrame to this schema (column names, order and types) and check NOT NULL and CHECK before
anything is committed, so both backends produce the same table.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TableSpec:
    """One table of the catalogue.

    Attributes:
        name: Table (and directory) name under ``storage.root``.
        primary_key: Columns that identify a row; writers guarantee uniqueness.
        description: One line for humans; stored in the Delta metadata.
        schema: Spark DDL of the columns, in order.
        not_null: Columns that must never be null.
        checks: Named CHECK constraints (SQL boolean expressions), enforced by Delta on write.
        written_by: The step that writes it (used in "table not found" errors).
        row_group_rows: Parquet row-group size (rows) of the delta-rs backend's files, or None for
            its default (one row group per ~100 MB file). Spark splits a scan by row groups, so a
            wide table needs small ones to spread over all task slots.
    """

    name: str
    primary_key: tuple[str, ...]
    description: str
    schema: str
    not_null: tuple[str, ...] = ()
    checks: dict = field(default_factory=dict)
    written_by: str = ""
    row_group_rows: int | None = None


_LATLON = {"lat_range": "lat >= -90 AND lat <= 90", "lon_range": "lon >= -180 AND lon <= 180"}

ITEMS = TableSpec(
    name="items",
    primary_key=("item_id",),
    description="Local-life items (shops/venues) with content and location",
    schema=(
        "item_id STRING, name STRING, brand STRING, category_l1 STRING, category_l2 STRING, price DOUBLE, "
        "lat DOUBLE, lon DOUBLE, state STRING, county STRING, town STRING, address STRING, source STRING"
    ),
    not_null=("item_id", "name", "category_l2", "lat", "lon", "state", "county", "town"),
    checks=dict(_LATLON),
    written_by="ingest",
)

USERS = TableSpec(
    name="users",
    primary_key=("user_id",),
    description="Users with a home location (demo) or the centroid of their interactions (imports)",
    schema="user_id STRING, home_lat DOUBLE, home_lon DOUBLE, state STRING, county STRING, town STRING",
    not_null=("user_id",),
    written_by="ingest",
)

INTERACTIONS = TableSpec(
    name="interactions",
    primary_key=("user_id", "item_id", "ts"),
    description="User-item clicks/check-ins with timestamps",
    schema="user_id STRING, item_id STRING, ts TIMESTAMP",
    not_null=("user_id", "item_id", "ts"),
    written_by="ingest",
)

GEO_PROMPTS = TableSpec(
    name="geo_prompts",
    primary_key=("item_id",),
    description="Per-item content part, location part and combined geo prompt",
    schema=(
        "item_id STRING, content_text STRING, location_text STRING, prompt STRING, "
        "state STRING, county STRING, town STRING, lat DOUBLE, lon DOUBLE"
    ),
    not_null=("item_id", "content_text", "location_text", "prompt"),
    checks=dict(_LATLON),
    written_by="prompts",
)

NEGATIVES = TableSpec(
    name="negatives",
    primary_key=("item_id", "rank"),
    description="K mismatched candidate locations per anchor item, sorted near -> far (Eq. 1)",
    schema=(
        "item_id STRING, rank INT, cand_item_id STRING, distance_km DOUBLE, cand_location_text STRING, "
        "cand_state STRING, cand_county STRING, cand_town STRING, neg_kind STRING"
    ),
    not_null=("item_id", "rank", "cand_item_id", "distance_km"),
    checks={"rank_positive": "rank >= 1", "distance_nonneg": "distance_km >= 0"},
    written_by="negatives",
)

REWARD_LISTS = TableSpec(
    name="reward_lists",
    primary_key=("item_id",),
    description="List-wise reward-model examples: anchor content + [true location, K candidates near -> far] with soft labels (Eq. 3)",
    schema=(
        "item_id STRING, content_text STRING, prompts ARRAY<STRING>, ranks ARRAY<INT>, "
        "distance_km ARRAY<DOUBLE>, soft_labels ARRAY<FLOAT>"
    ),
    not_null=("item_id", "prompts", "soft_labels"),
    written_by="negatives",
)

GDPO_PAIRS = TableSpec(
    name="gdpo_pairs",
    primary_key=("anchor_item_id", "other_item_id", "pair_type"),
    description="D_mix = co-click (domain-collaborative) pairs U geo-constrained far pairs (Eq. 5)",
    schema=(
        "anchor_item_id STRING, other_item_id STRING, pair_type STRING, cooccur_users INT, distance_km DOUBLE"
    ),
    not_null=("anchor_item_id", "other_item_id", "pair_type"),
    checks={"pair_type_valid": "pair_type IN ('co_click', 'geo_constrained')"},
    written_by="pairs",
)

ITEM_EMBEDDINGS = TableSpec(
    name="item_embeddings",
    primary_key=("item_id", "model_version"),
    description="Item prompt embeddings keyed by encoder model version (reference or aligned)",
    schema=(
        "item_id STRING, model_name STRING, model_version STRING, embedding ARRAY<FLOAT>, dim INT, created_at TIMESTAMP, "
        "embedding_f32 BINARY, input_sha STRING"
    ),
    not_null=("item_id", "model_name", "model_version", "embedding", "dim", "embedding_f32"),
    written_by="embed",
    row_group_rows=8192,  # ~25 MB at 384-d (both copies): the SID UDF's scan splits evenly across cores
)

SID_ITEMS = TableSpec(
    name="sid_items",
    primary_key=("sid_model_version", "sid"),
    description="Map from every semantic ID to its item, per SID model version",
    schema="sid_model_version STRING, sid STRING, item_id STRING, sid_l1 INT, sid_l2 INT, sid_l3 INT, sid_suffix INT",
    not_null=("sid_model_version", "sid", "item_id"),
    written_by="tokenize",
)

ITEM_SID_FEATURES = TableSpec(
    name="item_sid_features",
    primary_key=("item_id",),
    description="SID features per item for ranking teams (MERGEd by the SID UDF; Delta history for point-in-time joins)",
    schema=(
        "item_id STRING, sid_l1 INT, sid_l2 INT, sid_l3 INT, sid_suffix INT, sid STRING, sid_path STRING, "
        "sid_model_name STRING, sid_model_version STRING, updated_at TIMESTAMP"
    ),
    not_null=("item_id", "sid_l1", "sid", "sid_model_name", "sid_model_version", "updated_at"),
    written_by="write-sids",
)

SID_HEALTH = TableSpec(
    name="sid_health",
    primary_key=("sid_model_version", "level"),
    description="Codebook health per SID model version and level, with churn against the previous version (written by every write-sids run)",
    schema=(
        "sid_model_name STRING, sid_model_version STRING, level INT, codebook_size INT, items BIGINT, usage DOUBLE, "
        "perplexity DOUBLE, collision_rate DOUBLE, churn DOUBLE, churn_items BIGINT, previous_sid_model_version STRING, "
        "updated_at TIMESTAMP"
    ),
    not_null=("sid_model_name", "sid_model_version", "level", "codebook_size", "items", "usage", "perplexity", "collision_rate", "updated_at"),
    checks={"usage_share": "usage >= 0 AND usage <= 1", "collision_share": "collision_rate >= 0 AND collision_rate <= 1",
            "churn_share": "churn IS NULL OR (churn >= 0 AND churn <= 1)"},
    written_by="write-sids",
)

REJECTS_SCHEMA = "reject_reason STRING, source_row STRING, row_json STRING, rejected_at TIMESTAMP"
"""Schema of ``<table>_rejects``: why a row was quarantined, where it came from, and the row as JSON."""

ITEMS_REJECTS = TableSpec(
    name="items_rejects",
    primary_key=("source_row",),
    description="Item input rows quarantined by ingest (ingest.on_bad_rows=quarantine), with the reason",
    schema=REJECTS_SCHEMA,
    not_null=("reject_reason", "source_row", "rejected_at"),
    written_by="ingest",
)

INTERACTIONS_REJECTS = TableSpec(
    name="interactions_rejects",
    primary_key=("source_row",),
    description="Interaction / check-in input rows quarantined by ingest (ingest.on_bad_rows=quarantine), with the reason",
    schema=REJECTS_SCHEMA,
    not_null=("reject_reason", "source_row", "rejected_at"),
    written_by="ingest",
)

CATALOGUE: dict[str, TableSpec] = {
    t.name: t
    for t in (
        ITEMS, USERS, INTERACTIONS, GEO_PROMPTS, NEGATIVES, REWARD_LISTS, GDPO_PAIRS, ITEM_EMBEDDINGS, SID_ITEMS,
        ITEM_SID_FEATURES, SID_HEALTH, ITEMS_REJECTS, INTERACTIONS_REJECTS,
    )
}


def spec(name: str) -> TableSpec:
    """The catalogue entry for ``name``; raises ``KeyError`` listing valid names."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known tables: {', '.join(sorted(CATALOGUE))}") from None
