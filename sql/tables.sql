-- Delta DDL of the LGSID table catalogue (kept equal to lgsid/tables.py; tests/unit/test_sql_ddl.py checks it).
-- Run with Spark SQL and Delta's jars, e.g.:
--   spark-sql --packages io.delta:delta-spark_2.13:4.0.1 \
--     --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
--     --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
--     -d lgsid_root=s3://bucket/lgsid/tables -f sql/tables.sql
-- The pipeline creates the same tables itself (lgsid.storage); this file is for catalogues and reviewers.
-- Delta adds CHECK constraints with ALTER TABLE (not inside CREATE TABLE); run this file once per new root.

CREATE SCHEMA IF NOT EXISTS lgsid;

-- items: written by `lgsid ingest`
CREATE TABLE IF NOT EXISTS lgsid.items (
  item_id STRING NOT NULL COMMENT 'Item (shop/venue) id',
  name STRING NOT NULL COMMENT 'Display name',
  brand STRING COMMENT 'Brand or chain; independents carry their own name',
  category_l1 STRING COMMENT 'Level-1 category (e.g. Food & Drink)',
  category_l2 STRING NOT NULL COMMENT 'Leaf category (e.g. BBQ, Nail Salon)',
  price DOUBLE COMMENT 'Typical spend in USD',
  lat DOUBLE NOT NULL COMMENT 'Latitude, degrees WGS84',
  lon DOUBLE NOT NULL COMMENT 'Longitude, degrees WGS84',
  state STRING NOT NULL COMMENT 'State (GeoNames admin1)',
  county STRING NOT NULL COMMENT 'County (GeoNames admin2; town name where absent)',
  town STRING NOT NULL COMMENT 'Town (GeoNames place name)',
  address STRING COMMENT 'Street address when the source has one',
  source STRING COMMENT 'demo | foursquare | files'
)
USING DELTA
LOCATION '${lgsid_root}/items'
COMMENT 'Local-life items (shops/venues) with content and location'
TBLPROPERTIES ('lgsid.primary_key' = 'item_id', 'lgsid.written_by' = 'ingest');
ALTER TABLE lgsid.items ADD CONSTRAINT lat_range CHECK (lat >= -90 AND lat <= 90);
ALTER TABLE lgsid.items ADD CONSTRAINT lon_range CHECK (lon >= -180 AND lon <= 180);

-- users: written by `lgsid ingest`
CREATE TABLE IF NOT EXISTS lgsid.users (
  user_id STRING NOT NULL COMMENT 'User id',
  home_lat DOUBLE COMMENT 'Home latitude (demo) or centroid of the interactions of the user (imports)',
  home_lon DOUBLE COMMENT 'Home longitude (demo) or centroid of the interactions of the user (imports)',
  state STRING COMMENT 'State (GeoNames admin1)',
  county STRING COMMENT 'County (GeoNames admin2; town name where absent)',
  town STRING COMMENT 'Town (GeoNames place name)'
)
USING DELTA
LOCATION '${lgsid_root}/users'
COMMENT 'Users with a home location (demo) or the centroid of their interactions (imports)'
TBLPROPERTIES ('lgsid.primary_key' = 'user_id', 'lgsid.written_by' = 'ingest');

-- interactions: written by `lgsid ingest`
CREATE TABLE IF NOT EXISTS lgsid.interactions (
  user_id STRING NOT NULL COMMENT 'User id',
  item_id STRING NOT NULL COMMENT 'Item (shop/venue) id',
  ts TIMESTAMP NOT NULL COMMENT 'Interaction time, UTC'
)
USING DELTA
LOCATION '${lgsid_root}/interactions'
COMMENT 'User-item clicks/check-ins with timestamps'
TBLPROPERTIES ('lgsid.primary_key' = 'user_id,item_id,ts', 'lgsid.written_by' = 'ingest');

