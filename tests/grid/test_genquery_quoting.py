"""GenQuery quoting with hostile values: never a broken query, never a widened result.

Conditions built by ``compute_to_data.grid.genquery_quote`` (the one policy both adapters use)
are read the two ways a real iRODS 5 server reads them (tests/fakes/irods_genquery_parser.py):
from a Python rule, by the GenQuery1 parser and then the catalog's SQL generator; from
python-irodsclient, by the SQL generator alone. They are evaluated against decoy values, and
rows of widened conditions are filtered exactly as the adapters filter them.
"""

from __future__ import annotations

import pytest

from compute_to_data.domain import irods_codes as irods_errors
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.grid import genquery_quote as gq
from tests.fakes.irods_catalog import KNOWN_COLUMNS
from tests.fakes.irods_genquery_parser import GenQueryError, compile_condition, parse_conditions
from tests.support.grid_factories import rule_engine_factory

HOSTILE = [
    "it's a cat.png",
    "50%_off.png",
    "a_b",
    "a%",
    "%",
    "_",
    "''",
    "'",
    "x' || like '%",
    "x' and DATA_NAME like '%",
    "a||b",
    "a&&b",
    "it's a||b",
    "back\\slash",
    "\\x27 literally",
    "trailing\\",
    "in ('a', 'b')",
    "between 'a' 'z'",
    "tab\there",
    "new\nline",
    "ünïcødé ✓",
    "[brackets] (parens) \"double\"",
]
DECOYS = ["", "x", "a", "ab", "aXb", "a%b", "50Xoff.png", "50%_off.pngX", "it's", "its a cat.png",
          "back/slash", "backXslash", "a|b", "a&b", "anything at all"]


PIPELINES = ["rule_engine", "python_irodsclient"]


def server_reads(condition: gq.Condition, pipeline: str):
    """The predicate the catalog evaluates for ``condition`` sent through ``pipeline``."""
    if pipeline == "rule_engine":  # condition text -> GenQuery1 parser -> SQL generator
        [parsed] = parse_conditions(condition.text, KNOWN_COLUMNS)
        assert parsed.column == condition.column
        return compile_condition(parsed.text)
    # python-irodsclient sends "<op> '<value>'" per column, read by the SQL generator alone
    return compile_condition(condition.text[len(condition.column) + 1 :])


def matches(condition: gq.Condition, value: str, pipeline: str = "rule_engine") -> bool:
    """What the server returns for this value, then the adapter's exact check on the row."""
    return server_reads(condition, pipeline)(value) and (condition.exact or condition.keep(value))


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("value", HOSTILE)
def test_equals_matches_exactly_the_value(value: str, pipeline: str) -> None:
    condition = gq.equals("DATA_NAME", value)
    assert matches(condition, value, pipeline)
    for other in DECOYS + [v for v in HOSTILE if v != value]:
        assert not matches(condition, other, pipeline), (value, other)


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("value", HOSTILE)
def test_under_collection_matches_the_collection_and_below_only(value: str, pipeline: str) -> None:
    collection = f"/tempZone/home/alice/{value}"
    conditions = gq.under_collection("COLL_NAME", collection, compound=pipeline == "rule_engine")
    inside = [collection, f"{collection}/sub", f"{collection}/sub/deeper/x"]
    outside = [f"/tempZone/home/alice/{d}" for d in DECOYS] + [collection + "X", collection + "_2/sub",
                                                                "/tempZone/home/alice", "/tempZone/home/alice/" + value[:-1]]
    for path in inside:
        assert any(matches(c, path, pipeline) for c in conditions), path
    for path in outside:
        if path in inside:
            continue
        assert not any(matches(c, path, pipeline) for c in conditions), (collection, path)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_one_of_matches_exactly_the_values(pipeline: str) -> None:
    values = [f"v{i}" for i in range(45)] + HOSTILE
    conditions = gq.one_of("META_DATA_ATTR_NAME", values)
    assert len([c for c in conditions if " in (" in c.text]) == 3  # 45 plain values, 20 a list
    for value in values:
        assert sum(matches(c, value, pipeline) for c in conditions) >= 1, value
    for decoy in DECOYS + ["v45", "v1 "]:
        if decoy not in values:
            assert not any(matches(c, decoy, pipeline) for c in conditions), decoy


@pytest.mark.parametrize("value", HOSTILE)
def test_no_literal_ever_holds_a_quote_or_a_backslash(value: str) -> None:
    """A doubled quote means a quote to the GenQuery1 parser but two quotes to python-irodsclient's
    pipeline; so no condition of the policy carries one (nor a backslash, an escape to LIKE)."""
    conditions = [gq.equals("DATA_NAME", value), gq.prefix("DATA_NAME", value),
                  *gq.under_collection("COLL_NAME", f"/z/{value}"), *gq.one_of("DATA_NAME", [value, "x"])]
    for condition in conditions:
        assert all("'" not in o and "\\" not in o for o in condition.operands), condition


def test_literal_refuses_what_a_pipeline_could_misread() -> None:
    assert gq.literal("50%_off") == "'50%_off'"
    for bad in ("it's", "back\\slash", "it's||x", "a|b", "new\nline"):
        with pytest.raises(gq.UnquotableValue):
            gq.literal(bad)
    assert gq.like_pattern("it's a\\b|c&d%e_f") == "it_s a_b_c_d%e_f"
    assert gq.equals("DATA_NAME", "it's").text == "DATA_NAME like 'it_s'"


