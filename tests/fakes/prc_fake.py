"""A fake of the python-irodsclient (PRC 3.x) objects IrodsClientGrid uses, for unit tests.

It behaves as docs/irods-behaviour.md and PRC's own code say the real ones do (and
tests/grid/test_fake_server_facts.py holds it to what was observed):

* ``session.query(*columns)`` takes PRC's real ``Column``/``Criterion`` objects (``irods.models``,
  ``irods.column``) and evaluates the condition text PRC sends for each criterion
  (``"<op> " + criterion.irods_value``) as the catalog's SQL generator reads it
  (tests/fakes/irods_genquery_parser.py): the bind value is everything between the first and
  the last quote, ``||`` outside quotes splits a compound, LIKE treats ``\\`` as an escape.
  Whether iRODS 5 also runs PRC's conditions through the GenQuery1 parser is not established,
  so the fake refuses what that parser refuses (INPUT_ARG_NOT_WELL_FORMED_ERR, e.g. an undoubled
  or backslash-escaped quote): an adapter passes only if it would on either reading. Rows are
  dicts keyed by ``Column`` with ints for integer columns; one row per replica when replica
  columns are involved; ``DISTINCT`` over the selected columns; ``offset``/``limit``/``order_by``;
* the zone's collections carry a stock zone's ACLs: ``/zone`` and ``/zone/home`` are
  ``rods:own`` only, each home belongs to its user;
* typed exceptions from ``irods.exception`` (CAT_INVALID_AUTHENTICATION on a wrong password at
  the first connection, OVERWRITE_WITHOUT_FORCE_FLAG, CAT_NO_ACCESS_PERMISSION, ...);
* ``metadata.apply_atomic_operations`` is all or nothing and needs modify access;
  ``metadata.get`` returns ``iRODSMeta`` with units ``None`` when empty;
* rules: ``FakeRule`` stands in for ``irods.rule.Rule``; it records the body, parameters and
  instance name and returns stdout in ``MsParam_PI[0].inOutStruct.stdoutBuf.buf`` (bytes).

GenQuery here does not hide objects the caller cannot read (whether a zone's GenQuery does
depends on its acAclPolicy), so the adapter's own access checks are what the tests exercise.
"""

from __future__ import annotations

import fnmatch
import io
import itertools
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from irods import exception as ex
from irods import models
from irods.column import Column, Criterion, DateTime, Integer
from irods.meta import AVUOperation, iRODSMeta

from tests.fakes.irods_genquery_parser import GenQueryError, compile_condition, parse_conditions

READ, MODIFY, OWN = 1050, 1120, 1200
ACCESS_NAMES = {1050: "read_object", 1120: "modify_object", 1200: "own"}

_ids = itertools.count(10000)


@dataclass
class FUser:
    id: int
    name: str
    type: str = "rodsuser"
    groups: set[int] = field(default_factory=set)


@dataclass
class FResource:
    id: int
    name: str
    location: str
    vault: str
    type: str = "unixfilesystem"
    avus: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class FReplica:
    number: int
    resource: str
    path: str
    size: int
    checksum: str = ""
    status: str = "1"


@dataclass
class FCollection:
    id: int
    path: str
    owner: str
    avus: list[tuple[str, str, str]] = field(default_factory=list)
    acl: dict[int, int] = field(default_factory=dict)


@dataclass
class FObject:
    id: int
    coll: str
    name: str
    owner: str
    content: bytes = b""
    replicas: list[FReplica] = field(default_factory=list)
    avus: list[tuple[str, str, str]] = field(default_factory=list)
    acl: dict[int, int] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return posixpath.join(self.coll, self.name)


