"""Ingest sources (step ``ingest``, :mod:`lgsid.steps.ingest`): load items, users and interactions into Delta, validated.

``ingest.source`` picks the input:

* ``demo``: the seeded generator of :mod:`lgsid.sources.demo` (the embedded default);
* ``foursquare``: a TSMC2014 check-in file (:func:`lgsid.sources.checkins.read_foursquare`);
* ``files``: an items file + an interactions file, Parquet or CSV.

Order of work: read -> validate (:mod:`lgsid.validation`) -> in strict mode (``ingest.on_bad_rows=fail``)
raise naming the first bad rows -> min-interaction filters (imports only) -> reverse geocoding
(imports only) -> materialise all three tables -> write them. Nothing is written before every check
has passed, so a failed ingest leaves each table's previous version current. In quarantine mode
bad rows go to ``items_rejects`` / ``interactions_rejects`` (overwritten each run); every input row
is either accepted or rejected, and the summary reports the counts (plus rows removed by the
min-interaction filters, which are a documented filter, not bad rows).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lgsid.config import LGSIDConfig
from lgsid.errors import ValidationError
from lgsid.fs import is_uri

__all__ = ["run", "prepare"]


@dataclass
class Prepared:
    """Validated, ready-to-write tables plus the rejects and counts of one ingest."""

    items: object
    users: object
    interactions: object
    rejects: dict = field(default_factory=dict)  # table name -> rejects DataFrame
    metrics: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def _check_rejects(rejects: dict, strict: bool) -> dict:
    """Strict: raise on the first table with rejects. Returns reject counts per table."""
    from lgsid.validation import raise_on_rejects

    counts = {}
    for table, rej in rejects.items():
        if strict:
            raise_on_rejects(rej, table)
            counts[table] = 0
        else:
            counts[table] = rej.count()
    return counts


def _prepare_demo(spark, cfg: LGSIDConfig) -> Prepared:
    from lgsid.sources import demo
    from lgsid.validation import validate_interactions, validate_items, with_provenance

    data = demo.generate(cfg.demo)
    items, users, inter = demo.to_spark(spark, data, with_line=True)
    users = users.drop("_line")
    good_items, rej_items = validate_items(with_provenance(items, "demo items"))
    good_inter, rej_inter = validate_interactions(with_provenance(inter, "demo interactions"), good_items)
    rejects = {"items": rej_items, "interactions": rej_inter}
    counts = _check_rejects(rejects, cfg.ingest.on_bad_rows == "fail")
    return Prepared(
        items=good_items, users=users, interactions=good_inter, rejects=rejects,
        metrics={"input_items": len(data.items), "input_interactions": len(data.interactions),
                 "rejected_items": counts["items"], "rejected_interactions": counts["interactions"],
                 "towns": len(data.towns), "states": int(data.towns["state"].nunique())},
        notes=[f"demo seed={cfg.demo.seed}: {len(data.towns)} GeoNames towns in {data.towns['state'].nunique()} states"],
    )


def _finish_import(spark, cfg: LGSIDConfig, items, inter, rejects: dict, metrics: dict, notes: list) -> Prepared:
    """Shared tail of the imports: min-interaction filters, item restriction, geocoding, users."""
    from pyspark.sql import functions as F

    from lgsid.sources.checkins import filter_min_interactions, geocode_items, users_from_interactions
    from lgsid.sources.geocode import add_admin_columns

    ic = cfg.ingest
    n_inter = inter.count()
    inter_f, passes = filter_min_interactions(inter.select("user_id", "item_id", "ts"), ic.min_user_interactions, ic.min_item_interactions)
    n_items = items.count()
    if ic.min_item_interactions >= 1:
        items = items.join(inter_f.select("item_id").distinct(), "item_id", "left_semi")
    items = geocode_items(items.drop("state", "county", "town"))
    users = add_admin_columns(users_from_interactions(inter_f, items), "home_lat", "home_lon")
    items = items.withColumn("source", F.coalesce(F.col("source"), F.lit(ic.source)))
    metrics.update({"filter_passes": passes, "accepted_interactions": n_inter, "accepted_items": n_items})
    notes.append(
        f"min-interaction filters (user >= {ic.min_user_interactions}, item >= {ic.min_item_interactions}) "
        f"kept interactions {{kept_interactions}} of {n_inter} accepted, items {{kept_items}} of {n_items} accepted, in {passes} pass(es)"
    )
    return Prepared(items=items, users=users, interactions=inter_f, rejects=rejects, metrics=metrics, notes=notes)


def _prepare_foursquare(spark, cfg: LGSIDConfig) -> Prepared:
    from lgsid.sources.checkins import items_from_checkins, read_foursquare
    from lgsid.validation import require_not_empty, validate_checkins

    path = cfg.ingest.foursquare_path
    if not path:
        raise ValidationError("ingest.foursquare_path is empty; set it to a TSMC2014 .txt file (source=foursquare)")
    checkins = read_foursquare(spark, path)
    n_in = require_not_empty(checkins, f"ingest.foursquare_path {path}")
    good, rej = validate_checkins(checkins)
    empty_items = spark.createDataFrame([], "reject_reason string, source_row string, row_json string, _line long")
    rejects = {"interactions": rej, "items": empty_items}
    counts = _check_rejects({"interactions": rej}, cfg.ingest.on_bad_rows == "fail")
    counts["items"] = 0
    good = good.persist()
    items = items_from_checkins(good)
    metrics = {"input_checkins": n_in, "rejected_interactions": counts["interactions"], "rejected_items": 0}
    return _finish_import(spark, cfg, items, good, rejects, metrics, [f"foursquare: {path}"])


def _prepare_files(spark, cfg: LGSIDConfig) -> Prepared:
    from lgsid.sources.checkins import read_interactions_file, read_items_file
    from lgsid.validation import require_not_empty, validate_interactions, validate_items

    ic = cfg.ingest
    strict = ic.on_bad_rows == "fail"
    staging = cfg.storage.staging_dir if is_uri(cfg.storage.staging_dir) else os.path.abspath(cfg.storage.staging_dir)
    ci, cx = {}, {}
    items_raw = read_items_file(spark, ic.items_path, ic.csv_delimiter, ic.csv_encoding, staging, ci)
    n_items_in = require_not_empty(items_raw, f"ingest.items_path {ic.items_path}")
    good_items, rej_items = validate_items(items_raw)
    c_items = _check_rejects({"items": rej_items}, strict)
    good_items = good_items.persist()
    inter_raw = read_interactions_file(spark, ic.interactions_path, ic.csv_delimiter, ic.csv_encoding, staging, cx)
    n_inter_in = require_not_empty(inter_raw, f"ingest.interactions_path {ic.interactions_path}")
    good_inter, rej_inter = validate_interactions(inter_raw, good_items)
    c_inter = _check_rejects({"interactions": rej_inter}, strict)
    metrics = {
        "input_items": n_items_in, "input_interactions": n_inter_in,
        "rejected_items": c_items["items"], "rejected_interactions": c_inter["interactions"],
        "truncated_timestamps": ci.get("truncated_timestamps", 0) + cx.get("truncated_timestamps", 0),
        "synthesised_names": ci.get("synthesised_names", 0),
    }
    notes = [f"files: {ic.items_path} + {ic.interactions_path}"]
    if ci.get("synthesised_names"):
        why = "items have no name column" if ci.get("name_column") == "absent" else f"{ci['synthesised_names']} of {n_items_in} items have a blank name"
        notes.append(f"{why}: name = '<category> <last 6 characters of item_id>' (as for Foursquare venues)")
    for path, c in ((ic.items_path, ci), (ic.interactions_path, cx)):
        if c.get("recast_timestamp_columns"):
            notes.append(
                f"{os.path.basename(path)}: timestamp column(s) {c['recast_timestamp_columns']} read as microseconds UTC; "
                f"{c['truncated_timestamps']} value(s) had sub-microsecond digits, truncated"
            )
    rejects = {"items": rej_items, "interactions": rej_inter}
    return _finish_import(spark, cfg, good_items, good_inter, rejects, metrics, notes)


def prepare(spark, cfg: LGSIDConfig) -> Prepared:
    """Read and validate the configured source; nothing is written.

    Raises:
        ValidationError: strict mode and a bad row, empty input, a missing file or column.
    """
    src = cfg.ingest.source
    if src == "demo":
        return _prepare_demo(spark, cfg)
    if src == "foursquare":
        return _prepare_foursquare(spark, cfg)
    if src == "files":
        return _prepare_files(spark, cfg)
    raise ValueError(f"unknown ingest.source {src!r}; valid: demo, foursquare, files")