-- geo_prompts: written by `lgsid prompts`
CREATE TABLE IF NOT EXISTS lgsid.geo_prompts (
  item_id STRING NOT NULL COMMENT 'Item (shop/venue) id',
  content_text STRING NOT NULL COMMENT 'Content part of the prompt (name, brand, category, price)',
  location_text STRING NOT NULL COMMENT 'Location part of the prompt (town, county, state)',
  prompt STRING NOT NULL COMMENT 'Combined geo prompt',
  state STRING COMMENT 'State (GeoNames admin1)',
  county STRING COMMENT 'County (GeoNames admin2; town name where absent)',
  town STRING COMMENT 'Town (GeoNames place name)',
  lat DOUBLE COMMENT 'Latitude, degrees WGS84',
  lon DOUBLE COMMENT 'Longitude, degrees WGS84'
)
USING DELTA
LOCATION '${lgsid_root}/geo_prompts'
COMMENT 'Per-item content part, location part and combined geo prompt'
TBLPROPERTIES ('lgsid.primary_key' = 'item_id', 'lgsid.written_by' = 'prompts');
ALTER TABLE lgsid.geo_prompts ADD CONSTRAINT lat_range CHECK (lat >= -90 AND lat <= 90);
ALTER TABLE lgsid.geo_prompts ADD CONSTRAINT lon_range CHECK (lon >= -180 AND lon <= 180);

-- negatives: written by `lgsid negatives`
CREATE TABLE IF NOT EXISTS lgsid.negatives (
  item_id STRING NOT NULL COMMENT 'Item (shop/venue) id',
  rank INT NOT NULL COMMENT '1..K, near -> far',
  cand_item_id STRING NOT NULL COMMENT 'Item whose location is the candidate',
  distance_km DOUBLE NOT NULL COMMENT 'Haversine distance in km',
  cand_location_text STRING COMMENT 'Location part of the candidate',
  cand_state STRING COMMENT 'Candidate state',
  cand_county STRING COMMENT 'Candidate county',
  cand_town STRING COMMENT 'Candidate town',
  neg_kind STRING COMMENT 'near | far'
)
USING DELTA
LOCATION '${lgsid_root}/negatives'
COMMENT 'K mismatched candidate locations per anchor item, sorted near -> far (Eq. 1)'
TBLPROPERTIES ('lgsid.primary_key' = 'item_id,rank', 'lgsid.written_by' = 'negatives');
ALTER TABLE lgsid.negatives ADD CONSTRAINT rank_positive CHECK (rank >= 1);
ALTER TABLE lgsid.negatives ADD CONSTRAINT distance_nonneg CHECK (distance_km >= 0);

-- reward_lists: written by `lgsid negatives`
CREATE TABLE IF NOT EXISTS lgsid.reward_lists (
  item_id STRING NOT NULL COMMENT 'Item (shop/venue) id',
  content_text STRING COMMENT 'Content part of the prompt (name, brand, category, price)',
  prompts ARRAY<STRING> NOT NULL COMMENT '[true prompt, then K mismatched prompts near -> far]',
  ranks ARRAY<INT> COMMENT '[0, 1..K]',
  distance_km ARRAY<DOUBLE> COMMENT 'Haversine distance in km',
  soft_labels ARRAY<FLOAT> NOT NULL COMMENT '(K - rank + 1)/(K + 1); true = 1.0'
)
USING DELTA
LOCATION '${lgsid_root}/reward_lists'
COMMENT 'List-wise reward-model examples: anchor content + [true location, K candidates near -> far] with soft labels (Eq. 3)'
TBLPROPERTIES ('lgsid.primary_key' = 'item_id', 'lgsid.written_by' = 'negatives');