class FakeCatalog:
    """The zone the fake sessions talk to."""

    def __init__(self, zone: str = "tempZone") -> None:
        self.zone = zone
        self.users: dict[str, FUser] = {}
        self.passwords: dict[str, str] = {}
        self.resources: dict[str, FResource] = {}
        self.collections: dict[str, FCollection] = {}
        self.objects: dict[str, FObject] = {}
        self.rules: dict[str, Callable[["FakeSession", dict[str, str]], str]] = {}
        self.rule_calls: list[dict[str, Any]] = []
        self.queries: list[tuple[list[str], list[str]]] = []
        self.connections = 0
        public = FUser(next(_ids), "public", "rodsgroup")
        self.users["public"] = public
        self.add_user("rods", "rods", "rodsadmin")
        rods = self.users["rods"].id  # a stock zone: rods#zone:own only, nothing for public
        self.collections[f"/{zone}"] = FCollection(next(_ids), f"/{zone}", "rods", acl={rods: OWN})
        self.collections[f"/{zone}/home"] = FCollection(next(_ids), f"/{zone}/home", "rods", acl={rods: OWN})
        self.add_resource("demoResc", "irods.example.org", "/var/lib/irods/Vault")

    # --- setup helpers ------------------------------------------------------------------------
    def add_user(self, name: str, password: str, user_type: str = "rodsuser") -> FUser:
        user = FUser(next(_ids), name, user_type)
        user.groups = {user.id, self.users["public"].id}
        self.users[name] = user
        self.passwords[name] = password
        home = f"/{self.zone}/home/{name}"
        if home not in self.collections and f"/{self.zone}/home" in self.collections:
            self.collections[home] = FCollection(next(_ids), home, name, acl={user.id: OWN})
        return user

    def add_resource(self, name: str, location: str, vault: str, **avus: str) -> FResource:
        resc = FResource(next(_ids), name, location, vault, avus=[(a, v, "") for a, v in avus.items()])
        self.resources[name] = resc
        return resc

    def mkcoll(self, path: str, owner: str) -> FCollection:
        parent = posixpath.dirname(path)
        if parent not in self.collections:
            self.mkcoll(parent, owner)
        if path not in self.collections:
            self.collections[path] = FCollection(next(_ids), path, owner, acl={self.users[owner].id: OWN})
        return self.collections[path]

    def mkobj(self, path: str, owner: str, content: bytes = b"x", resource: str = "demoResc", **avus: Any) -> FObject:
        coll, name = posixpath.split(path)
        self.mkcoll(coll, owner)
        obj = FObject(next(_ids), coll, name, owner, content, acl={self.users[owner].id: OWN})
        obj.replicas.append(FReplica(0, resource, f"/vault/{path.lstrip('/')}", len(content), "sha2:abc"))
        for attribute, value in avus.items():
            if isinstance(value, tuple):
                obj.avus.append((attribute, value[0], value[1]))
            else:
                obj.avus.append((attribute, str(value), ""))
        self.objects[path] = obj
        return obj

    def grant(self, user: str, level: int, path: str) -> None:
        target = self.objects.get(path) or self.collections[path]
        target.acl[self.users[user].id] = level

    def session_factory(self, **kwargs: Any) -> "FakeSession":
        """Stands in for ``iRODSSession(**kwargs)`` (the keywords IrodsClientGrid.connect passes)."""
        return FakeSession(self, kwargs["irods_user_name"], kwargs.get("password"), kwargs)


# ------------------------------------------------------------------------------------------------
# columns
# ------------------------------------------------------------------------------------------------
def _family_of() -> dict[Column, tuple[str, str]]:
    mapping: dict[Column, tuple[str, str]] = {}
    for model in (
        models.Collection, models.CollectionMeta, models.CollectionAccess, models.DataObject,
        models.DataObjectMeta, models.DataAccess, models.Resource, models.ResourceMeta, models.User,
        models.Group,
    ):
        for attr, value in vars(model).items():
            if isinstance(value, Column):
                mapping[value] = (model.__name__, attr)
    return mapping


FAMILY = _family_of()


def _predicate(criterion: Criterion) -> Any:
    """How the server reads the condition PRC sends for ``criterion`` (see the module docstring)."""
    column = criterion.query_key
    text = f"{criterion.op} {criterion.irods_value}"
    try:
        parse_conditions(f"{column.icat_key} {text}", frozenset({column.icat_key}))
        return compile_condition(text, numeric=column.column_type is Integer)
    except GenQueryError as exc:
        raise ex.get_exception_by_code(exc.code, str(exc)) from None



