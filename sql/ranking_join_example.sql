-- Ranking-team example: join training samples to the SID features *as they were* at sample time.
--
-- item_sid_features is MERGEd in place; Delta time travel (TIMESTAMP AS OF) reads the snapshot that was
-- current at a given instant, so a model trained on last week's clicks sees last week's SIDs, not today's
-- (no leakage from a later re-tokenisation). TIMESTAMP AS OF takes one constant per table reference, so
-- point-in-time joins are done per sample day (the usual training partition): one snapshot per day,
-- taken at the end of that day, then UNION ALL. Timestamps are UTC.
--
-- How to run it (tests/spark/test_ranking_sql.py runs this file on tables the pipeline's store wrote):
-- * Native Delta (delta-spark jars + its SQL extension): paste the statements into spark-sql / a notebook.
-- * Embedded default (delta-rs, no jars): Spark SQL cannot serve `TIMESTAMP AS OF`, `VERSION AS OF` or
--   DESCRIBE HISTORY there. Run the same text through lgsid.storage.as_of, which serves each
--   delta.`<path>` [TIMESTAMP|VERSION AS OF ...] reference as a temp view of that version:
--
--     from lgsid.config import load_config; from lgsid.spark import get_spark; from lgsid.storage import DeltaStore
--     from lgsid.storage.as_of import run_sql, register_as_of
--     cfg = load_config("conf/local.yaml"); store = DeltaStore(get_spark(cfg), cfg.storage)
--     for df in run_sql(store, open("sql/ranking_join_example.sql").read()): df.show()
--     # or one snapshot as a view of your own:
--     register_as_of(store, "item_sid_features", "isf_20240301", timestamp="2024-03-01 23:59:59")
--
--   A timestamp before a table's first commit is an error (as in Delta); one after its newest commit
--   reads the newest version (Delta would refuse it).
-- Paths: `lgsid-work/tables/...` is storage.root of conf/local.yaml, relative to the repository root;
-- with a metastore use the table name instead (e.g. lgsid.item_sid_features).
-- Input: training_samples(user_id, item_id, label, ts, sample_date) below is built from the pipeline's
-- interactions (every click a positive); replace it with your own samples table.

-- 0) Training samples: one row per click, partitioned by day.
CREATE OR REPLACE TEMP VIEW training_samples AS
SELECT user_id, item_id, 1 AS label, ts, CAST(ts AS DATE) AS sample_date
FROM delta.`lgsid-work/tables/interactions`;

-- 1) Which snapshots exist (version, timestamp, operation) - pick the range your training window needs.
DESCRIBE HISTORY delta.`lgsid-work/tables/item_sid_features`;

-- 2) One training day: samples of 2024-03-01 joined to the SIDs current at the end of that day.
SELECT s.user_id,
       s.item_id,
       s.label,
       s.ts,
       f.sid,
       f.sid_l1,
       f.sid_l2,
       f.sid_l3,
       f.sid_path,
       f.sid_model_version
FROM training_samples AS s
LEFT JOIN delta.`lgsid-work/tables/item_sid_features` TIMESTAMP AS OF '2024-03-01 23:59:59' AS f
  ON f.item_id = s.item_id
WHERE s.sample_date = DATE '2024-03-01';

-- 3) Several days: one time-travelled snapshot per day (generate this UNION ALL from the day list in
--    your scheduler; each branch reads the snapshot current at the end of its day).
SELECT s.*, f.sid, f.sid_l1, f.sid_l2, f.sid_l3, f.sid_model_version
FROM training_samples AS s
LEFT JOIN delta.`lgsid-work/tables/item_sid_features` TIMESTAMP AS OF '2024-03-01 23:59:59' AS f
  ON f.item_id = s.item_id
WHERE s.sample_date = DATE '2024-03-01'
UNION ALL
SELECT s.*, f.sid, f.sid_l1, f.sid_l2, f.sid_l3, f.sid_model_version
FROM training_samples AS s
LEFT JOIN delta.`lgsid-work/tables/item_sid_features` TIMESTAMP AS OF '2024-03-02 23:59:59' AS f
  ON f.item_id = s.item_id
WHERE s.sample_date = DATE '2024-03-02';

-- 4) Exact per-row point-in-time alternative without time travel: the sid_items table keeps every model
--    version's SIDs, and item_sid_features' history says when each version went live; for row-exact
--    timing join on the version that was live at s.ts (versions_live: sid_model_version, live_from, live_to,
--    built once from DESCRIBE HISTORY / the registry's alias changes; an input you provide).
SELECT s.*, si.sid, si.sid_l1, si.sid_l2, si.sid_l3, v.sid_model_version
FROM training_samples AS s
JOIN versions_live AS v
  ON s.ts >= v.live_from AND (v.live_to IS NULL OR s.ts < v.live_to)
LEFT JOIN delta.`lgsid-work/tables/sid_items` AS si
  ON si.item_id = s.item_id AND si.sid_model_version = v.sid_model_version;
