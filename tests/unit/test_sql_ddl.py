"""sql/tables.sql is the DDL twin of lgsid/tables.py: same tables, columns, types, NOT NULL, CHECKs, keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lgsid.tables import CATALOGUE

SQL = Path(__file__).resolve().parents[2] / "sql" / "tables.sql"


def _columns(schema: str) -> list[tuple[str, str]]:
    """(name, TYPE) pairs of a Spark DDL string, split on top-level commas."""
    out, depth, cur = [], 0, ""
    for ch in schema + ",":
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "," and depth == 0:
            name, typ = cur.strip().split(None, 1)
            out.append((name, typ.strip().upper()))
            cur = ""
        else:
            cur += ch
    return out


def _parse_sql(text: str) -> dict:
    """table -> {columns: [(name, TYPE)], not_null: set, comments: dict, pk: str, checks: dict, location: str}."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    tables = {}
    create = re.compile(
        r"CREATE TABLE IF NOT EXISTS lgsid\.(\w+) \((.*?)\)\s*USING DELTA\s*LOCATION '([^']*)'\s*COMMENT '((?:[^']|'')*)'\s*TBLPROPERTIES \((.*?)\);",
        re.S,
    )
    col = re.compile(r"^\s*(\w+) (.+?)( NOT NULL)? COMMENT '((?:[^']|'')*)',?$")
    for m in create.finditer(text):
        name, body, location, comment, props = m.groups()
        cols, not_null, comments = [], set(), {}
        for line in body.strip().splitlines():
            cm = col.match(line)
            assert cm, f"{name}: cannot parse column line {line!r}"
            cols.append((cm.group(1), cm.group(2).upper()))
            comments[cm.group(1)] = cm.group(4)
            if cm.group(3):
                not_null.add(cm.group(1))
        pk = re.search(r"'lgsid.primary_key' = '([^']*)'", props)
        tables[name] = {"columns": cols, "not_null": not_null, "comments": comments, "pk": pk.group(1) if pk else None,
                        "checks": {}, "location": location, "comment": comment}
    for m in re.finditer(r"ALTER TABLE lgsid\.(\w+) ADD CONSTRAINT (\w+) CHECK \((.*)\);", text):
        tables[m.group(1)]["checks"][m.group(2)] = m.group(3)
    return tables


@pytest.fixture(scope="module")
def ddl():
    return _parse_sql(SQL.read_text())


def test_every_catalogue_table_has_ddl_and_nothing_else(ddl):
    assert set(ddl) == set(CATALOGUE)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_table_ddl_matches_catalogue(ddl, name):
    ts, d = CATALOGUE[name], ddl[name]
    assert d["columns"] == _columns(ts.schema)
    assert d["not_null"] == set(ts.not_null)
    assert d["pk"] == ",".join(ts.primary_key)
    assert d["checks"] == ts.checks
    assert d["location"] == "${lgsid_root}/" + name
    assert d["comment"] == ts.description.replace("'", "''")
    assert all(d["comments"][c] for c, _ in d["columns"])  # every column documented


def test_latlon_checks_present_where_items_have_coordinates(ddl):
    for name in ("items", "geo_prompts"):
        assert "lat >= -90" in ddl[name]["checks"]["lat_range"] and "lon <= 180" in ddl[name]["checks"]["lon_range"]


def test_parser_catches_a_drifted_column():
    drifted = SQL.read_text().replace("  price DOUBLE COMMENT", "  price FLOAT COMMENT", 1)
    assert dict(_parse_sql(drifted)["items"]["columns"])["price"] == "FLOAT" != dict(_columns(CATALOGUE["items"].schema))["price"]