class FakeQuery:
    def __init__(self, session: "FakeSession", columns: tuple[Any, ...]) -> None:
        self.session = session
        self.columns: list[Column] = []
        for c in columns:
            if isinstance(c, type) and issubclass(c, models.Model):
                self.columns += list(c._columns)
            elif isinstance(c, Column):
                self.columns.append(c)
            else:
                raise TypeError("Arguments must be models or columns")
        self.criteria: list[Criterion] = []
        self._order: list[tuple[Column, str]] = []
        self._limit = -1
        self._offset = 0

    def _clone(self) -> "FakeQuery":
        q = FakeQuery(self.session, ())
        q.columns, q.criteria, q._order = list(self.columns), list(self.criteria), list(self._order)
        q._limit, q._offset = self._limit, self._offset
        return q

    def filter(self, *criteria: Criterion) -> "FakeQuery":
        q = self._clone()
        for c in criteria:
            if not isinstance(c, Criterion):
                raise TypeError(f"not a criterion: {c!r}")
            q.criteria.append(c)
        return q

    def order_by(self, column: Column, order: str = "asc") -> "FakeQuery":
        q = self._clone()
        if order not in ("asc", "desc"):
            raise ValueError("Ordering must be 'asc' or 'desc'")
        q._order.append((column, order))
        return q

    def limit(self, n: int) -> "FakeQuery":
        q = self._clone()
        q._limit = n
        return q

    def offset(self, n: int) -> "FakeQuery":
        q = self._clone()
        q._offset = n
        return q

    # --- evaluation ----------------------------------------------------------------------------
    def _families(self) -> set[str]:
        used = set(self.columns) | {c.query_key for c in self.criteria} | {c for c, _ in self._order}
        for col in used:
            if col not in FAMILY:
                raise ex.SYS_INVALID_INPUT_PARAM(f"the fake does not model column {col.icat_key}")
        return {FAMILY[c][0] for c in used}

    def _contexts(self) -> list[dict[str, Any]]:
        cat = self.session.catalog
        fams = self._families()
        out: list[dict[str, Any]] = []
        if fams & {"DataObject", "DataObjectMeta", "DataAccess"}:
            for obj in cat.objects.values():
                coll = cat.collections[obj.coll]
                metas = obj.avus if "DataObjectMeta" in fams else [None]
                accesses = list(obj.acl.items()) if "DataAccess" in fams else [None]
                for rep, meta, acc in itertools.product(obj.replicas, metas, accesses):
                    out.append({"obj": obj, "rep": rep, "coll": coll, "dmeta": meta, "dacc": acc})
        elif fams & {"Collection", "CollectionMeta", "CollectionAccess"}:
            for coll in cat.collections.values():
                metas = coll.avus if "CollectionMeta" in fams else [None]
                accesses = list(coll.acl.items()) if "CollectionAccess" in fams else [None]
                for meta, acc in itertools.product(metas, accesses):
                    out.append({"coll": coll, "cmeta": meta, "cacc": acc})
        elif fams & {"Resource", "ResourceMeta"}:
            for resc in cat.resources.values():
                metas = resc.avus if "ResourceMeta" in fams else [None]
                for meta in metas:
                    out.append({"resc": resc, "rmeta": meta})
        elif fams & {"User", "Group"}:
            for user in cat.users.values():
                groups = sorted(user.groups) if "Group" in fams else [None]
                for gid in groups:
                    out.append({"user": user, "group": gid})
        return out

    def _value(self, ctx: dict[str, Any], column: Column) -> Any:
        fam, attr = FAMILY[column]
        cat = self.session.catalog
        missing = object()
        value: Any = missing
        if fam == "Collection" and "coll" in ctx:
            coll = ctx["coll"]
            value = {
                "id": coll.id, "name": coll.path, "parent_name": posixpath.dirname(coll.path),
                "owner_name": coll.owner, "owner_zone": cat.zone,
            }.get(attr, missing)
        elif fam == "DataObject" and "obj" in ctx:
            obj, rep = ctx["obj"], ctx["rep"]
            value = {
                "id": obj.id, "collection_id": cat.collections[obj.coll].id, "name": obj.name,
                "replica_number": rep.number, "size": rep.size, "resource_name": rep.resource,
                "path": rep.path, "owner_name": obj.owner, "owner_zone": cat.zone,
                "replica_status": rep.status, "checksum": rep.checksum, "resc_hier": rep.resource,
            }.get(attr, missing)
        elif fam == "DataObjectMeta" and ctx.get("dmeta") is not None:
            a, v, u = ctx["dmeta"]
            value = {"name": a, "value": v, "units": u, "id": str(abs(hash((a, v, u))) % 10**8)}.get(attr, missing)
        elif fam == "CollectionMeta" and ctx.get("cmeta") is not None:
            a, v, u = ctx["cmeta"]
            value = {"name": a, "value": v, "units": u}.get(attr, missing)
        elif fam == "ResourceMeta" and ctx.get("rmeta") is not None:
            a, v, u = ctx["rmeta"]
            value = {"name": a, "value": v, "units": u}.get(attr, missing)
        elif fam == "DataAccess" and ctx.get("dacc") is not None:
            uid, level = ctx["dacc"]
            value = {"user_id": uid, "type": level, "name": ACCESS_NAMES.get(level, str(level)), "data_id": ctx["obj"].id}.get(attr, missing)
        elif fam == "CollectionAccess" and ctx.get("cacc") is not None:
            uid, level = ctx["cacc"]
            value = {"user_id": uid, "type": level, "name": ACCESS_NAMES.get(level, str(level))}.get(attr, missing)
        elif fam == "Resource" and "resc" in ctx:
            resc = ctx["resc"]
            value = {"id": resc.id, "name": resc.name, "location": resc.location, "vault_path": resc.vault,
                     "type": resc.type, "zone_name": cat.zone}.get(attr, missing)
        elif fam == "User" and "user" in ctx:
            user = ctx["user"]
            value = {"id": user.id, "name": user.name, "type": user.type, "zone": cat.zone}.get(attr, missing)
        elif fam == "User" and ctx.get("dacc") is not None:
            user = next(u for u in cat.users.values() if u.id == ctx["dacc"][0])
            value = {"id": user.id, "name": user.name, "type": user.type, "zone": cat.zone}.get(attr, missing)
        elif fam == "Group" and ctx.get("group") is not None:
            group = next(u for u in cat.users.values() if u.id == ctx["group"])
            value = {"id": group.id, "name": group.name}.get(attr, missing)
        if value is missing:
            raise ex.SYS_INVALID_INPUT_PARAM(f"the fake cannot join {column.icat_key} here")
        if column.column_type is DateTime and isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, UTC)
        return value

    def _rows(self) -> list[dict[Column, Any]]:
        self.session._connect()
        self.session.catalog.queries.append(
            ([c.icat_key for c in self.columns], [f"{c.query_key.icat_key} {c.op} {c.irods_value}" for c in self.criteria])
        )
        # The server reads every condition before it looks at a row: a refused one fails the
        # query even when nothing would match.
        tests = [(c.query_key, _predicate(c)) for c in self.criteria]
        rows: list[dict[Column, Any]] = []
        seen: set[tuple] = set()
        for ctx in self._contexts():
            if not all(test(str(self._value(ctx, column))) for column, test in tests):
                continue
            row = {col: self._value(ctx, col) for col in self.columns}
            key = tuple(row[c] for c in self.columns)
            if key in seen:  # GenQuery selects DISTINCT rows
                continue
            seen.add(key)
            rows.append(row)
        for column, order in reversed(self._order):
            rows.sort(key=lambda r: r[column], reverse=(order == "desc"))
        if self._offset:
            rows = rows[self._offset :]
        if self._limit >= 0:
            rows = rows[: self._limit]
        return rows

    def execute(self) -> list[dict[Column, Any]]:
        return self._rows()

    def all(self) -> list[dict[Column, Any]]:
        return self._rows()

    def __iter__(self):
        return iter(self._rows())

    def first(self) -> dict[Column, Any] | None:
        rows = self.limit(1)._rows()
        return rows[0] if rows else None


