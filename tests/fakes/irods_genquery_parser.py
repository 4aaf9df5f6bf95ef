"""GenQuery1 condition strings, read the way a real iRODS 5 server reads them.

Two stages, both taken from the iRODS sources, so that a quoting mistake in the project's code
shows up here exactly as it would on a server (docs/irods-behaviour.md and the notes in
``compute_to_data/grid/genquery_quote.py``):

1. :func:`parse_conditions` — the client-side flex/bison parser (iRODS 5): single-quoted literals
   with ``''`` for a quote and ``\\xHH`` hex escapes; any other backslash sequence is rejected
   (observed: ``\\'`` gives INPUT_ARG_NOT_WELL_FORMED_ERR); unknown columns give
   NO_COLUMN_NAME_FOUND. Each condition is re-serialized with its *decoded* literals between
   quotes (``like '{}'``, ``in ('a', 'b')``, ``= '{}' || like '{}'``), as the parser does.
2. :func:`compile_condition` — the catalog's SQL generator (``general_query.cpp``): a compound
   condition is recognised by toggling on every quote and then split at the first ``||``/``&&``
   wherever it is; a simple condition's bind value is everything between its first and last
   quote; ``in``/``between`` literals are found by toggling on quotes; the operator must be one
   of the allowed words. The result is a predicate over the column's value with SQL semantics
   (PostgreSQL ``LIKE``: ``%``, ``_`` and ``\\`` as escape; numeric columns compare as numbers).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from compute_to_data.domain.irods_codes import code_of

INPUT_ARG_NOT_WELL_FORMED_ERR = code_of("INPUT_ARG_NOT_WELL_FORMED_ERR")
NO_COLUMN_NAME_FOUND = code_of("NO_COLUMN_NAME_FOUND")
CAT_INVALID_ARGUMENT = code_of("CAT_INVALID_ARGUMENT")
CAT_SQL_ERR = code_of("CAT_SQL_ERR")


class GenQueryError(Exception):
    """A condition the server would refuse; ``code`` is the iRODS error it would return."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- stage 1: the client-side parser -------------------------------------------------------------
_KEYWORDS = {"and", "like", "not", "between", "in", "begin_of", "parent_of", "select", "where", "null"}
_OPERATORS = ("||", "&&", "!=", "<>", "<=", ">=", "=", "<", ">", "(", ")", ",")


@dataclass(frozen=True)
class Token:
    kind: str  # "str", "ident", "kw", "op"
    text: str
    position: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in " \t\n\r":
            i += 1
            continue
        if c == "'":
            start = i
            i += 1
            value: list[str] = []
            while True:
                if i >= n:
                    raise GenQueryError(INPUT_ARG_NOT_WELL_FORMED_ERR, f"unterminated string literal at position {start}")
                ch = text[i]
                if ch == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        value.append("'")
                        i += 2
                        continue
                    i += 1
                    break
                if ch == "\\":
                    hexpart = text[i + 2 : i + 4]
                    if text[i + 1 : i + 2] == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", hexpart or ""):
                        value.append(chr(int(hexpart, 16)))
                        i += 4
                        continue
                    raise GenQueryError(
                        INPUT_ARG_NOT_WELL_FORMED_ERR, f"invalid escape sequence at position {i}: {text[i:i + 2]!r}"
                    )
                value.append(ch)
                i += 1
            tokens.append(Token("str", "".join(value), start))
            continue
        matched = next((op for op in _OPERATORS if text.startswith(op, i)), None)
        if matched:
            tokens.append(Token("op", matched, i))
            i += len(matched)
            continue
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i:])
        if m:
            word = m.group(0)
            kind = "kw" if word.lower() in _KEYWORDS else "ident"
            tokens.append(Token(kind, word.lower() if kind == "kw" else word, i))
            i += len(word)
            continue
        raise GenQueryError(INPUT_ARG_NOT_WELL_FORMED_ERR, f"syntax error, unexpected character {c!r} at position {i}")
    return tokens


@dataclass(frozen=True)
class ParsedCondition:
    column: str
    text: str  # as re-serialized for the catalog, e.g. "= 'it's'" or "= 'a' || like 'a/%'"


