"""GenQuery1 over a LocalGrid catalog: the rows a real iRODS catalog would return.

The fake ``genquery`` module sends every query here. Columns are mapped onto LocalGrid's SQLite
schema, which is only *read* (changes go through LocalGrid's public methods in the fake
callback). GenQuery's model is kept: one implicit join over every table a selected or
conditioned column lives in, a row per (object, replica) for data objects, DISTINCT rows, all
values as strings ('' for NULL), and no OR across columns. Conditions are parsed and evaluated
by :mod:`.irods_genquery_parser`, the way the server's two parsers read them.

Only column combinations this project uses are modelled; anything else raises
``NotImplementedError`` naming the combination, so a new query shape is noticed rather than
silently answered wrongly.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.irods_genquery_parser import (
    NO_COLUMN_NAME_FOUND,
    GenQueryError,
    compile_condition,
    parse_conditions,
)

_LEVEL_NAME = (
    "CASE a.level WHEN 1200 THEN 'own' WHEN 1120 THEN 'modify_object' WHEN 1050 THEN 'read_object' "
    "WHEN 1040 THEN 'read_metadata' ELSE 'null' END"
)


@dataclass(frozen=True)
class Column:
    sql: str
    families: frozenset[str]
    needs: str | None = None  # "meta" or "access": an extra join
    numeric: bool = False


def _col(sql: str, *families: str, needs: str | None = None, numeric: bool = False) -> Column:
    return Column(sql, frozenset(families), needs, numeric)


COLUMNS: dict[str, Column] = {
    # data objects (one row per replica)
    "DATA_ID": _col("d.id", "data", numeric=True),
    "DATA_NAME": _col("d.name", "data"),
    "DATA_COLL_ID": _col("d.coll_id", "data", numeric=True),
    "DATA_SIZE": _col("r.size", "data", numeric=True),
    "DATA_CHECKSUM": _col("r.checksum", "data"),
    "DATA_RESC_NAME": _col("s.name", "data"),
    "DATA_RESC_HIER": _col("s.name", "data"),
    "DATA_PATH": _col("r.phys_path", "data"),
    "DATA_REPL_NUM": _col("r.repl_num", "data", numeric=True),
    "DATA_REPL_STATUS": _col("r.good", "data", numeric=True),
    "DATA_OWNER_NAME": _col("dou.name", "data"),
    "DATA_CREATE_TIME": _col("CAST(d.created AS INTEGER)", "data", numeric=True),
    "DATA_MODIFY_TIME": _col("CAST(r.modified AS INTEGER)", "data", numeric=True),
    "META_DATA_ATTR_NAME": _col("m.attribute", "data", needs="meta"),
    "META_DATA_ATTR_VALUE": _col("m.value", "data", needs="meta"),
    "META_DATA_ATTR_UNITS": _col("m.units", "data", needs="meta"),
    "META_DATA_ATTR_ID": _col("m.id", "data", needs="meta", numeric=True),
    "DATA_ACCESS_TYPE": _col("a.level", "data", needs="access", numeric=True),
    "DATA_ACCESS_NAME": _col(_LEVEL_NAME, "data", needs="access"),
    "DATA_ACCESS_USER_ID": _col("a.user_id", "data", needs="access", numeric=True),
    # collections (also the collection of a data object)
    "COLL_ID": _col("c.id", "data", "coll", numeric=True),
    "COLL_NAME": _col("c.path", "data", "coll"),
    "COLL_PARENT_NAME": _col("COALESCE(pc.path, '/')", "data", "coll"),
    "COLL_OWNER_NAME": _col("cou.name", "data", "coll"),
    "META_COLL_ATTR_NAME": _col("m.attribute", "coll", needs="meta"),
    "META_COLL_ATTR_VALUE": _col("m.value", "coll", needs="meta"),
    "META_COLL_ATTR_UNITS": _col("m.units", "coll", needs="meta"),
    "META_COLL_ATTR_ID": _col("m.id", "coll", needs="meta", numeric=True),
    "COLL_ACCESS_TYPE": _col("a.level", "coll", needs="access", numeric=True),
    "COLL_ACCESS_NAME": _col(_LEVEL_NAME, "coll", needs="access"),
    "COLL_ACCESS_USER_ID": _col("a.user_id", "coll", needs="access", numeric=True),
    # resources (also the resource of a replica)
    "RESC_ID": _col("s.id", "data", "resc", numeric=True),
    "RESC_NAME": _col("s.name", "data", "resc"),
    "RESC_LOC": _col("s.host", "data", "resc"),
    "RESC_VAULT_PATH": _col("s.vault_path", "data", "resc"),
    "RESC_TYPE_NAME": _col("s.type_name", "data", "resc"),
    "RESC_ZONE_NAME": _col("(SELECT value FROM zone_info WHERE key = 'zone')", "resc"),
    "META_RESC_ATTR_NAME": _col("m.attribute", "resc", needs="meta"),
    "META_RESC_ATTR_VALUE": _col("m.value", "resc", needs="meta"),
    "META_RESC_ATTR_UNITS": _col("m.units", "resc", needs="meta"),
    "META_RESC_ATTR_ID": _col("m.id", "resc", needs="meta", numeric=True),
    # users; USER_NAME/USER_ID with access columns name the grantee of the ACL entry
    "USER_ID": _col("u.id", "user", numeric=True),
    "USER_NAME": _col("u.name", "user"),
    "USER_TYPE": _col("u.type", "user"),
    "USER_ZONE": _col("(SELECT value FROM zone_info WHERE key = 'zone')", "user"),
    "USER_GROUP_ID": _col("g.id", "user", needs="group", numeric=True),
    "USER_GROUP_NAME": _col("g.name", "user", needs="group"),
    "META_USER_ATTR_NAME": _col("m.attribute", "user", needs="meta"),
    "META_USER_ATTR_VALUE": _col("m.value", "user", needs="meta"),
    "META_USER_ATTR_UNITS": _col("m.units", "user", needs="meta"),
    "META_USER_ATTR_ID": _col("m.id", "user", needs="meta", numeric=True),
}
KNOWN_COLUMNS = frozenset(COLUMNS)
_PLAIN_EQUALS = re.compile(r"= '([^'\\]*)'")
_GRANTEE = {"USER_NAME": "au.name", "USER_ID": "au.id"}


def _family(names: Sequence[str]) -> str:
    if any(n.startswith(("DATA_", "META_DATA_")) for n in names):
        return "data"
    if any(n.startswith(("COLL_", "META_COLL_")) for n in names):
        return "coll"
    if any(n.startswith(("RESC_", "META_RESC_")) for n in names):
        return "resc"
    return "user"


@dataclass(frozen=True)
class QueryRecord:
    columns: tuple[str, ...]
    conditions: str
    rows: int


def run_genquery(
    catalog: Path, client_user: str, columns: Sequence[str], conditions: str, acl_policy: str = "open"
) -> list[tuple[str, ...]]:
    """Rows of ``select columns where conditions`` as the given client user sees them.

    ``acl_policy`` ``"open"`` (iRODS without a STRICT acAclPolicy) returns rows whatever the
    caller's permissions; ``"strict"`` keeps only data objects and collections the caller holds
    some permission on (``msiAclPolicy("STRICT")``).
    Raises GenQueryError with the server's code for what the server would refuse.
    """
    for name in columns:
        if name not in KNOWN_COLUMNS:
            raise GenQueryError(NO_COLUMN_NAME_FOUND, f"column [{name}] not supported")
    parsed = parse_conditions(conditions, KNOWN_COLUMNS)
    used = list(dict.fromkeys([*columns, *(p.column for p in parsed)]))
    family = _family(used)
    access_cols = any(COLUMNS[n].needs == "access" for n in used)
    exprs: dict[str, str] = {}
    needs: set[str] = set()
    for name in used:
        col = COLUMNS[name]
        if name in _GRANTEE and family in ("data", "coll"):
            if not access_cols:
                raise NotImplementedError(f"fake GenQuery: {name} with {family} columns needs access columns")
            exprs[name] = _GRANTEE[name]
            continue
        if family not in col.families:
            raise NotImplementedError(f"fake GenQuery: column {name} cannot be combined with {family} columns here")
        exprs[name] = col.sql
        if col.needs:
            needs.add(col.needs)
    sql = _from_clause(family, needs)
    select = ", ".join(f"{exprs[n]}" for n in used)
    predicates = []
    for p in parsed:
        predicates.append((used.index(p.column), compile_condition(p.text, COLUMNS[p.column].numeric)))
    # Plain equalities also go into the SQL (the rows are still checked below): the same rows, but
    # a query for one collection reads that collection, not the whole catalog (large listings).
    pushed = [(exprs[p.column], m.group(1)) for p in parsed
              if p.column not in _GRANTEE and not COLUMNS[p.column].numeric
              and (m := _PLAIN_EQUALS.fullmatch(p.text)) is not None]
    where = " WHERE " + " AND ".join(f"{expr} = ?" for expr, _ in pushed) if pushed else ""
    conn = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=30)
    try:
        raw = conn.execute(f"SELECT {select}, {_object_id(family)} FROM {sql}{where}", [v for _, v in pushed]).fetchall()
        visible = _visible_objects(conn, family, client_user) if acl_policy == "strict" else None
    finally:
        conn.close()
    width = len(columns)
    result: set[tuple[str, ...]] = set()
    for row in raw:
        if visible is not None and row[-1] is not None and row[-1] not in visible:
            continue
        values = tuple("" if v is None else str(v) for v in row[:-1])
        if all(pred(values[i]) for i, pred in predicates):
            result.add(values[:width])
    return sorted(result)


def _from_clause(family: str, needs: set[str]) -> str:
    if family == "data":
        sql = (
            "data_objects d JOIN collections c ON c.id = d.coll_id LEFT JOIN collections pc ON pc.id = c.parent_id "
            "JOIN users cou ON cou.id = c.owner_id JOIN users dou ON dou.id = d.owner_id "
            "JOIN replicas r ON r.data_id = d.id JOIN resources s ON s.id = r.resc_id"
        )
        if "meta" in needs:
            sql += " JOIN avus m ON m.entity_type = 'd' AND m.entity_id = d.id"
        if "access" in needs:
            sql += " JOIN access a ON a.obj_type = 'd' AND a.obj_id = d.id JOIN users au ON au.id = a.user_id"
        return sql
    if family == "coll":
        sql = "collections c LEFT JOIN collections pc ON pc.id = c.parent_id JOIN users cou ON cou.id = c.owner_id"
        if "meta" in needs:
            sql += " JOIN avus m ON m.entity_type = 'c' AND m.entity_id = c.id"
        if "access" in needs:
            sql += " JOIN access a ON a.obj_type = 'c' AND a.obj_id = c.id JOIN users au ON au.id = a.user_id"
        return sql
    if family == "resc":
        sql = "resources s"
        if "meta" in needs:
            sql += " JOIN avus m ON m.entity_type = 'r' AND m.entity_id = s.id"
        return sql
    sql = "users u"
    if "group" in needs:
        sql += " JOIN users g ON (g.id = u.id OR (g.name = 'public' AND u.type != 'rodsgroup'))"
    if "meta" in needs:
        sql += " JOIN avus m ON m.entity_type = 'u' AND m.entity_id = u.id"
    return sql


def _object_id(family: str) -> str:
    return {"data": "d.id", "coll": "c.id"}.get(family, "NULL")


def _visible_objects(conn: sqlite3.Connection, family: str, client_user: str) -> set[int]:
    if family not in ("data", "coll"):
        return set()
    row = conn.execute("SELECT id, type FROM users WHERE name = ?", (client_user,)).fetchone()
    if row is None:
        return set()
    kind = "d" if family == "data" else "c"
    table = "data_objects" if family == "data" else "collections"
    if row[1] == "rodsadmin":
        return {r[0] for r in conn.execute(f"SELECT id FROM {table}")}
    return {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT obj_id FROM access WHERE obj_type = ? AND level >= 1040 AND user_id IN "
            "(?, (SELECT id FROM users WHERE name = 'public'))",
            (kind, row[0]),
        )
    }