def test_a_doubled_quote_reads_differently_on_the_two_pipelines() -> None:
    """Why the policy never doubles: the same text matches the name on one pipeline only."""
    doubled = "= 'it''s'"
    [parsed] = parse_conditions("DATA_NAME " + doubled, KNOWN_COLUMNS)
    assert compile_condition(parsed.text)("it's")  # GenQuery1 parser decodes it (observed)
    assert not compile_condition(doubled)("it's")  # the SQL generator alone binds "it''s"
    assert compile_condition(doubled)("it''s")


def test_the_fake_parser_reads_literals_as_the_real_server_does() -> None:
    """Observed on iRODS 5.0.2 (docs/irods-behaviour.md), reproduced by the fake."""
    [doubled] = parse_conditions("DATA_NAME = 'it''s a cat.png'", KNOWN_COLUMNS)
    assert compile_condition(doubled.text)("it's a cat.png")
    [hexed] = parse_conditions("DATA_NAME = 'it\\x27s a cat.png'", KNOWN_COLUMNS)
    assert compile_condition(hexed.text)("it's a cat.png")
    with pytest.raises(GenQueryError) as escaped:
        parse_conditions("DATA_NAME = 'it\\'s a cat.png'", KNOWN_COLUMNS)
    assert escaped.value.code == irods_errors.INPUT_ARG_NOT_WELL_FORMED_ERR
    [percent] = parse_conditions("DATA_NAME = '50%'", KNOWN_COLUMNS)
    assert compile_condition(percent.text)("50%") and not compile_condition(percent.text)("50 percent")
    [wild] = parse_conditions("DATA_NAME like '50%'", KNOWN_COLUMNS)
    assert compile_condition(wild.text)("50 percent")
    with pytest.raises(GenQueryError) as unknown:
        parse_conditions("NO_SUCH_COLUMN = 'x'", KNOWN_COLUMNS)
    assert unknown.value.code == irods_errors.NO_COLUMN_NAME_FOUND


@pytest.mark.parametrize("naive, value, decoy", [
    ("DATA_NAME = 'x' || like '%'", "x' || like '%", "anything"),  # unquoted value: a wildcard
    ("DATA_NAME like 'a_b%'", "a_b", "aXb"),  # a LIKE prefix keeps '_' as a wildcard
    ("DATA_NAME = 'it''s||x'", "it's||x", "it"),  # doubled quote, then split as a compound
    ("DATA_NAME = 'it\\'s'", "it's", "it"),  # backslash-escaped quote
])
def test_naive_quoting_would_be_caught(naive: str, value: str, decoy: str) -> None:
    """The fake is strict enough that quoting bugs show up: each naive form errors or misreads."""
    try:
        [parsed] = parse_conditions(naive, KNOWN_COLUMNS)
        predicate = compile_condition(parsed.text)
        wrong = predicate(decoy) or not predicate(value)
    except GenQueryError:
        wrong = True  # a broken query
    assert wrong
    assert matches(gq.equals("DATA_NAME", value), value) and not matches(gq.equals("DATA_NAME", value), decoy)


def test_hostile_names_through_the_rule_engine_adapter(tmp_path) -> None:
    """Objects, collections and AVUs with hostile names, next to decoys that a widened query
    would also return: every listing and lookup returns exactly the right entities."""
    setup = rule_engine_factory(tmp_path)
    g, home = setup.grid, setup.home
    names = ["it's", "50%_x", "a||b", "q' || like '%", "back\\slash", "\\x27", "in ('a')"]
    decoys = ["its", "50Xyx", "a|b", "q", "backXslash", "x27", "in (_a_)"]
    for name in names + decoys:
        setup.put(f"{home}/{name}/img {name}.png", name.encode())
        setup.put(f"{home}/{name}/sub/deep.png", b"d")
    for name in names:
        coll = f"{home}/{name}"
        flat = g.list_data_objects(coll)
        assert [o.path for o in flat] == [f"{coll}/img {name}.png"], name
        deep = g.list_data_objects(coll, recursive=True)
        assert [o.path for o in deep] == sorted([f"{coll}/img {name}.png", f"{coll}/sub/deep.png"]), name
        assert g.collection_exists(coll) and g.data_object_exists(f"{coll}/img {name}.png")
        assert g.read_data_object(f"{coll}/img {name}.png") == name.encode()
        g.apply_metadata([MetadataOperation("add", EntityType.COLLECTION, coll, AVU("c2d::task_id", name, name))])
    for name in names:
        found = g.find_collections_with_avu("c2d::task_id", name)
        assert [c.path for c in found] == [f"{home}/{name}"], name
        assert found[0].avus == (AVU("c2d::task_id", name, name),)
        under = g.find_collections_with_avu("c2d::task_id", under=f"{home}/{name}")
        assert [c.path for c in under] == [f"{home}/{name}"], name
    assert g.list_collections(f"{home}/{names[0]}") == [f"{home}/{names[0]}/sub"]
    queries = setup.server.queries  # type: ignore[attr-defined]
    assert queries and all("\\" not in conditions for _, conditions in queries)  # never a backslash sent