class _Parser:
    def __init__(self, tokens: list[Token], known_columns: frozenset[str]) -> None:
        self.tokens = tokens
        self.i = 0
        self.known = known_columns

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None, text: str | None = None) -> Token:
        tok = self.peek()
        if tok is None or (kind and tok.kind != kind) or (text and tok.text != text):
            where = f"at position {tok.position}" if tok else "at end of input"
            want = text or kind or "token"
            raise GenQueryError(INPUT_ARG_NOT_WELL_FORMED_ERR, f"syntax error, expected {want} {where}")
        self.i += 1
        return tok

    def literal(self) -> str:
        return self.take("str").text

    def conditions(self) -> list[ParsedCondition]:
        result = [self.condition()]
        while self.peek() is not None:
            self.take("kw", "and")
            result.append(self.condition())
        return result

    def condition(self) -> ParsedCondition:
        column = self.take("ident").text
        if column not in self.known:
            raise GenQueryError(NO_COLUMN_NAME_FOUND, f"column [{column}] not supported")
        text = self.expression()
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.text in ("||", "&&"):
            self.i += 1
            text = f"{text} {tok.text} {self.expression()}"
        return ParsedCondition(column, text)

    def expression(self) -> str:
        tok = self.peek()
        if tok is None:
            raise GenQueryError(INPUT_ARG_NOT_WELL_FORMED_ERR, "syntax error, unexpected end of input")
        if tok.kind == "kw" and tok.text == "like":
            self.i += 1
            return f"like '{self.literal()}'"
        if tok.kind == "kw" and tok.text == "not":
            self.i += 1
            self.take("kw", "like")
            return f"not like '{self.literal()}'"
        if tok.kind == "kw" and tok.text == "between":
            self.i += 1
            low = self.literal()
            high = self.literal()
            return f"between '{low}' '{high}'"
        if tok.kind == "kw" and tok.text in ("begin_of", "parent_of"):
            self.i += 1
            return f"{tok.text} '{self.literal()}'"
        if tok.kind == "kw" and tok.text == "in":
            self.i += 1
            paren = self.peek() is not None and self.peek().text == "("
            if paren:
                self.i += 1
            values = [self.literal()]
            while (nxt := self.peek()) is not None and nxt.text == ",":
                self.i += 1
                values.append(self.literal())
            if paren:
                self.take("op", ")")
            listed = ", ".join(f"'{v}'" for v in values)
            return f"in ({listed})" if paren else f"in {listed}"
        if tok.kind == "op" and tok.text in ("=", "!=", "<>", "<", "<=", ">", ">="):
            self.i += 1
            op = "!=" if tok.text == "<>" else tok.text
            return f"{op} '{self.literal()}'"
        raise GenQueryError(INPUT_ARG_NOT_WELL_FORMED_ERR, f"syntax error, unexpected {tok.text!r} at position {tok.position}")


def parse_conditions(text: str, known_columns: frozenset[str]) -> list[ParsedCondition]:
    """Stage 1: the conditions of a GenQuery1 ``where`` clause ('' means none)."""
    tokens = tokenize(text)
    if not tokens:
        return []
    return _Parser(tokens, known_columns).conditions()


# --- stage 2: the catalog's SQL generator ------------------------------------------------------------
Predicate = Callable[[str], bool]


def _compound_specified(condition: str) -> bool:
    """``compoundConditionSpecified``: a ``||``/``&&`` outside quotes (toggling on each quote)."""
    if "||" not in condition and "&&" not in condition:
        return False
    erased = []
    quote = False
    for ch in condition:
        if ch == "'":
            quote = not quote
            erased.append(" ")
            continue
        erased.append(" " if quote else ch)
    text = "".join(erased)
    return "||" in text or "&&" in text


def _split_compound(condition: str) -> list[tuple[str, str]]:
    """``handleCompoundCondition``: split at the first ``||``/``&&`` anywhere, repeatedly."""
    parts: list[tuple[str, str]] = []
    rest = condition
    joiner = ""
    while True:
        positions = [(rest.find(sep), sep) for sep in ("||", "&&") if rest.find(sep) >= 0]
        if not positions:
            parts.append((joiner, rest))
            return parts
        at, sep = min(positions)
        parts.append((joiner, rest[:at]))
        joiner = "OR" if sep == "||" else "AND"
        rest = rest[at + 2 :]


