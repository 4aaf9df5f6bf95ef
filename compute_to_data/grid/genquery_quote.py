"""Safe GenQuery (GenQuery1) conditions for values that come from users: paths, names, AVUs.

A condition string goes through two parsers on a real server, and both must read a hostile
value as one literal that matches exactly what it should and never more:

1. the client-side GenQuery1 parser (flex/bison since iRODS 5): single-quoted literals, a quote
   inside written ``''`` (observed), ``\\xNN`` hex escapes (observed: ``\\x27`` is a quote) and
   other backslash sequences rejected (observed: ``\\'`` -> INPUT_ARG_NOT_WELL_FORMED_ERR);
2. the catalog's SQL generator (``general_query.cpp``), which receives each condition
   re-serialized with the *decoded* value between quotes and then: takes the text between the
   first and the last quote as the bind variable (so ``= 'it's'`` still works), splits a
   compound condition at the first ``||``/``&&`` *anywhere* once it has decided (by toggling on
   every quote) that one appears outside quotes, and reads ``in (...)`` lists by toggling on
   every quote. On PostgreSQL and MySQL, ``LIKE`` treats ``\\`` as an escape character.

So a value is used verbatim only where none of that can misread it:

* ``=`` (:func:`equals`): any value without a backslash or control character, and without a
  quote *together with* ``|``/``&`` (which could fake a compound condition). Quotes are doubled.
* ``in`` lists, ``||`` compounds: only "plain" values (no quote, backslash, ``|``, ``&`` or
  control character).
* Anything else is matched with ``like`` and a pattern in which every such character is
  replaced by ``_`` (any one character). ``%`` and ``_`` of the value itself stay as they are:
  they can only *widen* a LIKE match, never narrow it. A widened condition is marked
  ``exact=False`` and the caller filters the rows in Python (:meth:`Condition.keep`), so a
  hostile name neither breaks the query nor widens its result. LIKE escapes are never used:
  whether ``\\%`` survives both parsers is not documented, and the answer differs per database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

# Characters that make a value unusable verbatim somewhere in the pipeline described above.
_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}
_NOT_PLAIN = {"'", "\\", "|", "&"} | _CONTROL
_LIKE_REPLACED = _NOT_PLAIN
#: Longest literal list put in one ``in (...)``: the catalog copies each condition into a
#: fixed-size buffer and binds every literal as a variable, so lists are kept short.
IN_CHUNK = 20


class UnquotableValue(ValueError):
    """The value cannot be written as an exact literal; use :func:`equals` (it falls back)."""


def is_plain(value: str) -> bool:
    """True when ``value`` can appear verbatim in any condition form (``=``, ``in``, ``||``)."""
    return not any(c in _NOT_PLAIN for c in value)


def equals_is_exact(value: str) -> bool:
    """True when ``COLUMN = 'value'`` (quotes doubled) matches exactly ``value``."""
    if "\\" in value or any(c in _CONTROL for c in value):
        return False
    if "'" in value and ("|" in value or "&" in value):
        return False
    return True


def literal(value: str) -> str:
    """``'value'`` with single quotes doubled, for ``=``; UnquotableValue when unsafe there."""
    if not isinstance(value, str):
        raise TypeError(f"GenQuery values are strings, not {type(value).__name__}")
    if not equals_is_exact(value):
        raise UnquotableValue(f"{value!r} cannot be an exact GenQuery literal")
    return "'" + value.replace("'", "''") + "'"


def plain_literal(value: str) -> str:
    """``'value'`` for ``in`` lists and ``||`` compounds; UnquotableValue unless :func:`is_plain`."""
    if not is_plain(value):
        raise UnquotableValue(f"{value!r} cannot be used in an 'in' list or a compound condition")
    return "'" + value + "'"


def like_pattern(value: str) -> str:
    """The value with every character the parsers could misread replaced by ``_``.

    The result matches ``value`` itself (``_`` matches any one character, and ``%``/``_`` left
    from the value only widen), contains no quote or backslash, and so needs no escaping.
    """
    return "".join("_" if c in _LIKE_REPLACED else c for c in value)


@dataclass(frozen=True)
class Condition:
    """One GenQuery condition (``COLUMN op ...``) and whether its rows need a Python check.

    ``column`` is the column the condition constrains; ``keep(row_value)`` is the exact test the
    rows must pass when ``exact`` is False (always safe to apply).
    """

    text: str
    column: str
    exact: bool
    test: Callable[[str], bool] = field(compare=False, repr=False)

    def keep(self, value: str) -> bool:
        return self.test(value)


def equals(column: str, value: str) -> Condition:
    """``COLUMN = 'value'`` when that is exact, else a ``like`` superset to filter in Python."""
    def test(v: str, expected: str = value) -> bool:
        return v == expected

    if equals_is_exact(value):
        return Condition(f"{column} = {literal(value)}", column, True, test)
    return Condition(f"{column} like '{like_pattern(value)}'", column, False, test)


def prefix(column: str, value: str) -> Condition:
    """Values starting with ``value`` (``like 'value%'``); rows to be filtered unless exact."""
    def test(v: str, start: str = value) -> bool:
        return v.startswith(start)

    pattern = like_pattern(value)
    exact = pattern == value and "%" not in value and "_" not in value
    return Condition(f"{column} like '{pattern}%'", column, exact, test)


def under_collection(column: str, collection: str, include_self: bool = True) -> list[Condition]:
    """Conditions whose union is: ``collection`` itself (if asked) and everything below it.

    One condition (``= 'X' || like 'X/%'``) when ``collection`` is plain, else one condition per
    part, each safe on its own; the caller runs one query per condition and filters every row
    with :meth:`Condition.keep` (``%``/``_`` in the path widen the ``like``).
    """
    collection = collection.rstrip("/") or "/"
    below = collection + "/" if collection != "/" else "/"

    def test(v: str) -> bool:
        return (include_self and v == collection) or (v.startswith(below) and v != collection)

    pattern = like_pattern(below) + "%"
    if include_self and is_plain(collection):
        text = f"{column} = {plain_literal(collection)} || like '{pattern}'"
        return [Condition(text, column, False, test)]
    conditions = [Condition(f"{column} like '{pattern}'", column, False, test)]
    if include_self:
        exact = equals(column, collection)
        conditions.insert(0, Condition(exact.text, column, False, test))
    return conditions


def one_of(column: str, values: Iterable[str]) -> list[Condition]:
    """Conditions whose union matches exactly ``values``: ``in`` lists of plain values (in chunks)
    and one :func:`equals` per other value. Rows must be filtered with ``keep`` when not exact."""
    wanted = list(dict.fromkeys(values))
    allowed = frozenset(wanted)

    def test(v: str) -> bool:
        return v in allowed

    plain = [v for v in wanted if is_plain(v)]
    other = [v for v in wanted if not is_plain(v)]
    conditions: list[Condition] = []
    for start in range(0, len(plain), IN_CHUNK):
        chunk = plain[start : start + IN_CHUNK]
        if len(chunk) == 1:
            conditions.append(Condition(f"{column} = {plain_literal(chunk[0])}", column, True, test))
        else:
            listed = ", ".join(plain_literal(v) for v in chunk)
            conditions.append(Condition(f"{column} in ({listed})", column, True, test))
    for value in other:
        single = equals(column, value)
        conditions.append(Condition(single.text, column, single.exact, test))
    return conditions


def join(conditions: Sequence[Condition | str]) -> str:
    """``a and b and c`` (GenQuery1 has no OR across columns)."""
    return " and ".join(c.text if isinstance(c, Condition) else c for c in conditions if c)


def rows_passing(rows: Iterable[dict[str, str]], conditions: Sequence[Condition]) -> list[dict[str, str]]:
    """Rows (``AS_DICT``) that pass the exact test of every non-exact condition."""
    checks = [c for c in conditions if not c.exact]
    return [r for r in rows if all(c.keep(r[c.column]) for c in checks)]
