"""IrodsClientGrid: the grid port on python-irodsclient (PRC), for laptops and login nodes.

A researcher's ``c2d`` and the report browser talk to the zone through this adapter, as the
researcher: it is configured like the icommands (``~/.irods/irods_environment.json`` or
``$IRODS_ENVIRONMENT_FILE``, explicit options winning), and the password comes from the iRODS
auth file (``iinit``) or from a prompt -- never from the command line.

What it relies on (docs/irods-behaviour.md, "python-irodsclient"):

* reads are GenQuery (``session.query``) with the columns named in the facts, batched so that
  no listing costs a query per object; string values in conditions are quoted by doubling
  single quotes (PRC itself does not quote them);
* AVU changes go through ``session.metadata.apply_atomic_operations`` (all or nothing per
  entity); objects are read with ``data_objects.open``; files arrive with ``data_objects.put``;
* rules run by name through the native engine with
  ``instance_name='irods_rule_engine_plugin-irods_rule_language-instance'`` and parameter
  values *without* quotes; a rule that ends with ``msiExit`` raises the typed exception whose
  ``str()`` is its message;
* PRC's typed exceptions never leave this module: :func:`translate_error` turns them into the
  project's errors with a message a researcher can act on.

GenQuery returns one row per replica when replica columns are selected; the listing code groups
them. Counting distinct objects is not possible in GenQuery 1 (``COUNT`` counts replica rows),
so :meth:`IrodsClientGrid.count_predictions` streams distinct rows instead.
"""

from __future__ import annotations

import getpass
import itertools
import json
import logging
import os
import posixpath
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compute_to_data.domain import errors as c2d_errors
from compute_to_data.domain import irods_codes as irods_errors
from compute_to_data.domain.catalog import (
    AVU,
    LISTING_PAGE_SIZE,
    AccessLevel,
    AVUCondition,
    CollectionAVUs,
    DataObject,
    EntityType,
    MetadataOperation,
    PredictedObject,
    PredictionPage,
    PredictionQuery,
    Replica,
    Resource,
    check_page_size,
    in_pages,
    parse_score,
)
from compute_to_data.domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    AuthenticationError,
    ComputeToDataError,
    GridError,
    GridUnreachableError,
    NotAllowedError,
    ObjectNotFoundError,
)
from compute_to_data.grid import genquery_quote as gq
from compute_to_data.grid import rows as rows_
from compute_to_data.grid.base import Grid, local_write_error

log = logging.getLogger(__name__)

NATIVE_RULE_ENGINE = "irods_rule_engine_plugin-irods_rule_language-instance"
#: What a missing (or invisible) entity of each type is called in the error table.
_MISSING_CODE = {
    EntityType.DATA_OBJECT: irods_errors.CAT_UNKNOWN_FILE,
    EntityType.COLLECTION: irods_errors.CAT_UNKNOWN_COLLECTION,
    EntityType.RESOURCE: irods_errors.CAT_INVALID_RESOURCE,
    EntityType.USER: irods_errors.CAT_INVALID_USER,
}
DEFAULT_ENV_FILE = "~/.irods/irods_environment.json"
DEFAULT_AUTH_FILE = "~/.irods/.irodsA"
#: objects resolved per batch while streaming predictions (one ``in`` list of ids each).
IN_CHUNK = gq.IN_CHUNK
#: rows fetched per GenQuery round trip while scanning (the server's page size is 500).
SCAN_CHUNK = 500

def _exception_text(exc: BaseException) -> str:
    """The server's message of a PRC exception (``str()`` is ``'None'`` when there is none)."""
    parts = [str(a) for a in getattr(exc, "args", ()) if a not in (None, "")]
    text = " ".join(parts).strip()
    # A rule error may carry the rule engine's stack text; keep its first meaningful line.
    return text.splitlines()[0].strip() if text else ""


def _code(exc: BaseException) -> int | None:
    """The iRODS code a PRC exception carries (None for PRC's own, code-less exceptions)."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) and not isinstance(code, bool) and code < 0 else None


def translate_error(
    exc: BaseException, what: str, *, endpoint: str = "", user: str = "", login: bool = False
) -> ComputeToDataError:
    """PRC's exception -> the project's error, with ``what`` (the operation) in the message.

    The class comes from the project's one error table (:mod:`.irods_errors`); ``login`` says
    the error was met while logging in, where an unknown user name is a refused login.
    """
    from irods import exception as prc

    if isinstance(exc, ComputeToDataError):
        return exc
    name = type(exc).__name__
    text = _exception_text(exc)
    code = _code(exc)
    detail = f" ({name}{': ' + text if text else ''})"
    if name == "NonAnonymousLoginWithoutPassword":
        cls: type[ComputeToDataError] = AuthenticationError
    elif isinstance(exc, (prc.NetworkException, OSError, socket.timeout)):
        cls = GridUnreachableError
    elif isinstance(exc, prc.DoesNotExist):
        cls = ObjectNotFoundError
    else:
        cls = c2d_errors.login_error_class(code) if login else c2d_errors.error_class(code)
    where = f" at {endpoint}" if endpoint else ""
    if cls is AuthenticationError:
        message = f"iRODS{where} refused the login of {user or 'this user'}: wrong user name or password{detail}"
    elif cls is GridUnreachableError:
        message = (
            f"cannot reach the iRODS server{' ' + endpoint if endpoint else ''} while trying to {what}: "
            f"{text or name}. Check irods_host/irods_port and your network."
        )
    elif cls is ObjectNotFoundError:
        message = f"cannot {what}: it does not exist or you cannot see it{detail}"
    elif cls is AccessDeniedError:
        message = f"cannot {what}: permission denied{detail}"
    elif cls is AlreadyExistsError:
        message = f"cannot {what}: it exists already{detail}"
    elif cls is NotAllowedError:
        message = f"cannot {what}: {user or 'this user'} is not allowed to{detail}"
    elif isinstance(exc, prc.iRODSException):
        message = f"cannot {what}: iRODS error{detail}"
    elif isinstance(exc, prc.PycommandsException):
        message = f"cannot {what}: {name}{': ' + text if text else ''}"
    else:
        message = f"cannot {what}: {name}: {exc}"
    if issubclass(cls, GridError):
        return cls(message, irods_code=code, irods_name=name)
    return cls(message, irods_code=code)


def rule_error(exc: BaseException, rule: str) -> ComputeToDataError:
    """An error raised by running ``rule``: its ``msiExit`` message becomes the error message,
    its code picks the class from the project's error table."""
    from irods import exception as prc

    if isinstance(exc, ComputeToDataError):
        return exc
    name = type(exc).__name__
    text = _exception_text(exc)
    code = _code(exc)
    base = prc.rounded_code(code) if code is not None else None
    if base in irods_errors.NO_RULE_CODES:
        return GridError(
            f"the iRODS server does not know the rule {rule}: is the compute_to_data rulebase installed "
            f"(core.py importing compute_to_data.rules)? Ask your iRODS administrator. ({name})",
            irods_code=code,
            irods_name=name,
        )
    cls = c2d_errors.error_class(base)
    if code is None or cls in (AuthenticationError, GridUnreachableError) or isinstance(exc, prc.NetworkException):
        return translate_error(exc, f"run rule {rule}")
    return c2d_errors.make_error(code, text or f"rule {rule} failed with {name}", irods_name=name)