# ------------------------------------------------------------------------------------------------
# session and managers
# ------------------------------------------------------------------------------------------------
class _Connection:
    def __init__(self, session: "FakeSession") -> None:
        self.session = session

    def __enter__(self) -> "_Connection":
        self.session._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _Pool:
    def __init__(self, session: "FakeSession") -> None:
        self.session = session

    def get_connection(self) -> _Connection:
        return _Connection(self.session)


class FakeSession:
    def __init__(self, catalog: FakeCatalog, user: str, password: str | None, kwargs: dict[str, Any] | None = None) -> None:
        self.catalog = catalog
        self.username = user
        self.zone = (kwargs or {}).get("irods_zone_name", catalog.zone)
        self.host = (kwargs or {}).get("irods_host", "irods.example.org")
        self.port = int((kwargs or {}).get("irods_port", 1247))
        self.kwargs = dict(kwargs or {})
        self._password = password
        self._authenticated = False
        self.cleaned_up = False
        self.pool = _Pool(self)
        self.collections = _Collections(self)
        self.data_objects = _DataObjects(self)
        self.metadata = _Metadata(self)

    def _connect(self) -> None:
        if self.host == "unreachable.invalid":
            raise ex.NetworkException("Could not connect to specified host and port: unreachable.invalid:1247")
        if not self._authenticated:
            self.catalog.connections += 1
            if self.username not in self.catalog.users or self.catalog.passwords.get(self.username) != self._password:
                raise ex.CAT_INVALID_AUTHENTICATION(None)
            self._authenticated = True

    def cleanup(self) -> None:
        self.cleaned_up = True

    def query(self, *columns: Any) -> FakeQuery:
        return FakeQuery(self, columns)

    # --- permission helper ----------------------------------------------------------------------
    def level(self, target: FObject | FCollection) -> int:
        me = self.catalog.users[self.username]
        return max((lvl for uid, lvl in target.acl.items() if uid in me.groups), default=0)