-- gdpo_pairs: written by `lgsid pairs`
CREATE TABLE IF NOT EXISTS lgsid.gdpo_pairs (
  anchor_item_id STRING NOT NULL COMMENT 'Anchor item',
  other_item_id STRING NOT NULL COMMENT 'Paired item',
  pair_type STRING NOT NULL COMMENT 'co_click | geo_constrained',
  cooccur_users INT COMMENT 's(a,b): users whose history holds both items',
  distance_km DOUBLE COMMENT 'Haversine distance in km'
)
USING DELTA
LOCATION '${lgsid_root}/gdpo_pairs'
COMMENT 'D_mix = co-click (domain-collaborative) pairs U geo-constrained far pairs (Eq. 5)'
TBLPROPERTIES ('lgsid.primary_key' = 'anchor_item_id,other_item_id,pair_type', 'lgsid.written_by' = 'pairs');
ALTER TABLE lgsid.gdpo_pairs ADD CONSTRAINT pair_type_valid CHECK (pair_type IN ('co_click', 'geo_constrained'));

-- item_embeddings: written by `lgsid embed`
CREATE TABLE IF NOT EXISTS lgsid.item_embeddings (
  item_id STRING NOT NULL COMMENT 'Item (shop/venue) id',
  model_name STRING NOT NULL COMMENT 'Encoder model name',
  model_version STRING NOT NULL COMMENT 'reference | aligned-<N>',
  embedding ARRAY<FLOAT> NOT NULL COMMENT 'Prompt embedding',
  dim INT NOT NULL COMMENT 'Embedding dimension',
  created_at TIMESTAMP COMMENT 'When the row was written',
  embedding_f32 BINARY NOT NULL COMMENT 'The same vector as little-endian float32 bytes (4 * dim); input of the SID Spark UDF. Tables written before it existed get it appended (nullable) by the next write',
  input_sha STRING COMMENT 'SHA-256 of the prompt and the encoder settings (lgsid.embed.input_sha): a rerun re-embeds only rows whose input_sha changed. Null on rows written before the column existed'
)
USING DELTA
LOCATION '${lgsid_root}/item_embeddings'
COMMENT 'Item prompt embeddings keyed by encoder model version (reference or aligned)'
TBLPROPERTIES ('lgsid.primary_key' = 'item_id,model_version', 'lgsid.written_by' = 'embed');

-- sid_items: written by `lgsid tokenize`
CREATE TABLE IF NOT EXISTS lgsid.sid_items (
  sid_model_version STRING NOT NULL COMMENT 'SID model (registry) version',
  sid STRING NOT NULL COMMENT 'Semantic ID string',
  item_id STRING NOT NULL COMMENT 'Item (shop/venue) id',
  sid_l1 INT COMMENT 'Level-1 code',
  sid_l2 INT COMMENT 'Level-2 code',
  sid_l3 INT COMMENT 'Level-3 code',
  sid_suffix INT COMMENT 'Dedup suffix'
)
USING DELTA
LOCATION '${lgsid_root}/sid_items'
COMMENT 'Map from every semantic ID to its item, per SID model version'
TBLPROPERTIES ('lgsid.primary_key' = 'sid_model_version,sid', 'lgsid.written_by' = 'tokenize');

-- item_sid_features: written by `lgsid write-sids`
CREATE TABLE IF NOT EXISTS lgsid.item_sid_features (
  item_id STRING NOT NULL COMMENT 'Item (shop/venue) id',
  sid_l1 INT NOT NULL COMMENT 'Level-1 code',
  sid_l2 INT COMMENT 'Level-2 code',
  sid_l3 INT COMMENT 'Level-3 code',
  sid_suffix INT COMMENT 'Dedup suffix',
  sid STRING NOT NULL COMMENT 'Semantic ID string',
  sid_path STRING COMMENT 'Area / category covering the items of the level-1 code, with shares (README: Reading sid_path)',
  sid_model_name STRING NOT NULL COMMENT 'Registered SID model name',
  sid_model_version STRING NOT NULL COMMENT 'SID model (registry) version',
  updated_at TIMESTAMP NOT NULL COMMENT 'When the SID was written'
)
USING DELTA
LOCATION '${lgsid_root}/item_sid_features'
COMMENT 'SID features per item for ranking teams (MERGEd by the SID UDF; Delta history for point-in-time joins)'
TBLPROPERTIES ('lgsid.primary_key' = 'item_id', 'lgsid.written_by' = 'write-sids');

