-- item_sid_features: one row per item with its semantic ID (SID) from the registered SID model.
-- Written only by `lgsid write-sids` (MERGE on item_id: matched rows updated, new rows inserted,
-- unchanged rows not touched, so a rerun commits nothing). Keep Delta history long enough for
-- point-in-time joins (see ranking_join_example.sql). Mirrors ITEM_SID_FEATURES in lgsid/tables.py.
--
-- sid        = "<sid_l1>-<sid_l2>-<sid_l3>-<sid_suffix>", e.g. "12-5-33-0"; unique per sid_model_version.
-- sid_suffix = collision suffix: 0 for the first item of a code tuple, then 1, 2, ... New items get the
--              next free suffix after the existing ones; an existing item's SID never changes within
--              a sid_model_version.
-- sid_path   = readable "area / category" of the level-1 code: the smallest area (county, else state) and the
--              category holding >= 80% of its items, with their shares when below 100% (README, "Reading sid_path").
CREATE TABLE IF NOT EXISTS item_sid_features (
  item_id           STRING    NOT NULL COMMENT 'primary key; items.item_id',
  sid_l1            INT       NOT NULL COMMENT 'level-1 (geographic) code',
  sid_l2            INT                COMMENT 'level-2 residual code',
  sid_l3            INT                COMMENT 'level-3 residual code',
  sid_suffix        INT                COMMENT 'dedup suffix among items sharing sid_l1..sid_l3',
  sid               STRING    NOT NULL COMMENT 'l1-l2-l3-suffix',
  sid_path          STRING             COMMENT 'area / category covering the items of the level-1 code, with shares (README: Reading sid_path)',
  sid_model_name    STRING    NOT NULL COMMENT 'registered MLflow model (lgsid-sid-model)',
  sid_model_version STRING    NOT NULL COMMENT 'registry version that produced the SID',
  updated_at        TIMESTAMP NOT NULL COMMENT 'when this row last changed (UTC)'
)
USING DELTA
COMMENT 'SID features per item for ranking teams [primary key: item_id]'
TBLPROPERTIES (
  'delta.logRetentionDuration' = 'interval 90 days',
  'delta.deletedFileRetentionDuration' = 'interval 90 days'
);

-- Every SID of every model version maps back to exactly one item (written by `lgsid tokenize`,
-- extended by `lgsid write-sids` for new items). Mirrors SID_ITEMS in lgsid/tables.py.
CREATE TABLE IF NOT EXISTS sid_items (
  sid_model_version STRING NOT NULL,
  sid               STRING NOT NULL,
  item_id           STRING NOT NULL,
  sid_l1            INT,
  sid_l2            INT,
  sid_l3            INT,
  sid_suffix        INT
)
USING DELTA
COMMENT 'Map from every semantic ID to its item, per SID model version [primary key: sid_model_version, sid]';