def _toggled_literals(text: str) -> list[str]:
    """Literals found by toggling on every quote (``addInClauseToWhereForIn``/``Between``)."""
    literals = []
    start = None
    for i, ch in enumerate(text):
        if ch == "'":
            if start is None:
                start = i + 1
            else:
                literals.append(text[start:i])
                start = None
    return literals


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """PostgreSQL LIKE (default escape ``\\``) as a regular expression matching the whole value."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= len(pattern):
                raise GenQueryError(CAT_SQL_ERR, "LIKE pattern must not end with escape character")
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _compare(op: str, numeric: bool) -> Callable[[str, str], bool]:
    def cast(value: str, literal: bool) -> object:
        if not numeric:
            return value
        try:
            return int(value)
        except ValueError:
            if literal:
                raise GenQueryError(CAT_SQL_ERR, f"invalid input syntax for type bigint: {value!r}") from None
            return value

    ops = {
        "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    }
    fn = ops[op]
    return lambda value, bound: fn(cast(value, False), cast(bound, True))


def _simple(condition: str, numeric: bool) -> Predicate:
    """``insertWhere`` for one part of a condition."""
    text = condition.lstrip(" ")
    if text.startswith(("in ", "in(", "IN ", "IN(")):
        values = _toggled_literals(text)
        if not values:
            raise GenQueryError(CAT_INVALID_ARGUMENT, f"bad 'in' condition {condition!r}")
        allowed = set(values)
        if numeric:
            ints = {int(v) for v in values if v.lstrip("-").isdigit()}
            return lambda v: v in allowed or (v.lstrip("-").isdigit() and int(v) in ints)
        return lambda v: v in allowed
    if text.startswith(("between", "BETWEEN")):
        values = _toggled_literals(text)
        if len(values) != 2:
            raise GenQueryError(CAT_INVALID_ARGUMENT, f"bad 'between' condition {condition!r}")
        ge, le = _compare(">=", numeric), _compare("<=", numeric)
        return lambda v: ge(v, values[0]) and le(v, values[1])
    first = condition.find("'")
    last = condition.rfind("'")
    if first < 0 or last <= first:
        raise GenQueryError(CAT_INVALID_ARGUMENT, f"condition {condition!r} has no quoted value")
    if first > 10:
        raise GenQueryError(CAT_INVALID_ARGUMENT, f"condition {condition!r}: operator too long")
    bound = condition[first + 1 : last]
    operator = " ".join(condition[:first].split())
    residue = operator
    for word in ("begin_of", "parent_of", "not", "NOT", "between", "BETWEEN", "like", "LIKE", "in", "IN"):
        residue = residue.replace(word, " ", 1)
    if residue.strip(" <>=!"):
        raise GenQueryError(CAT_INVALID_ARGUMENT, f"condition {condition!r}: invalid operator {operator!r}")
    op = operator.lower()
    if op == "like":
        regex = like_to_regex(bound)
        return lambda v: regex.fullmatch(v) is not None
    if op == "not like":
        regex = like_to_regex(bound)
        return lambda v: regex.fullmatch(v) is None
    if op == "begin_of":
        return lambda v: bound[: len(v)] == v and len(v) > 0
    if op == "parent_of":
        parents = {bound[:i] for i, ch in enumerate(bound) if ch in "/ "} | {bound}
        return lambda v: v in parents
    if op in ("=", "!=", "<>", "<", "<=", ">", ">="):
        cmp = _compare("!=" if op == "<>" else op, numeric)
        return lambda v: cmp(v, bound)
    raise GenQueryError(CAT_INVALID_ARGUMENT, f"condition {condition!r}: operator {operator!r} not supported")


def compile_condition(condition: str, numeric: bool = False) -> Predicate:
    """Stage 2: a predicate over one column's value, as the catalog would evaluate the SQL."""
    if not _compound_specified(condition):
        return _simple(condition, numeric)
    parts = _split_compound(condition)
    # SQL precedence inside the generated parentheses: AND binds tighter than OR.
    groups: list[list[Predicate]] = [[]]
    for joiner, part in parts:
        if joiner == "OR":
            groups.append([])
        groups[-1].append(_simple(part, numeric))
    return lambda v: any(all(p(v) for p in group) for group in groups)
