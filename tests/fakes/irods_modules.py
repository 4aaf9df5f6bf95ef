"""Fake ``genquery``, ``session_vars`` and ``irods_types`` modules of the Python rule engine plugin.

:func:`install` puts them into ``sys.modules`` under their real names, so code written for the
server (``import genquery`` inside a method) runs unchanged in tests. They hold no state: every
call goes through the ``callback`` (or ``rei``) handed to them, which the fake server backs with
a LocalGrid catalog.

``genquery.Query`` mirrors the plugin's: it builds the query with ``msiMakeGenQuery``, runs it
with ``msiExecGenQuery`` and pages with ``msiGetMoreRows`` (256 rows a page), rows are strings,
``AS_DICT`` rows are keyed by the column names as given, ``AS_TUPLE`` gives a bare string for one
column, and a query without rows yields nothing (the callback answers CAT_NO_ROWS_FOUND with a
dict, not an exception).
"""

from __future__ import annotations

import copy
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MAX_SQL_ROWS = 256


# --- irods_types -----------------------------------------------------------------------------------
class BytesBuf:
    """``irods_types.BytesBuf``: ``set_buffer(bytes|str)``, ``get_bytes()``, ``len``.

    ``get_bytes()`` returns a list of ints, as the plugin's binding does (observed on 5.0.2 for
    the buffers ``msiDataObjRead`` hands back), not ``bytes``.
    """

    def __init__(self) -> None:
        self._data = b""

    def set_buffer(self, data: bytes | bytearray | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"BytesBuf.set_buffer() takes bytes or str, not {type(data).__name__}")
        self._data = bytes(data)

    def get_bytes(self) -> list[int]:
        return list(self._data)

    @property
    def len(self) -> int:
        return len(self._data)


class KeyValPair:
    """Read-only from Python (facts): built by ``msiString2KeyValPair``."""

    def __init__(self) -> None:
        self._pairs: dict[str, str] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "_pairs" and not name.startswith("_"):
            raise AttributeError("KeyValPair is read-only from Python; use msiString2KeyValPair")
        object.__setattr__(self, name, value)

    @property
    def ssLen(self) -> int:
        return len(self._pairs)


class RodsObjStat:
    def __init__(self) -> None:
        self.objSize = 0
        self.objType = 0
        self.modifyTime = ""
        self.createTime = ""


class _SqlResult:
    def __init__(self, values: list[str]) -> None:
        self._values = values

    def row(self, index: int) -> str:
        return self._values[index]


class GenQueryInp:
    def __init__(self) -> None:
        self.columns: list[str] = []
        self.conditions = ""
        self.maxRows = MAX_SQL_ROWS
        self.rowOffset = 0
        self.options = 0
        self.continueInx = 0


class GenQueryOut:
    def __init__(self) -> None:
        self.rowCnt = 0
        self.attriCnt = 0
        self.continueInx = 0
        self.totalRowCount = 0
        self.sqlResult: list[_SqlResult] = []

    def fill(self, rows: list[tuple[str, ...]], width: int, continue_index: int, total: int) -> "GenQueryOut":
        self.rowCnt = len(rows)
        self.attriCnt = width
        self.continueInx = continue_index
        self.totalRowCount = total
        self.sqlResult = [_SqlResult([r[c] for r in rows]) for c in range(width)]
        return self


# --- genquery ------------------------------------------------------------------------------------
class AS_DICT:  # noqa: N801 - the plugin's names
    pass


class AS_LIST:  # noqa: N801
    pass


class AS_TUPLE:  # noqa: N801
    pass


AUTO_CLOSE = 0x100
RETURN_TOTAL_ROW_COUNT = 0x020