-- sid_health: written by `lgsid write-sids`
CREATE TABLE IF NOT EXISTS lgsid.sid_health (
  sid_model_name STRING NOT NULL COMMENT 'Registered SID model name',
  sid_model_version STRING NOT NULL COMMENT 'SID model (registry) version',
  level INT NOT NULL COMMENT 'Code level (1 = geographic level-1 code)',
  codebook_size INT NOT NULL COMMENT 'Codes K at this level',
  items BIGINT NOT NULL COMMENT 'Items coded by this write-sids run',
  usage DOUBLE NOT NULL COMMENT 'Share of the K codes used by at least one item',
  perplexity DOUBLE NOT NULL COMMENT 'exp(entropy) of the code distribution (K = uniform, 1 = collapsed)',
  collision_rate DOUBLE NOT NULL COMMENT 'Share of items whose code prefix up to this level another item shares',
  churn DOUBLE COMMENT 'Share of common items whose prefix up to this level changed against the previous version (null: none)',
  churn_items BIGINT COMMENT 'Items both versions coded (the churn denominator)',
  previous_sid_model_version STRING COMMENT 'Version churn is measured against: the highest lower version with sid_items rows',
  updated_at TIMESTAMP NOT NULL COMMENT 'When the row was written'
)
USING DELTA
LOCATION '${lgsid_root}/sid_health'
COMMENT 'Codebook health per SID model version and level, with churn against the previous version (written by every write-sids run)'
TBLPROPERTIES ('lgsid.primary_key' = 'sid_model_version,level', 'lgsid.written_by' = 'write-sids');
ALTER TABLE lgsid.sid_health ADD CONSTRAINT usage_share CHECK (usage >= 0 AND usage <= 1);
ALTER TABLE lgsid.sid_health ADD CONSTRAINT collision_share CHECK (collision_rate >= 0 AND collision_rate <= 1);
ALTER TABLE lgsid.sid_health ADD CONSTRAINT churn_share CHECK (churn IS NULL OR (churn >= 0 AND churn <= 1));

-- items_rejects: written by `lgsid ingest`
CREATE TABLE IF NOT EXISTS lgsid.items_rejects (
  reject_reason STRING NOT NULL COMMENT 'Why the row was quarantined (names the column)',
  source_row STRING NOT NULL COMMENT 'Where the row came from (file:line N)',
  row_json STRING COMMENT 'The raw input row as JSON',
  rejected_at TIMESTAMP NOT NULL COMMENT 'When ingest rejected it'
)
USING DELTA
LOCATION '${lgsid_root}/items_rejects'
COMMENT 'Item input rows quarantined by ingest (ingest.on_bad_rows=quarantine), with the reason'
TBLPROPERTIES ('lgsid.primary_key' = 'source_row', 'lgsid.written_by' = 'ingest');

-- interactions_rejects: written by `lgsid ingest`
CREATE TABLE IF NOT EXISTS lgsid.interactions_rejects (
  reject_reason STRING NOT NULL COMMENT 'Why the row was quarantined (names the column)',
  source_row STRING NOT NULL COMMENT 'Where the row came from (file:line N)',
  row_json STRING COMMENT 'The raw input row as JSON',
  rejected_at TIMESTAMP NOT NULL COMMENT 'When ingest rejected it'
)
USING DELTA
LOCATION '${lgsid_root}/interactions_rejects'
COMMENT 'Interaction / check-in input rows quarantined by ingest (ingest.on_bad_rows=quarantine), with the reason'
TBLPROPERTIES ('lgsid.primary_key' = 'source_row', 'lgsid.written_by' = 'ingest');