class _Collections:
    def __init__(self, session: FakeSession) -> None:
        self.s = session

    def create(self, path: str, recurse: bool = True, **options: Any) -> Any:
        self.s._connect()
        cat = self.s.catalog
        if path in cat.collections:
            return SimpleNamespace(path=path)
        parent = posixpath.dirname(path)
        if parent not in cat.collections:
            if not recurse:
                raise ex.CAT_UNKNOWN_COLLECTION(None)
            self.create(parent, recurse=True)
        if self.s.level(cat.collections[parent]) < MODIFY:
            raise ex.CAT_NO_ACCESS_PERMISSION(None)
        cat.mkcoll(path, self.s.username)
        return SimpleNamespace(path=path)


class _DataObjects:
    def __init__(self, session: FakeSession) -> None:
        self.s = session

    def _get(self, path: str) -> FObject:
        obj = self.s.catalog.objects.get(path)
        if obj is None:
            raise ex.OBJ_PATH_DOES_NOT_EXIST(None)
        return obj

    def put(self, local_path: str, irods_path: str, return_data_object: bool = False, **options: Any) -> None:
        self.s._connect()
        cat = self.s.catalog
        coll = posixpath.dirname(irods_path)
        if coll not in cat.collections:
            raise ex.CAT_UNKNOWN_COLLECTION(None)
        existing = cat.objects.get(irods_path)
        if existing is not None and "forceFlag" not in options:
            raise ex.OVERWRITE_WITHOUT_FORCE_FLAG
        target = existing or cat.collections[coll]
        if self.s.level(target) < MODIFY:
            raise ex.CAT_NO_ACCESS_PERMISSION(None)
        content = Path(local_path).read_bytes()
        resource = options.get("destRescName", "demoResc")
        if existing is not None:
            existing.content = content
            existing.replicas = [FReplica(0, resource, existing.replicas[0].path, len(content), "")]
        else:
            cat.mkobj(irods_path, self.s.username, content, resource)

    def replicate(self, path: str, resource: str | None = None, **options: Any) -> None:
        self.s._connect()
        obj = self._get(path)
        if self.s.level(obj) < READ:
            raise ex.CAT_NO_ACCESS_PERMISSION(None)
        if resource not in self.s.catalog.resources:
            raise ex.SYS_RESC_DOES_NOT_EXIST(None)
        if any(r.resource == resource for r in obj.replicas):
            return
        obj.replicas.append(FReplica(len(obj.replicas), resource, f"/{resource}/{path}", obj.replicas[0].size))

    def open(self, path: str, mode: str, **options: Any) -> io.BytesIO:
        self.s._connect()
        if mode != "r":
            raise NotImplementedError("the fake only reads")
        obj = self._get(path)
        if self.s.level(obj) < READ:
            raise ex.CAT_NO_ACCESS_PERMISSION(None)
        return io.BytesIO(obj.content)