class Query:
    """The plugin's ``genquery.Query`` (GenQuery1 parser), same signature and iteration."""

    def __init__(
        self,
        callback: Any,
        columns: Any,
        conditions: str = "",
        output: type = AS_TUPLE,
        offset: int = 0,
        limit: int | None = None,
        case_sensitive: bool = True,
        options: int = 0,
        parser: Any = None,
        order_by: str = "",
    ) -> None:
        if isinstance(columns, str):
            columns = [c.strip() for c in columns.split(",") if c.strip()]
        self.callback = callback
        self.columns = list(columns)
        self.conditions = conditions
        self.output = output
        self.offset = offset
        self.limit = limit
        self.case_sensitive = case_sensitive
        self.options = options
        if output not in (AS_DICT, AS_LIST, AS_TUPLE):
            raise RuntimeError("GenQuery_Row_Return_Type_Error")
        self._gqi: GenQueryInp | None = None
        self._gqo: GenQueryOut | None = None
        self._cti = 0

    def _exec(self) -> None:
        if self._gqi is not None:
            return
        conditions = self.conditions if self.case_sensitive else self.conditions.upper()
        self._gqi = self.callback.msiMakeGenQuery(", ".join(self.columns), conditions, GenQueryInp())["arguments"][2]
        self._gqi.rowOffset = self.offset
        if self.limit is not None and self.limit < MAX_SQL_ROWS - 1:
            self._gqi.maxRows = self.limit
        self._gqi.options |= self.options
        self._gqo = self.callback.msiExecGenQuery(self._gqi, GenQueryOut())["arguments"][1]
        self._cti = self._gqo.continueInx

    def __iter__(self) -> Iterator[Any]:
        self._exec()
        assert self._gqo is not None
        produced = 0
        while True:
            for r in range(self._gqo.rowCnt):
                if self.limit is not None and produced >= self.limit:
                    self._close()
                    return
                row = [self._gqo.sqlResult[c].row(r) for c in range(len(self.columns))]
                produced += 1
                if self.output is AS_TUPLE:
                    yield row[0] if len(self.columns) == 1 else tuple(row)
                elif self.output is AS_LIST:
                    yield row
                else:
                    yield OrderedDict(zip(self.columns, row))
            if self._cti <= 0 or (self.limit is not None and produced >= self.limit):
                self._close()
                return
            self._fetch()

    def _fetch(self) -> None:
        result = self.callback.msiGetMoreRows(self._gqi, self._gqo, 0)
        self._gqo = result["arguments"][1]
        self._cti = result["arguments"][2]

    def _close(self) -> None:
        while self._cti and self._cti > 0:
            assert self._gqi is not None
            self._gqi.options |= AUTO_CLOSE
            self._fetch()
        self._cti = 0

    def close(self) -> None:
        self._close()

    def first(self) -> Any:
        for item in self:
            self._close()
            return item
        return None

    def total_rows(self) -> int:
        self._exec()
        assert self._gqo is not None
        return self._gqo.totalRowCount

    def copy(self, **options: Any) -> "Query":
        params = dict(
            columns=self.columns, conditions=self.conditions, output=self.output, offset=self.offset,
            limit=self.limit, case_sensitive=self.case_sensitive, options=self.options,
        )
        params.update(options)
        return Query(self.callback, **params)


def row_iterator(columns: Any, conditions: str, row_return: type, callback: Any) -> Query:
    return Query(callback, columns, conditions, output=row_return)


def paged_iterator(columns: Any, conditions: str, row_return: type, callback: Any, N: int = 256) -> Iterator[list]:
    page: list = []
    for row in Query(callback, columns, conditions, output=row_return):
        page.append(row)
        if len(page) >= N:
            yield page
            page = []
    if page:
        yield page


# --- session_vars ------------------------------------------------------------------------------------
def get_map(rei: Any) -> dict:
    """A copy of the session variables the fake rei carries (as the plugin builds a fresh dict)."""
    return copy.deepcopy(rei.session)


# --- installing ------------------------------------------------------------------------------------
def _module(name: str, members: dict[str, Any]) -> types.ModuleType:
    module = types.ModuleType(name, f"fake {name} module of the iRODS Python rule engine plugin (tests)")
    module.__dict__.update(members)
    module.__dict__["__fake__"] = True
    return module


def build_modules() -> dict[str, types.ModuleType]:
    return {
        "genquery": _module("genquery", {
            "Query": Query, "row_iterator": row_iterator, "paged_iterator": paged_iterator,
            "AS_DICT": AS_DICT, "AS_LIST": AS_LIST, "AS_TUPLE": AS_TUPLE, "MAX_SQL_ROWS": MAX_SQL_ROWS,
        }),
        "session_vars": _module("session_vars", {"get_map": get_map}),
        "irods_types": _module("irods_types", {
            "BytesBuf": BytesBuf, "KeyValPair": KeyValPair, "RodsObjStat": RodsObjStat,
            "GenQueryInp": GenQueryInp, "GenQueryOut": GenQueryOut,
        }),
    }


_MODULES: dict[str, types.ModuleType] | None = None


def modules() -> dict[str, types.ModuleType]:
    """The one set of fake modules (built once, so their classes stay the same objects)."""
    global _MODULES
    if _MODULES is None:
        _MODULES = build_modules()
    return _MODULES


def install() -> None:
    """Install the fakes under their real names (idempotent; never replaces a real module)."""
    for name, module in modules().items():
        current = sys.modules.get(name)
        if current is None or getattr(current, "__fake__", False):
            sys.modules[name] = module


@contextmanager
def installed() -> Iterator[None]:
    saved = {name: sys.modules.get(name) for name in ("genquery", "session_vars", "irods_types")}
    install()
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
