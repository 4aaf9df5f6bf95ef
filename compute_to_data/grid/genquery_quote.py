"""Safe GenQuery (GenQuery1) conditions for values that come from users: paths, names, AVUs.

One quoting policy for both iRODS adapters. A condition reaches the catalog by one of two
pipelines, and a hostile value must read as one literal that matches exactly what it should,
and never more, on either:

1. from a Python rule (``genquery.Query`` -> ``msiMakeGenQuery``), the condition *text* first
   goes through the GenQuery1 parser (flex/bison since iRODS 5): single-quoted literals, a quote
   inside written ``''`` or ``\\x27`` (observed), any other backslash sequence rejected
   (observed: ``\\'`` -> INPUT_ARG_NOT_WELL_FORMED_ERR); the parser hands each condition on
   re-serialized with the *decoded* value between quotes;
2. from python-irodsclient, each condition travels as ``"<op> '<value>'"`` inside the GenQuery
   request, which no such parser reads (iRODS sources; not observed on a server): a doubled
   quote would stay doubled.

Both then meet the catalog's SQL generator (``general_query.cpp``), which takes the text between
the first and the last quote as the bind variable, splits a compound condition at the first
``||``/``&&`` *anywhere* once it has decided (by toggling on every quote) that one appears
outside quotes, and reads ``in (...)`` lists by toggling on every quote. On PostgreSQL and
MySQL, ``LIKE`` treats ``\\`` as an escape character.

Since a quote means different things on the two pipelines, no literal ever contains one:

* a "plain" value (no quote, backslash, ``|``, ``&`` or control character) is used verbatim in
  ``=``, ``in`` lists and ``||`` compounds; ``%`` and ``_`` are literal there (observed for ``=``);
* any other value is matched with ``like`` and a pattern in which every such character is
  replaced by ``_`` (any one character). ``%`` and ``_`` of the value itself stay as they are:
  they can only *widen* a LIKE match, never narrow it. A widened condition is marked
  ``exact=False`` and the caller filters the rows in Python (:meth:`Condition.keep`), so a
  hostile name neither breaks the query nor widens its result. LIKE escapes are never used:
  whether ``\\%`` survives both pipelines is not documented, and the answer differs per database.

:class:`Condition` keeps the operator and operands apart so that the python-irodsclient adapter
builds its criteria from the same decision the rule-engine adapter writes as text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from compute_to_data.domain.catalog import AVUCondition

# Characters that make a value unusable verbatim somewhere in the pipelines described above.
_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}
_NOT_PLAIN = {"'", "\\", "|", "&"} | _CONTROL
#: Longest literal list put in one ``in (...)``: the catalog copies each condition into a
#: fixed-size buffer and binds every literal as a variable, so lists are kept short.
IN_CHUNK = 20

EQUALS, LIKE, IN, EQUALS_OR_LIKE = "=", "like", "in", "= || like"


class UnquotableValue(ValueError):
    """The value cannot be written as an exact literal; use :func:`equals` (it falls back)."""


def is_plain(value: str) -> bool:
    """True when ``value`` can appear verbatim in any condition form (``=``, ``in``, ``||``)."""
    return not any(c in _NOT_PLAIN for c in value)


def _string(value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"GenQuery values are strings, not {type(value).__name__}")
    return value


def literal(value: str) -> str:
    """``'value'`` for ``=``, ``in`` lists and ``||`` compounds; UnquotableValue unless plain."""
    if not is_plain(_string(value)):
        raise UnquotableValue(f"{value!r} cannot be an exact GenQuery literal")
    return "'" + value + "'"


def like_pattern(value: str) -> str:
    """The value with every character the parsers could misread replaced by ``_``.

    The result matches ``value`` itself (``_`` matches any one character, and ``%``/``_`` left
    from the value only widen), contains no quote or backslash, and so needs no escaping.
    """
    return "".join("_" if c in _NOT_PLAIN else c for c in value)


@dataclass(frozen=True)
class Condition:
    """One GenQuery condition on ``column`` and whether its rows need a Python check.

    ``operator`` is ``=``, ``like``, ``in`` or ``= || like`` (a compound: ``operands`` holds the
    value and the pattern); every operand is safe between single quotes. ``keep(row_value)`` is
    the exact test the rows must pass when ``exact`` is False (always safe to apply).
    """

    column: str
    operator: str
    operands: tuple[str, ...]
    exact: bool
    test: Callable[[str], bool] = field(compare=False, repr=False)

    @property
    def text(self) -> str:
        """The condition as GenQuery1 text, e.g. ``COLL_NAME = '/z/a' || like '/z/a/%'``."""
        quoted = [f"'{v}'" for v in self.operands]
        if self.operator == IN:
            return f"{self.column} in ({', '.join(quoted)})"
        if self.operator == EQUALS_OR_LIKE:
            return f"{self.column} = {quoted[0]} || like {quoted[1]}"
        return f"{self.column} {self.operator} {quoted[0]}"

    @property
    def operand(self) -> str:
        """The single operand of an ``=`` or ``like`` condition."""
        if len(self.operands) != 1:
            raise ValueError(f"a {self.operator!r} condition has {len(self.operands)} operands")
        return self.operands[0]

    def keep(self, value: str) -> bool:
        return self.test(value)


def equals(column: str, value: str) -> Condition:
    """``COLUMN = 'value'`` when that is exact, else a ``like`` superset to filter in Python."""
    def test(v: str, expected: str = value) -> bool:
        return v == expected

    if is_plain(_string(value)):
        return Condition(column, EQUALS, (value,), True, test)
    return Condition(column, LIKE, (like_pattern(value),), False, test)


def prefix(column: str, value: str) -> Condition:
    """Values starting with ``value`` (``like 'value%'``); rows to be filtered unless exact."""
    def test(v: str, start: str = value) -> bool:
        return v.startswith(start)

    pattern = like_pattern(_string(value))
    exact = pattern == value and "%" not in value and "_" not in value
    return Condition(column, LIKE, (pattern + "%",), exact, test)


def under_collection(column: str, collection: str, include_self: bool = True, compound: bool = True) -> list[Condition]:
    """Conditions whose union is: ``collection`` itself (if asked) and everything below it.

    One condition (``= 'X' || like 'X/%'``) when ``collection`` is plain and ``compound`` is
    allowed (python-irodsclient cannot send one), else one condition per part, each safe on its
    own; the caller runs one query per condition and filters every row with
    :meth:`Condition.keep` (``%``/``_`` in the path widen the ``like``).
    """
    collection = collection.rstrip("/") or "/"
    below = collection + "/" if collection != "/" else "/"

    def test(v: str) -> bool:
        return (include_self and v == collection) or (v.startswith(below) and v != collection)

    pattern = like_pattern(below) + "%"
    if include_self and compound and is_plain(collection):
        return [Condition(column, EQUALS_OR_LIKE, (collection, pattern), False, test)]
    conditions = [Condition(column, LIKE, (pattern,), False, test)]
    if include_self:
        itself = equals(column, collection)
        conditions.insert(0, Condition(column, itself.operator, itself.operands, False, test))
    return conditions


def one_of(column: str, values: Iterable[str], chunk: int = IN_CHUNK) -> list[Condition]:
    """Conditions whose union matches exactly ``values``: ``in`` lists of plain values (in
    chunks of ``chunk``) and one :func:`equals` per other value. Rows must be filtered with
    ``keep`` when not exact."""
    wanted = list(dict.fromkeys(_string(v) for v in values))
    allowed = frozenset(wanted)

    def test(v: str) -> bool:
        return v in allowed

    plain = [v for v in wanted if is_plain(v)]
    other = [v for v in wanted if not is_plain(v)]
    conditions: list[Condition] = []
    for start in range(0, len(plain), chunk):
        part = tuple(plain[start : start + chunk])
        operator = EQUALS if len(part) == 1 else IN
        conditions.append(Condition(column, operator, part, True, test))
    for value in other:
        single = equals(column, value)
        conditions.append(Condition(column, single.operator, single.operands, single.exact, test))
    return conditions


def join(conditions: Sequence[Condition | str]) -> str:
    """``a and b and c`` (GenQuery1 has no OR across columns)."""
    return " and ".join(c.text if isinstance(c, Condition) else c for c in conditions if c)


#: the data-object AVU columns an ``inputs.where`` condition is written on
DATA_AVU_COLUMNS = ("META_DATA_ATTR_NAME", "META_DATA_ATTR_VALUE", "META_DATA_ATTR_UNITS")


def avu_condition(condition: AVUCondition, columns: Sequence[str] = DATA_AVU_COLUMNS) -> list[Condition]:
    """The GenQuery conditions (and-ed) that select the AVUs able to meet ``condition``.

    Always the attribute name; the units when given (and not empty); the value only for a
    string ``=``. Every other comparison is made on the rows with :meth:`AVUCondition.holds`:
    the catalog keeps AVU values as text, so it would compare numbers as strings (``'10' <
    '9'``), and its database collation orders text differently from the code-point order the
    same condition has on LocalGrid. The caller selects the value and units columns and keeps
    only rows for which ``condition.holds(value, units)``: that is exact on every adapter, and
    the query still reads only the AVUs of one attribute.
    """
    name, value, units = columns
    conditions = [equals(name, condition.attribute)]
    if condition.units:
        conditions.append(equals(units, condition.units))
    if condition.op == "=" and isinstance(condition.value, str):
        conditions.append(equals(value, condition.value))
    return conditions