# ------------------------------------------------------------------------------------------------
# GenQuery conditions: the one quoting policy (genquery_quote) as PRC criteria
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Where:
    """PRC criteria, and the exact checks their rows must pass where a condition was widened.

    Built from :mod:`.genquery_quote`, the policy the rule-engine adapter uses too: a value is
    sent verbatim only when no pipeline can misread it, else as a ``like`` superset whose rows
    are checked here. ``+`` combines (``and``); a list of ``_Where`` is a union of queries.
    """

    criteria: tuple[Any, ...] = ()
    checks: tuple[tuple[Any, gq.Condition], ...] = ()

    def __add__(self, other: "_Where") -> "_Where":
        return _Where(self.criteria + other.criteria, self.checks + other.checks)

    def keep(self, row: dict) -> bool:
        return all(condition.keep(str(row[column])) for column, condition in self.checks)


def _on(column: Any, condition: gq.Condition) -> _Where:
    """The PRC criterion for one condition of the policy (``=``, ``like`` or ``in``)."""
    from irods.column import In, Like

    if condition.operator == gq.EQUALS:
        criterion = column == condition.operand
    elif condition.operator == gq.LIKE:
        criterion = Like(column, condition.operand)
    elif condition.operator == gq.IN:
        criterion = In(column, list(condition.operands))
    else:
        raise ValueError(f"python-irodsclient cannot send a {condition.operator!r} condition")
    return _Where((criterion,), () if condition.exact else ((column, condition),))


def _eq(column: Any, value: str) -> _Where:
    return _on(column, gq.equals(column.icat_key, str(value)))


def _any_of(column: Any, values: Iterable[Any]) -> list[_Where]:
    return [_on(column, c) for c in gq.one_of(column.icat_key, [str(v) for v in values])]


def _under(column: Any, collection: str, include_self: bool = True) -> list[_Where]:
    return [_on(column, c) for c in gq.under_collection(column.icat_key, collection, include_self, compound=False)]


_ALL = _Where()


# ------------------------------------------------------------------------------------------------
# Connection settings, as the icommands read them
# ------------------------------------------------------------------------------------------------
@dataclass
class IrodsConnectionOptions:
    """Where and as whom to connect; unset fields come from the iRODS environment file."""

    env_file: str | None = None
    host: str | None = None
    port: int | None = None
    zone: str | None = None
    user: str | None = None
    auth_file: str | None = None
    default_resource: str | None = None
    timeout: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_env_file(self) -> Path:
        chosen = self.env_file or os.environ.get("IRODS_ENVIRONMENT_FILE") or DEFAULT_ENV_FILE
        return Path(os.path.expanduser(chosen))

    def resolved_auth_file(self, env: dict[str, Any]) -> Path:
        chosen = (
            self.auth_file
            or env.get("irods_authentication_file")
            or os.environ.get("IRODS_AUTHENTICATION_FILE")
            or DEFAULT_AUTH_FILE
        )
        return Path(os.path.expanduser(str(chosen)))

    def environment(self, require_user: bool = True) -> dict[str, Any]:
        """The environment file (if any) with the explicit options laid over it.

        ``require_user`` False: for the report browser, whose users sign in with their own name.
        """
        env: dict[str, Any] = {}
        path = self.resolved_env_file()
        explicit = bool(self.env_file or os.environ.get("IRODS_ENVIRONMENT_FILE"))
        if path.is_file():
            try:
                loaded = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise GridError(f"cannot read the iRODS environment file {path}: {exc}") from None
            if not isinstance(loaded, dict):
                raise GridError(f"the iRODS environment file {path} must hold a JSON object")
            env.update(loaded)
        elif explicit:
            raise GridError(f"the iRODS environment file {path} does not exist")
        env.update(self.extra)
        for key, value in (
            ("irods_host", self.host),
            ("irods_port", self.port),
            ("irods_zone_name", self.zone),
            ("irods_user_name", self.user),
            ("irods_default_resource", self.default_resource),
        ):
            if value not in (None, ""):
                env[key] = value
        needed = ("irods_host", "irods_port", "irods_zone_name") + (("irods_user_name",) if require_user else ())
        missing = [k for k in needed if not env.get(k)]
        if missing:
            raise GridError(
                f"no iRODS connection settings: {', '.join(missing)} missing (looked in {path}); "
                "run iinit, set IRODS_ENVIRONMENT_FILE, or give --host, --port, --zone and --user"
            )
        try:
            env["irods_port"] = int(env["irods_port"])
        except (TypeError, ValueError):
            raise GridError(f"irods_port must be a number, not {env['irods_port']!r}") from None
        return env

    def stored_password(self, env: dict[str, Any]) -> str | None:
        """The password ``iinit`` stored (obfuscated) for the environment's user, if any.

        Only used when the user is the one the environment file names: the auth file belongs
        to that user, not to whoever ``--user`` names.
        """
        path = self.resolved_auth_file(env)
        if self.user and self.env_user() not in (None, self.user):
            return None
        if not path.is_file():
            return None
        from irods.password_obfuscation import decode

        try:
            text = path.read_text().rstrip("\n")
            return decode(text, env.get("irods_authentication_uid")) or None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("cannot read the iRODS auth file %s: %s", path, exc)
            return None

    def env_user(self) -> str | None:
        path = self.resolved_env_file()
        try:
            return json.loads(path.read_text()).get("irods_user_name") if path.is_file() else None
        except (OSError, json.JSONDecodeError, AttributeError):
            return None