class _Metadata:
    def __init__(self, session: FakeSession) -> None:
        self.s = session

    def _target(self, model_cls: Any, path: str) -> Any:
        cat = self.s.catalog
        if model_cls is models.DataObject:
            return cat.objects.get(path)
        if model_cls is models.Collection:
            return cat.collections.get(path)
        if model_cls is models.Resource:
            return cat.resources.get(path)
        if model_cls is models.User:
            return cat.users.get(path)
        raise KeyError(model_cls)

    def get(self, model_cls: Any, path: str) -> list[iRODSMeta]:
        self.s._connect()
        target = self._target(model_cls, path)
        if target is None:
            return []
        return [iRODSMeta(None, None, None)._from_column_triple(a, v, u) for a, v, u in getattr(target, "avus", [])]

    def apply_atomic_operations(self, model_cls: Any, path: str, *ops: AVUOperation) -> None:
        self.s._connect()
        if not all(isinstance(op, AVUOperation) for op in ops):
            raise TypeError("avu_ops must contain 1 or more AVUOperations")
        target = self._target(model_cls, path)
        if target is None:
            # observed: an atomic batch on a data object that does not exist fails with -130000
            if model_cls is models.DataObject:
                raise ex.SYS_INVALID_INPUT_PARAM(None)
            raise ex.CAT_NO_ROWS_FOUND(None)
        if isinstance(target, (FObject, FCollection)) and self.s.level(target) < MODIFY:
            raise ex.CAT_NO_ACCESS_PERMISSION(None)
        avus = list(target.avus)
        for op in ops:
            avu = op.avu
            if not avu.name or not avu.value:
                raise ex.SYS_INVALID_INPUT_PARAM("attribute and value must not be empty")
            triple = (avu.name, avu.value, avu.units or "")
            # observed: neither adding a carried AVU nor removing a missing one fails the batch
            if op.operation == "add":
                if triple not in avus:
                    avus.append(triple)
            elif triple in avus:
                avus.remove(triple)
        target.avus = avus

    def remove(self, model_cls: Any, path: str, meta: iRODSMeta, **_: Any) -> None:
        """``imeta rm``: one AVU; observed: CAT_SUCCESS_BUT_WITH_NO_INFO when it is not there."""
        self.s._connect()
        target = self._target(model_cls, path)
        if target is None:
            raise ex.CAT_NO_ROWS_FOUND(None)
        if isinstance(target, (FObject, FCollection)) and self.s.level(target) < MODIFY:
            raise ex.CAT_NO_ACCESS_PERMISSION(None)
        triple = (meta.name, meta.value, meta.units or "")
        if triple not in target.avus:
            raise ex.CAT_SUCCESS_BUT_WITH_NO_INFO(None)
        target.avus = [a for a in target.avus if a != triple]


class FakeRule:
    """Stands in for ``irods.rule.Rule``; dispatches on the rule name at the start of the body."""

    def __init__(self, session: FakeSession, rule_file: Any = None, body: str = "", params: Any = None,
                 output: str = "", instance_name: str | None = None, **_: Any) -> None:
        self.session = session
        self.body = body
        self.params = dict(params or {})
        self.output = output
        self.instance_name = instance_name

    def execute(self, session_cleanup: bool = True, **_: Any) -> Any:
        self.session._connect()
        cat = self.session.catalog
        name = self.body.split("(", 1)[0].strip()
        cat.rule_calls.append(
            {"body": self.body, "params": dict(self.params), "output": self.output,
             "instance_name": self.instance_name, "session_cleanup": session_cleanup}
        )
        if session_cleanup:
            self.session.cleanup()
        handler = cat.rules.get(name)
        if handler is None:
            raise ex.NO_RULE_OR_MSI_FUNCTION_FOUND_ERR(None)
        stdout = handler(self.session, self.params)
        buf = SimpleNamespace(buf=(stdout.encode() + b"\x00") if stdout else None)
        return SimpleNamespace(MsParam_PI=[SimpleNamespace(inOutStruct=SimpleNamespace(stdoutBuf=buf, stderrBuf=SimpleNamespace(buf=None)))])


def glob_objects(catalog: FakeCatalog, pattern: str) -> list[str]:
    return sorted(p for p in catalog.objects if fnmatch.fnmatchcase(p, pattern))