PasswordPrompt = Callable[[str], str]

#: what ``IrodsClientGrid.connect`` calls to make a session when none is given (tests swap it).
SESSION_FACTORY: Callable[..., Any] | None = None
#: the class that runs rules when an adapter was given none (``irods.rule.Rule``; tests swap it).
RULE_CLASS: Any = None


def terminal_prompt(label: str) -> str:
    """Ask on the terminal without echo; refuses when there is no terminal (e.g. in CI)."""
    import sys

    if not sys.stdin or not sys.stdin.isatty():
        raise AuthenticationError(
            "no iRODS password available: run iinit (it stores one in ~/.irods/.irodsA) "
            "or run this command in a terminal to be asked for it"
        )
    return getpass.getpass(label)


# ------------------------------------------------------------------------------------------------
# The adapter
# ------------------------------------------------------------------------------------------------
class IrodsClientGrid(Grid):
    """The grid port over one python-irodsclient session, acting as its user."""

    kind = "irods"

    def __init__(self, session: Any, *, rule_class: Any = None, owns_session: bool = True) -> None:
        self._session = session
        self._rule_class = rule_class
        self._owns_session = owns_session
        self._my_ids: set[int] | None = None
        self._admin = False

    # --- construction -----------------------------------------------------------------------------
    @classmethod
    def connect(
        cls,
        options: IrodsConnectionOptions | None = None,
        *,
        password: str | None = None,
        prompt: PasswordPrompt | None = terminal_prompt,
        session_factory: Callable[..., Any] | None = None,
        verify: bool = True,
    ) -> "IrodsClientGrid":
        """Open a session as the icommands would, and (``verify``) log in right away so a wrong
        password is reported here, once, as :class:`AuthenticationError`."""
        options = options or IrodsConnectionOptions()
        env = options.environment()
        user, zone = str(env["irods_user_name"]), str(env["irods_zone_name"])
        endpoint = f"{env['irods_host']}:{env['irods_port']}"
        stored = False
        if password is None:
            password = options.stored_password(env)
            stored = password is not None
        if password is None:
            if prompt is None:
                raise AuthenticationError(
                    f"no iRODS password for {user}#{zone}: run iinit, or sign in with your password"
                )
            password = prompt(f"iRODS password for {user}#{zone} at {endpoint}: ")
        if session_factory is None:
            session_factory = SESSION_FACTORY
        if session_factory is None:
            from irods.session import iRODSSession

            session_factory = iRODSSession
        kwargs = {k: v for k, v in env.items() if k.startswith("irods_")}
        kwargs.pop("irods_authentication_file", None)
        kwargs.pop("irods_authentication_uid", None)
        kwargs["password"] = password
        try:
            session = session_factory(connection_timeout=options.timeout, **kwargs)
        except Exception as exc:
            raise translate_error(
                exc, "open an iRODS session", endpoint=endpoint, user=f"{user}#{zone}", login=True
            ) from None
        grid = cls(session)
        if verify:
            try:
                grid.check_login()
            except AuthenticationError as exc:
                if stored:
                    raise AuthenticationError(
                        f"{exc}; the password iinit stored may be outdated: run iinit again", irods_code=exc.irods_code
                    ) from None
                raise
        return grid

    def check_login(self) -> None:
        """Authenticate now (PRC connects lazily); AuthenticationError for a wrong password."""
        with self._errors("log in", login=True):
            with self._session.pool.get_connection():
                pass

    def close(self) -> None:
        if self._owns_session:
            try:
                self._session.cleanup()
            except Exception as exc:  # closing must never hide the real outcome
                log.debug("closing the iRODS session failed: %s", exc)

    def __enter__(self) -> "IrodsClientGrid":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"IrodsClientGrid({self.user}#{self.zone} at {self.endpoint})"

    @property
    def session(self) -> Any:
        return self._session

    @property
    def endpoint(self) -> str:
        return f"{getattr(self._session, 'host', '?')}:{getattr(self._session, 'port', '?')}"

    @contextmanager
    def _errors(self, what: str, login: bool = False) -> Iterator[None]:
        try:
            yield
        except ComputeToDataError:
            raise
        except Exception as exc:
            raise translate_error(exc, what, endpoint=self.endpoint, user=self._who(), login=login) from None

    def _who(self) -> str:
        try:
            return f"{self._session.username}#{self._session.zone}"
        except Exception:
            return "this user"

    # --- identity ---------------------------------------------------------------------------------
    @property
    def zone(self) -> str:
        return str(self._session.zone)

    @property
    def user(self) -> str:
        return str(self._session.username)

    # --- query helpers ----------------------------------------------------------------------------
    def _query(self, *columns: Any) -> Any:
        return self._session.query(*columns)

    def _where_query(self, columns: Sequence[Any], where: _Where) -> Any:
        """``select columns where ...``; a widened condition's column is selected too, to check it."""
        extra = [column for column, _ in where.checks if column not in columns]
        return self._query(*columns, *dict.fromkeys(extra)).filter(*where.criteria)

    def _select(self, columns: Sequence[Any], *parts: _Where) -> list[dict]:
        """Rows of one query whose conditions are ``parts`` (and-ed), widened rows dropped."""
        where = sum(parts, _ALL)
        return [row for row in self._where_query(columns, where) if where.keep(row)]

    def _select_any(self, columns: Sequence[Any], fixed: _Where, alternatives: Sequence[_Where]) -> list[dict]:
        """The union of the rows of ``fixed`` and each alternative (one query each)."""
        rows: list[dict] = []
        for alternative in alternatives:
            rows += self._select(columns, fixed, alternative)
        return rows

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        if not path.startswith("/") or path.endswith("/") or "//" in path:
            raise GridError(f"invalid logical path {path!r}: it must be absolute and normalized")
        return posixpath.dirname(path), posixpath.basename(path)

    # --- resources --------------------------------------------------------------------------------
    def _resources(self, names: Sequence[str]) -> list[Resource]:
        from irods.models import Resource as R
        from irods.models import ResourceMeta as RM

        rows: dict[str, dict[str, Any]] = {}
        avus: dict[str, list[AVU]] = {}
        for where in _any_of(R.name, sorted(set(names))):
            for row in self._select([R.name, R.location, R.vault_path, R.type], where):
                rows[row[R.name]] = row
            for row in self._select([R.name, RM.name, RM.value, RM.units], where):
                avus.setdefault(row[R.name], []).append(AVU(row[RM.name], row[RM.value], row[RM.units] or ""))
        return [
            Resource(
                name,
                str(rows[name][R.location] or ""),
                str(rows[name][R.vault_path] or ""),
                str(rows[name][R.type] or ""),
                tuple(sorted(avus.get(name, []), key=lambda a: (a.attribute, a.value))),
            )
            for name in sorted(rows)
        ]

    def find_resources(self, attribute: str, value: str | None = None) -> list[Resource]:
        from irods.models import Resource as R
        from irods.models import ResourceMeta as RM

        with self._errors(f"find resources with {attribute}"):
            where = _eq(RM.name, attribute) + (_eq(RM.value, value) if value is not None else _ALL)
            names = [row[R.name] for row in self._select([R.name], where)]
            return self._resources(names) if names else []

    def get_resource(self, name: str) -> Resource:
        with self._errors(f"look up resource {name!r}"):
            found = self._resources([name])
        if not found:
            raise ObjectNotFoundError(
                f"resource {name!r} does not exist in zone {self.zone}", irods_code=irods_errors.CAT_INVALID_RESOURCE
            )
        return found[0]

    # --- namespace --------------------------------------------------------------------------------
    # GenQuery need not hide what the caller holds no permission on (that depends on the zone's
    # acAclPolicy), so visibility is decided here from the access columns, as iRODS decides it
    # for msiCheckAccess and ils: what the caller holds nothing on does not exist for them.
    def collection_exists(self, path: str) -> bool:
        if path != "/":
            self._split(path)
        with self._errors(f"look up collection {path}"):
            return path in self._collections_with_access([path], AccessLevel.READ_METADATA)

    def data_object_exists(self, path: str) -> bool:
        coll, name = self._split(path)
        with self._errors(f"look up data object {path}"):
            return self._held_levels(coll, [name]).get(name, 0) >= int(AccessLevel.READ_METADATA)

    _REPLICA_COLUMNS: tuple[str, ...] = (
        "name", "size", "checksum", "replica_number", "resource_name", "path", "replica_status"
    )

    def _object_rows(self, where: _Where) -> list[dict]:
        from irods.models import Collection
        from irods.models import DataObject as D

        columns = [Collection.name] + [getattr(D, c) for c in self._REPLICA_COLUMNS]
        return self._select(columns, where)

    def _avu_rows(self, where: _Where, attributes: Sequence[str]) -> dict[str, list[AVU]]:
        """AVUs named ``attributes`` of the objects matching ``where``, by path."""
        from irods.models import Collection
        from irods.models import DataObject as D
        from irods.models import DataObjectMeta as DM

        found: dict[str, list[AVU]] = {}
        attributes = list(dict.fromkeys(attributes))
        for names in _any_of(DM.name, attributes):
            for row in self._select([Collection.name, D.name, DM.name, DM.value, DM.units], where, names):
                path = posixpath.join(row[Collection.name], row[D.name])
                avu = AVU(row[DM.name], row[DM.value], row[DM.units] or "")
                bucket = found.setdefault(path, [])
                if avu not in bucket:
                    bucket.append(avu)
        return found

    def _readable_paths(self, where: _Where, level: AccessLevel) -> set[str]:
        """Paths of the objects matching ``where`` on which the caller holds ``level``."""
        from irods.models import Collection, DataAccess
        from irods.models import DataObject as D

        held: dict[str, int] = {}
        mine = self._caller_ids()
        for row in self._select([Collection.name, D.name, DataAccess.user_id, DataAccess.type], where):
            path = posixpath.join(row[Collection.name], row[D.name])
            level_held = int(row[DataAccess.type]) if int(row[DataAccess.user_id]) in mine else 0
            held[path] = max(held.get(path, 0), level_held)
        return {p for p, lvl in held.items() if lvl >= int(level) or self._is_admin()}

    @staticmethod
    def _build_objects(rows: Iterable[dict], avus: dict[str, list[AVU]]) -> list[DataObject]:
        from irods.models import Collection
        from irods.models import DataObject as D

        replicas: dict[str, dict[int, Replica]] = {}
        for row in rows:
            path = posixpath.join(row[Collection.name], row[D.name])
            found = rows_.replica(row[D.replica_number], row[D.resource_name], row[D.path], row[D.size],
                                  row[D.checksum], row[D.replica_status])
            replicas.setdefault(path, {})[found.number] = found
        return [rows_.data_object(path, replicas[path].values(), avus.get(path, ())) for path in sorted(replicas)]

    def _object(self, coll: str, name: str) -> _Where:
        from irods.models import Collection
        from irods.models import DataObject as D

        return _eq(Collection.name, coll) + _eq(D.name, name)

    def get_data_object(self, path: str, avu_attributes: Sequence[str] = ()) -> DataObject:
        coll, name = self._split(path)
        with self._errors(f"read data object {path}"):
            where = self._object(coll, name)
            rows = self._object_rows(where) if self.data_object_exists(path) else []
            if not rows:
                raise ObjectNotFoundError(
                    f"data object {path} does not exist or {self.user} cannot see it",
                    irods_code=irods_errors.CAT_UNKNOWN_FILE,
                )
            return self._build_objects(rows, self._avu_rows(where, avu_attributes))[0]

    def _require_collection(self, collection: str) -> None:
        if not self.collection_exists(collection):
            raise ObjectNotFoundError(
                f"collection {collection} does not exist or {self.user} cannot see it",
                irods_code=irods_errors.CAT_UNKNOWN_COLLECTION,
            )

    def list_data_objects(
        self, collection: str, recursive: bool = False, avu_attributes: Sequence[str] = ()
    ) -> list[DataObject]:
        """The objects the caller may read: per part of the listing (the collection, what is
        below it), one query for the replicas, one for the caller's access, one per 20 AVU names."""
        from irods.models import Collection
        from irods.models import DataObject as D

        self._split(collection)
        with self._errors(f"list collection {collection}"):
            self._require_collection(collection)
            parts = [_eq(Collection.name, collection)]
            if recursive:
                parts += _under(Collection.name, collection, include_self=False)
            rows: list[dict] = []
            avus: dict[str, list[AVU]] = {}
            for where in parts:
                readable = self._readable_paths(where, AccessLevel.READ)
                rows += [r for r in self._object_rows(where) if posixpath.join(r[Collection.name], r[D.name]) in readable]
                avus.update(self._avu_rows(where, avu_attributes))
            return self._build_objects(rows, avus)

    def iter_data_objects(
        self,
        collection: str,
        recursive: bool = False,
        avu_attributes: Sequence[str] = (),
        page_size: int = LISTING_PAGE_SIZE,
    ) -> Iterator[list[DataObject]]:
        """Collection by collection: the collections below are named by one query (per part of
        the condition), then each is listed with its replicas, the caller's access and the AVUs
        asked for, and handed out in pages: memory is bounded by the largest single collection."""
        from irods.models import Collection
        from irods.models import DataObject as D

        check_page_size(page_size)
        self._split(collection)
        with self._errors(f"list collection {collection}"):
            self._require_collection(collection)
            collections = [collection]
            if recursive:
                below: set[str] = set()
                for where in _under(Collection.name, collection, include_self=False):
                    below.update(row[Collection.name] for row in self._select([Collection.name], where))
                collections += sorted(below - {collection})
        for current in collections:
            with self._errors(f"list collection {current}"):
                where = _eq(Collection.name, current)
                readable = self._readable_paths(where, AccessLevel.READ)
                rows = [r for r in self._object_rows(where) if posixpath.join(r[Collection.name], r[D.name]) in readable]
                objects = self._build_objects(rows, self._avu_rows(where, avu_attributes) if rows else {})
            yield from in_pages(objects, page_size)

    def paths_meeting(self, collection: str, conditions: Sequence[AVUCondition]) -> set[str]:
        """One query per condition, from the same decision as the rule-engine adapter
        (:func:`.genquery_quote.avu_condition`); rows compared with :meth:`AVUCondition.holds`."""
        from irods.models import Collection
        from irods.models import DataObject as D
        from irods.models import DataObjectMeta as DM

        self._split(collection)
        columns = {c.icat_key: c for c in (DM.name, DM.value, DM.units)}
        found: set[str] | None = None
        with self._errors(f"list collection {collection}"):
            for condition in conditions:
                parts = gq.avu_condition(condition, tuple(columns))
                where = sum((_on(columns[c.column], c) for c in parts), _eq(Collection.name, collection))
                paths = {
                    posixpath.join(row[Collection.name], row[D.name])
                    for row in self._select([Collection.name, D.name, DM.value, DM.units], where)
                    if condition.holds(row[DM.value], row[DM.units] or "")
                }
                found = paths if found is None else found & paths
                if not found:
                    return set()
        return found or set()

    def list_collections(self, parent: str) -> list[str]:
        from irods.models import Collection

        with self._errors(f"list sub-collections of {parent}"):
            self._require_collection(parent)
            names = {row[Collection.name] for row in self._select([Collection.name], _eq(Collection.parent_name, parent))}
            names.discard(parent)
            return sorted(self._collections_with_access(sorted(names), AccessLevel.READ_METADATA)) if names else []

    # --- permissions ------------------------------------------------------------------------------
    def _caller(self) -> tuple[set[int], bool]:
        """The caller's user id and the ids of its groups (``public`` included); rodsadmin or not."""
        if self._my_ids is None:
            from irods.models import Group, User

            ids: set[int] = set()
            admin = False
            zone = _eq(User.zone, self.zone)
            for row in self._select_any([User.id, User.name, User.type], zone, _any_of(User.name, [self.user, "public"])):
                ids.add(int(row[User.id]))
                admin = admin or (row[User.name] == self.user and row[User.type] == "rodsadmin")
            for row in self._select([Group.id], _eq(User.name, self.user) + zone):
                ids.add(int(row[Group.id]))
            self._my_ids, self._admin = ids, admin
        return self._my_ids, self._admin

    def _caller_ids(self) -> set[int]:
        return self._caller()[0]

    def _is_admin(self) -> bool:
        return self._caller()[1]

    def _held_levels(self, coll: str, names: Sequence[str]) -> dict[str, int]:
        """Highest access the caller holds on each named object of ``coll`` (absent: no such object)."""
        from irods.models import Collection, DataAccess
        from irods.models import DataObject as D

        mine, admin = self._caller()
        held: dict[str, int] = {}
        columns = [D.name, DataAccess.user_id, DataAccess.type]
        for row in self._select_any(columns, _eq(Collection.name, coll), _any_of(D.name, names)):
            held.setdefault(row[D.name], int(AccessLevel.OWN) if admin else 0)
            if int(row[DataAccess.user_id]) in mine:
                held[row[D.name]] = max(held[row[D.name]], int(row[DataAccess.type]))
        return held

    def has_access(self, path: str, level: AccessLevel) -> bool:
        """As ``msiCheckAccess``: INVALID_OBJECT_TYPE when the path is missing or invisible."""
        with self._errors(f"check access to {path}"):
            if path != "/":
                coll, name = self._split(path)
                held = self._held_levels(coll, [name]).get(name, 0)
                if held >= int(AccessLevel.READ_METADATA):
                    return held >= int(level)
            held_on_collection = self._collection_levels([path]).get(path, 0)
            if held_on_collection < int(AccessLevel.READ_METADATA):
                raise ObjectNotFoundError(
                    f"{path} does not exist or {self.user} cannot see it", irods_code=irods_errors.INVALID_OBJECT_TYPE
                )
            return held_on_collection >= int(level)

    def paths_lacking_access(self, paths: Iterable[str], level: AccessLevel) -> list[str]:
        """One GenQuery per collection (and per 20 names) instead of one per path."""
        wanted = list(paths)
        by_coll: dict[str, list[str]] = {}
        for p in wanted:
            coll, name = self._split(p)
            by_coll.setdefault(coll, []).append(name)
        ok: set[str] = set()
        with self._errors("check access"):
            for coll, names in by_coll.items():
                held = self._held_levels(coll, names)
                ok.update(posixpath.join(coll, n) for n, lvl in held.items() if lvl >= int(level))
            # What is not an object may be a collection (task listings check collections).
            leftovers = [p for p in wanted if p not in ok]
            ok.update(self._collections_with_access(leftovers, level))
        return [p for p in wanted if p not in ok]

    def _collection_levels(self, paths: Sequence[str]) -> dict[str, int]:
        """Highest access the caller holds on each of these collections (absent: no such collection)."""
        from irods.models import Collection, CollectionAccess

        mine, admin = self._caller()
        held: dict[str, int] = {}
        columns = [Collection.name, CollectionAccess.user_id, CollectionAccess.type]
        for row in self._select_any(columns, _ALL, _any_of(Collection.name, sorted(set(paths)))):
            name = row[Collection.name]
            held.setdefault(name, int(AccessLevel.OWN) if admin else 0)
            if int(row[CollectionAccess.user_id]) in mine:
                held[name] = max(held[name], int(row[CollectionAccess.type]))
        return held

    def _collections_with_access(self, paths: Sequence[str], level: AccessLevel) -> set[str]:
        return {p for p, lvl in self._collection_levels(paths).items() if lvl >= int(level)}

    # --- changes ----------------------------------------------------------------------------------
    def replicate(self, path: str, resource: str) -> None:
        with self._errors(f"replicate {path} to {resource}"):
            self._session.data_objects.replicate(path, resource=resource)

    def create_collection(self, path: str) -> None:
        self._split(path)
        with self._errors(f"create collection {path}"):
            if not self.collection_exists(path):
                self._session.collections.create(path, recurse=True)

    def put_file(self, local_path: Path, logical_path: str, resource: str, overwrite: bool = False) -> DataObject:
        from irods import keywords as kw

        self._split(logical_path)
        source = Path(local_path)
        if not source.is_file():
            raise GridError(f"cannot upload {source}: it is not a readable file")
        options: dict[str, str] = {}
        if resource:
            options[kw.DEST_RESC_NAME_KW] = resource
        if overwrite:
            options[kw.FORCE_FLAG_KW] = ""
        with self._errors(f"upload {source} to {logical_path}"):
            if not overwrite and self.data_object_exists(logical_path):
                raise AlreadyExistsError(f"data object {logical_path} already exists; not overwriting it")
            self._session.data_objects.put(str(source), logical_path, **options)
        return self.get_data_object(logical_path)

    _MODEL_BY_ENTITY = {
        EntityType.DATA_OBJECT: "DataObject",
        EntityType.COLLECTION: "Collection",
        EntityType.RESOURCE: "Resource",
        EntityType.USER: "User",
    }

    def _model(self, entity_type: EntityType) -> Any:
        from irods import models

        return getattr(models, self._MODEL_BY_ENTITY[EntityType(entity_type)])

    def apply_metadata(self, operations: Sequence[MetadataOperation]) -> None:
        """One atomic call per entity, in the order entities first appear."""
        from irods.meta import AVUOperation, iRODSMeta

        batches: dict[tuple[EntityType, str], list[MetadataOperation]] = {}
        for op in operations:
            batches.setdefault((EntityType(op.entity_type), op.entity_name), []).append(op)
        for (entity_type, name), ops in batches.items():
            prc_ops = [
                AVUOperation(operation=op.operation, avu=iRODSMeta(op.avu.attribute, op.avu.value, op.avu.units or None))
                for op in ops
            ]
            with self._errors(f"change metadata of {entity_type.value} {name}"):
                self._session.metadata.apply_atomic_operations(self._model(entity_type), name, *prc_ops)


    def remove_avu(self, entity_type: EntityType, name: str, avu: AVU) -> None:
        from irods.meta import iRODSMeta

        entity_type = EntityType(entity_type)
        with self._errors(f"remove AVU {avu.attribute}={avu.value} of {entity_type.value} {name}"):
            self._session.metadata.remove(self._model(entity_type), name, iRODSMeta(avu.attribute, avu.value, avu.units or None))

    def get_avus(self, entity_type: EntityType, name: str) -> list[AVU]:
        entity_type = EntityType(entity_type)
        with self._errors(f"read metadata of {entity_type.value} {name}"):
            if not self._entity_exists(entity_type, name):
                raise ObjectNotFoundError(
                    f"{entity_type.value} {name} does not exist or {self.user} cannot see it",
                    irods_code=_MISSING_CODE[entity_type],
                )
            metas = self._session.metadata.get(self._model(entity_type), name)
            return [AVU(m.name, m.value, m.units or "") for m in metas]

    def _entity_exists(self, entity_type: EntityType, name: str) -> bool:
        if entity_type == EntityType.DATA_OBJECT:
            return self.data_object_exists(name)
        if entity_type == EntityType.COLLECTION:
            return self.collection_exists(name)
        if entity_type == EntityType.RESOURCE:
            return bool(self._resources([name]))
        from irods.models import User

        return bool(self._select([User.id], _eq(User.name, name)))

    def read_head(self, path: str, max_bytes: int) -> bytes:
        with self._errors(f"read {path}"):
            with self._session.data_objects.open(path, "r") as handle:
                data = b""
                while len(data) < max_bytes:
                    chunk = handle.read(max_bytes - len(data))
                    if not chunk:
                        break
                    data += chunk
        return data

    def read_data_object(self, path: str, max_bytes: int = 16 * 1024 * 1024) -> bytes:
        with self._errors(f"read {path}"):
            with self._session.data_objects.open(path, "r") as handle:
                chunks: list[bytes] = []
                size = 0
                while size <= max_bytes:
                    chunk = handle.read(min(4 * 1024 * 1024, max_bytes + 1 - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        if size > max_bytes:
            raise GridError(f"data object {path} is larger than the {max_bytes} bytes allowed here")
        return b"".join(chunks)


    def read_to_file(self, path: str, local_path: Path) -> int:
        """``data_objects.open(path, "r")`` copied to ``local_path`` in 4 MiB reads."""
        written = 0
        with self._errors(f"read {path}"), self._session.data_objects.open(path, "r") as handle:
            try:
                target = open(local_path, "wb")  # noqa: SIM115 - closed below; its errors are the compute host's
            except OSError as exc:
                raise local_write_error(path, local_path, exc) from exc
            with target:
                while chunk := handle.read(4 * 1024 * 1024):
                    try:
                        target.write(chunk)
                    except OSError as exc:
                        raise local_write_error(path, local_path, exc) from exc
                    written += len(chunk)
        return written

    def find_collections_with_avu(
        self, attribute: str, value: str | None = None, under: str | None = None
    ) -> list[CollectionAVUs]:
        """Collections the caller can see carrying the AVU: one query per part of the scope
        (with the access columns), then their AVUs, 20 collections a query."""
        from irods.models import Collection, CollectionAccess
        from irods.models import CollectionMeta as CM

        with self._errors(f"find collections with {attribute}"):
            avu = _eq(CM.name, attribute) + (_eq(CM.value, value) if value is not None else _ALL)
            scopes = _under(Collection.name, under) if under is not None else [_ALL]
            mine, admin = self._caller()
            levels: dict[str, int] = {}
            columns = [Collection.name, CollectionAccess.user_id, CollectionAccess.type]
            for row in self._select_any(columns, avu, scopes):
                held = int(row[CollectionAccess.type]) if int(row[CollectionAccess.user_id]) in mine else 0
                name = row[Collection.name]
                levels[name] = max(levels.get(name, 0), int(AccessLevel.OWN) if admin else held)
            paths = sorted(p for p, lvl in levels.items() if lvl >= int(AccessLevel.READ_METADATA))
            avus: dict[str, list[AVU]] = {p: [] for p in paths}
            for where in _any_of(Collection.name, paths) if paths else []:
                for row in self._select([Collection.name, CM.name, CM.value, CM.units], where):
                    found = AVU(row[CM.name], row[CM.value], row[CM.units] or "")
                    if found not in avus[row[Collection.name]]:
                        avus[row[Collection.name]].append(found)
            return [
                CollectionAVUs(p, tuple(sorted(avus[p], key=lambda a: (a.attribute, a.value)))) for p in paths
            ]

    # --- rules ------------------------------------------------------------------------------------
    def run_rule(self, rule: str, params: dict[str, str] | None = None) -> str:
        """Call rule ``rule`` by name through the native engine; its stdout (``writeLine``).

        ``params`` maps native variable names (``*config``) to values, sent unquoted.
        """
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule):
            raise GridError(f"invalid rule name {rule!r}")
        params = dict(params or {})
        for key in params:
            if not re.fullmatch(r"\*[A-Za-z_][A-Za-z0-9_]*", key):
                raise GridError(f"invalid rule parameter name {key!r}: it must look like *name")
        rule_class = self._rule_class or RULE_CLASS
        if rule_class is None:
            from irods.rule import Rule

            rule_class = Rule
        body = f"{rule}({', '.join(params)})"
        try:
            out = rule_class(
                self._session,
                body=body,
                params=params,
                output="ruleExecOut",
                instance_name=NATIVE_RULE_ENGINE,
            ).execute(session_cleanup=False)
        except Exception as exc:
            raise rule_error(exc, rule) from None
        return rule_stdout(out)


    # --- predictions (efficient override of the port's default) -----------------------------------
    def _prediction_where(self, query: PredictionQuery, attribute: str, extra: _Where) -> tuple[_Where, _Where]:
        """(scope, the rest): the input collection's prefix, and the AVU conditions."""
        from irods.models import Collection
        from irods.models import DataObjectMeta as DM

        scope = _on(Collection.name, gq.prefix(Collection.name.icat_key, self._input_root(query)))
        return scope, _eq(DM.name, attribute) + _eq(DM.units, query.units) + extra

    @staticmethod
    def _input_root(query: PredictionQuery) -> str:
        return query.input_collection.rstrip("/") or "/"

    def _under_input(self, query: PredictionQuery, coll: str) -> bool:
        root = self._input_root(query)
        return coll == root or coll.startswith(root + "/")

    def _scope_is_exact(self, query: PredictionQuery, scope: _Where) -> bool:
        """Whether ``like 'ROOT%'`` selects the input collection and what is below it and nothing
        else (no widened pattern, no sibling collection sharing the prefix), so that the server
        may skip the rows before a page."""
        from irods.models import Collection

        if scope.checks:
            return False
        names = {row[Collection.name] for row in self._select([Collection.name], scope)}
        return all(self._under_input(query, name) for name in names)

    def _page_avus(self, ids: Sequence[int], attributes: Sequence[str], units: str) -> dict[int, list[AVU]]:
        """AVUs named ``attributes`` of the objects with these ids (one query per 20 ids)."""
        from irods.models import DataObject as D
        from irods.models import DataObjectMeta as DM

        found: dict[int, list[AVU]] = {}
        attributes = list(dict.fromkeys(attributes))
        if not ids or not attributes:
            return found
        for names in _any_of(DM.name, attributes):
            for row in self._select_any([D.id, DM.name, DM.value, DM.units], names, _any_of(D.id, ids)):
                avu = AVU(row[DM.name], row[DM.value], row[DM.units] or "")
                bucket = found.setdefault(int(row[D.id]), [])
                if avu not in bucket:
                    bucket.append(avu)
        return found

    def _scan_query(self, query: PredictionQuery, attribute: str, extra: _Where) -> tuple[Any, _Where, bool]:
        """The ordered query over the prediction AVU ``attribute``; its checks; whether it is exact."""
        from irods.models import Collection
        from irods.models import DataObject as D
        from irods.models import DataObjectMeta as DM

        scope, rest = self._prediction_where(query, attribute, extra)
        where = scope + rest
        q = self._where_query([Collection.name, D.name, D.id, DM.value], where).order_by(Collection.name).order_by(D.name)
        return q, where, not rest.checks and self._scope_is_exact(query, scope)

    def _rows_of(self, query: PredictionQuery, rows: Iterable[dict], where: _Where) -> Iterator[tuple[int, str, str]]:
        from irods.models import Collection
        from irods.models import DataObject as D
        from irods.models import DataObjectMeta as DM

        seen: set[int] = set()
        for row in rows:
            data_id = int(row[D.id])
            if data_id in seen or not where.keep(row) or not self._under_input(query, row[Collection.name]):
                continue
            seen.add(data_id)
            yield data_id, posixpath.join(row[Collection.name], row[D.name]), row[DM.value]

    def _scan(self, query: PredictionQuery, attribute: str, extra: _Where = _ALL) -> Iterator[tuple[int, str, str]]:
        """(id, path, value) of the prediction AVU ``attribute``, sorted by path, streamed."""
        q, where, _ = self._scan_query(query, attribute, extra)
        yield from self._rows_of(query, q, where)

    def _score_condition(self, query: PredictionQuery) -> _Where:
        """Scores are stored as ``%.4f`` text, so a string BETWEEN is a numeric range."""
        from irods.column import Between
        from irods.models import DataObjectMeta as DM

        if query.min_score is None and query.max_score is None:
            return _ALL
        low = f"{max(0.0, query.min_score):.4f}" if query.min_score is not None else "0"
        high = f"{query.max_score:.4f}" if query.max_score is not None else "9"
        return _Where((Between(DM.value, [low, high]),))

    def query_predictions(self, query: PredictionQuery, offset: int = 0, limit: int = 50) -> PredictionPage:
        """GenQuery over the prediction AVUs; touches only the page unless both a class and a
        score range are asked for (GenQuery 1 cannot join two AVUs of one object; then the
        class's rows are scanned up to the page, 500 per round trip)."""
        from irods.models import DataObjectMeta as DM

        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must be >= 0, not {offset} and {limit}")
        scored = query.min_score is not None or query.max_score is not None
        with self._errors(f"list the images of task {query.task_id}"):
            if not scored or query.predicted_class is None:
                primary = query.score_attribute if scored else query.class_attribute
                extra = self._score_condition(query) if scored else _ALL
                if query.predicted_class is not None:
                    extra += _eq(DM.value, query.predicted_class)
                rows = self._page_of_scan(query, primary, extra, offset, limit + 1)
                has_more = len(rows) > limit
                rows = rows[:limit]
                others = [query.class_attribute if scored else query.score_attribute, *query.extra_attributes]
                avus = self._page_avus([r[0] for r in rows], others, query.units)
                items = []
                for data_id, path, value in rows:
                    got = avus.get(data_id, [])
                    if scored:
                        cls = next((a.value for a in got if a.attribute == query.class_attribute and a.units == query.units), "")
                        score = parse_score(value)
                    else:
                        cls = value
                        score = parse_score(
                            next((a.value for a in got if a.attribute == query.score_attribute and a.units == query.units), None)
                        )
                    extras = tuple(a for a in got if a.attribute in query.extra_attributes)
                    items.append(PredictedObject(path, cls, score, extras))
                return PredictionPage(tuple(items), offset, limit, has_more, None)
            # Class and score range: scan the class's rows, check their scores in bulk.
            wanted = itertools.islice(self._iter_predictions(query), offset, offset + limit + 1)
            items = list(wanted)
            return PredictionPage(tuple(items[:limit]), offset, limit, len(items) > limit, None)

    def _iter_predictions(self, query: PredictionQuery) -> Iterator[PredictedObject]:
        """Every match, sorted by path, streamed 20 objects at a time (scan of the primary AVU)."""
        from irods.models import DataObjectMeta as DM

        scored = query.min_score is not None or query.max_score is not None
        if scored and query.predicted_class is None:
            primary, extra = query.score_attribute, self._score_condition(query)
            others = [query.class_attribute, *query.extra_attributes]
        else:
            primary, extra = query.class_attribute, _ALL
            if query.predicted_class is not None:
                extra += _eq(DM.value, query.predicted_class)
            others = [query.score_attribute, *query.extra_attributes]
        batch: list[tuple[int, str, str]] = []

        def resolve(batch: list[tuple[int, str, str]]) -> Iterator[PredictedObject]:
            avus = self._page_avus([b[0] for b in batch], others, query.units)
            for data_id, path, value in batch:
                got = avus.get(data_id, [])
                mine = {a.attribute: a.value for a in got if a.units == query.units}
                if primary == query.class_attribute:
                    cls, score = value, parse_score(mine.get(query.score_attribute))
                else:
                    cls, score = mine.get(query.class_attribute, ""), parse_score(value)
                if query.score_matches(score):
                    yield PredictedObject(path, cls, score, tuple(a for a in got if a.attribute in query.extra_attributes))

        for row in self._scan(query, primary, extra):
            batch.append(row)
            if len(batch) >= IN_CHUNK:
                yield from resolve(batch)
                batch = []
        if batch:
            yield from resolve(batch)

    def _page_of_scan(
        self, query: PredictionQuery, attribute: str, extra: _Where, offset: int, limit: int
    ) -> list[tuple[int, str, str]]:
        """Rows ``offset .. offset+limit`` of :meth:`_scan`: the server skips the offset when the
        conditions are exact, else the rows before the page are read and dropped here."""
        q, where, exact = self._scan_query(query, attribute, extra)
        if exact:
            return list(self._rows_of(query, q.offset(offset).limit(limit).execute(), where))
        return list(itertools.islice(self._rows_of(query, q, where), offset, offset + limit))

    def count_predictions(self, query: PredictionQuery) -> dict[str, int]:
        """Distinct images per class, streamed (GenQuery 1 ``COUNT`` would count replicas)."""
        from irods.models import DataObjectMeta as DM

        counts: dict[str, int] = {}
        with self._errors(f"count the images of task {query.task_id}"):
            if query.min_score is None and query.max_score is None:
                extra = _eq(DM.value, query.predicted_class) if query.predicted_class is not None else _ALL
                for _, _, cls in self._scan(query, query.class_attribute, extra):
                    counts[cls] = counts.get(cls, 0) + 1
            else:
                for item in self._iter_predictions(query):
                    counts[item.predicted_class] = counts.get(item.predicted_class, 0) + 1
        return dict(sorted(counts.items()))


def rule_stdout(out: Any) -> str:
    """What a rule wrote with ``writeLine('stdout', ...)``: ``MsParam_PI[0].inOutStruct.stdoutBuf.buf``."""
    try:
        params = out.MsParam_PI
    except AttributeError:
        return ""
    for param in params or ():
        try:
            buf = param.inOutStruct.stdoutBuf.buf
        except AttributeError:
            continue
        if buf is None:
            continue
        if isinstance(buf, bytes):
            buf = buf.decode("utf-8", "replace")
        return str(buf).rstrip("\x00")
    return ""
