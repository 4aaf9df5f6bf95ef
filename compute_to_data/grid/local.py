"""LocalGrid: an embedded, iRODS-like data grid for development and tests.

**This is a development and test backend, not a replacement for iRODS.** It lets the task
engine, the runners, the web app and the test suite run on a laptop or in CI without an iRODS
server, while behaving like iRODS wherever a task can observe it:

* a grid is a directory: ``catalog.sqlite`` (collections, data objects, replicas with their
  physical paths, AVUs on objects, collections, resources and users, users, ACLs) and
  ``vaults/<resource>/`` (one vault per resource unless another path is given);
* replicas are plain files laid out as iRODS lays them out, ``<vault>/<logical path without
  "/<zone>/">`` (``vaults/lts_resc/home/alice/imgs/a.png``), so staging can hard-link them;
  files are written 0644 and directories 0755 so that a container running as another uid can
  read them in tests (real iRODS uses 0600/0750 and the service account's uid);
* replicating copies the file into the target vault and adds a replica with the next number
  (a no-op when a good replica is already there); overwriting marks other replicas stale;
* access levels are enforced (read < modify < own); what a user holds no permission on does not
  exist for them (``has_access`` raises ObjectNotFoundError, as ``msiCheckAccess`` does);
  ``rods`` (rodsadmin) bypasses ACLs; the pseudo-user ``public`` grants to everybody;
* as on a stock zone, ``/zone`` and ``/zone/home`` carry ``rods:own`` only, so an ordinary user
  sees neither of them, nor another user's home, only their own home and what was shared
  with them (docs/irods-behaviour.md);
* an AVU batch (:meth:`LocalGrid.apply_metadata`) is one SQLite transaction: all or nothing;
  adding a duplicate AVU or removing a missing one fails the whole batch;
* several processes and threads may write at once: WAL journal, ``BEGIN IMMEDIATE`` for every
  write, a 30 s busy timeout, one connection per thread and process.

Not modelled: groups other than ``public``, ACL inheritance, tickets, quotas, resource
hierarchies, deletion and trash, checksum verification, multiple zones.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import posixpath
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from compute_to_data.domain.catalog import (
    AVU,
    LISTING_PAGE_SIZE,
    AccessLevel,
    CollectionAVUs,
    DataObject,
    EntityType,
    MetadataOperation,
    Replica,
    Resource,
    check_logical_path,
    check_page_size,
)
from compute_to_data.domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    GridError,
    NothingToRemoveError,
    ObjectNotFoundError,
)
from compute_to_data.domain.irods_codes import (
    CAT_INSUFFICIENT_PRIVILEGE_LEVEL,
    CAT_INVALID_RESOURCE,
    CAT_INVALID_USER,
    CAT_SUCCESS_BUT_WITH_NO_INFO,
    CAT_UNKNOWN_COLLECTION,
    CAT_UNKNOWN_FILE,
    INVALID_OBJECT_TYPE,
    SYS_INVALID_INPUT_PARAM,
)
from compute_to_data.grid import rows as rows_
from compute_to_data.grid.base import Grid, local_write_error
from compute_to_data.grid.local_predictions import LocalPredictionQueries

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.sqlite"
VAULTS_DIR = "vaults"
ADMIN_USER = "rods"
PUBLIC_USER = "public"
#: Version 2: ``/zone`` and ``/zone/home`` are no longer readable by ``public`` (a stock zone's ACLs).
SCHEMA_VERSION = "2"
BUSY_TIMEOUT_SECONDS = 30.0
FILE_MODE = 0o644
DIR_MODE = 0o755
_COPY_CHUNK = 1024 * 1024

# Connections inherited through fork(): never used again and never closed in the child, since
# closing one there could checkpoint or delete the parent's WAL (SQLite: do not carry a
# connection across fork). Keeping a reference stops the garbage collector from closing them.
_INHERITED_CONNECTIONS: list[sqlite3.Connection] = []


_ENTITY_CODE = {
    EntityType.DATA_OBJECT: "d",
    EntityType.COLLECTION: "c",
    EntityType.RESOURCE: "r",
    EntityType.USER: "u",
}

_SCHEMA = """
CREATE TABLE zone_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL CHECK (type IN ('rodsadmin', 'rodsuser', 'rodsgroup'))
);
CREATE TABLE resources (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    vault_path TEXT NOT NULL,
    type_name TEXT NOT NULL DEFAULT 'unixfilesystem'
);
CREATE TABLE collections (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    parent_id INTEGER REFERENCES collections(id),
    owner_id INTEGER NOT NULL REFERENCES users(id),
    created REAL NOT NULL
);
CREATE INDEX collections_parent ON collections(parent_id);
CREATE TABLE data_objects (
    id INTEGER PRIMARY KEY,
    coll_id INTEGER NOT NULL REFERENCES collections(id),
    name TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    owner_id INTEGER NOT NULL REFERENCES users(id),
    created REAL NOT NULL,
    modified REAL NOT NULL,
    UNIQUE (coll_id, name)
);
CREATE TABLE replicas (
    data_id INTEGER NOT NULL REFERENCES data_objects(id) ON DELETE CASCADE,
    repl_num INTEGER NOT NULL,
    resc_id INTEGER NOT NULL REFERENCES resources(id),
    phys_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    good INTEGER NOT NULL,
    modified REAL NOT NULL,
    PRIMARY KEY (data_id, repl_num),
    UNIQUE (data_id, resc_id)
);
CREATE TABLE access (
    obj_type TEXT NOT NULL CHECK (obj_type IN ('d', 'c')),
    obj_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id),
    level INTEGER NOT NULL,
    PRIMARY KEY (obj_type, obj_id, user_id)
);
CREATE INDEX access_by_user ON access(user_id, obj_type, obj_id);
CREATE TABLE avus (
    id INTEGER PRIMARY KEY,
    entity_type TEXT NOT NULL CHECK (entity_type IN ('d', 'c', 'r', 'u')),
    entity_id INTEGER NOT NULL,
    attribute TEXT NOT NULL,
    value TEXT NOT NULL,
    units TEXT NOT NULL DEFAULT '',
    UNIQUE (entity_type, entity_id, attribute, value, units)
);
CREATE INDEX avus_by_attribute ON avus(entity_type, attribute, value);
"""


@dataclass(frozen=True)
class AccessEntry:
    """One ACL entry as ``ils -A`` shows it."""

    user: str
    level: AccessLevel


@dataclass(frozen=True)
class DataObjectPage:
    """One page of a listing plus the total, for paginated views (web app)."""

    items: list[DataObject]
    total: int
    offset: int
    limit: int


def irods_checksum(path: Path) -> tuple[str, int]:
    """``sha2:`` + base64(sha256), the form iRODS stores, and the size in bytes."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return "sha2:" + base64.b64encode(digest.digest()).decode("ascii"), size


def _prefix_bounds(collection: str) -> tuple[str, str]:
    """Bounds of every path strictly under ``collection`` (``C/`` <= p < ``C0``).

    A range on the binary-collated path column uses its index and needs no LIKE escaping,
    so paths with ``%``, ``_`` or quotes are matched literally ('0' follows '/' in ASCII).
    """
    return collection + "/", collection + "0"


class LocalGrid(LocalPredictionQueries, Grid):
    """The embedded grid, acting as one user. See the module docstring for what is modelled."""

    kind = "local"
    concurrent_calls = True

    def __init__(self, root: str | os.PathLike[str], user: str = ADMIN_USER) -> None:
        self.root = Path(root).resolve()
        self.catalog_path = self.root / CATALOG_FILE
        if not self.catalog_path.is_file():
            raise ObjectNotFoundError(
                f"no LocalGrid at {self.root} (missing {CATALOG_FILE}); "
                f"create one with: c2d local init {self.root}"
            )
        self._tls = threading.local()
        conn = self._connect()
        row = conn.execute("SELECT value FROM zone_info WHERE key = 'zone'").fetchone()
        if row is None:
            raise GridError(f"LocalGrid catalog {self.catalog_path} has no zone name; it is damaged")
        self._zone = row[0]
        urow = conn.execute("SELECT id, type FROM users WHERE name = ?", (user,)).fetchone()
        if urow is None or urow[1] == "rodsgroup":
            raise ObjectNotFoundError(
                f"user {user!r} does not exist in the LocalGrid at {self.root}; "
                f"add it with: c2d local mkuser {user}",
                irods_code=CAT_INVALID_USER,
            )
        self._user = user
        self._user_id = int(urow[0])
        self._is_admin = urow[1] == "rodsadmin"
        prow = conn.execute("SELECT id FROM users WHERE name = ?", (PUBLIC_USER,)).fetchone()
        self._public_id = int(prow[0]) if prow else -1
        version = conn.execute("SELECT value FROM zone_info WHERE key = 'schema_version'").fetchone()
        if version is not None and version[0] == "1":
            self._upgrade_from_version_1()

    def _upgrade_from_version_1(self) -> None:
        """Grids made before version 2 let ``public`` read ``/zone`` and ``/zone/home``; a stock
        zone does not, so that grant is dropped (once, by whoever opens the grid first)."""
        zone_paths = (f"/{self._zone}", f"/{self._zone}/home")
        try:
            with self._transaction(write=True) as conn:
                row = conn.execute("SELECT value FROM zone_info WHERE key = 'schema_version'").fetchone()
                if row is None or row[0] != "1":
                    return  # another process upgraded it meanwhile
                conn.execute(
                    "DELETE FROM access WHERE obj_type = 'c' AND user_id = ? AND obj_id IN "
                    "(SELECT id FROM collections WHERE path IN (?, ?))",
                    (self._public_id, *zone_paths),
                )
                conn.execute("UPDATE zone_info SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
        except (GridError, sqlite3.OperationalError) as exc:
            log.warning("could not upgrade the LocalGrid catalog %s to version %s: %s", self.catalog_path, SCHEMA_VERSION, exc)

    # --- creation and handles ---------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike[str], zone: str = "tempZone") -> "LocalGrid":
        """Make a new grid directory and return a handle acting as ``rods``."""
        if not zone or "/" in zone or zone.strip() != zone:
            raise GridError(f"invalid zone name {zone!r}: it must be one path element")
        root_path = Path(root).resolve()
        root_path.mkdir(parents=True, exist_ok=True)
        catalog = root_path / CATALOG_FILE
        if catalog.exists():
            raise AlreadyExistsError(f"{root_path} already holds a LocalGrid ({catalog})")
        (root_path / VAULTS_DIR).mkdir(exist_ok=True)
        os.chmod(root_path / VAULTS_DIR, DIR_MODE)
        conn = sqlite3.connect(catalog, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            now = time.time()
            conn.execute("INSERT INTO zone_info VALUES ('zone', ?)", (zone,))
            conn.execute("INSERT INTO zone_info VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            rods = conn.execute("INSERT INTO users (name, type) VALUES (?, 'rodsadmin')", (ADMIN_USER,)).lastrowid
            conn.execute("INSERT INTO users (name, type) VALUES (?, 'rodsgroup')", (PUBLIC_USER,))
            zone_id = conn.execute(
                "INSERT INTO collections (path, parent_id, owner_id, created) VALUES (?, NULL, ?, ?)",
                (f"/{zone}", rods, now),
            ).lastrowid
            home_id = conn.execute(
                "INSERT INTO collections (path, parent_id, owner_id, created) VALUES (?, ?, ?, ?)",
                (f"/{zone}/home", zone_id, rods, now),
            ).lastrowid
            for coll_id in (zone_id, home_id):  # rods#zone:own only, as on a stock zone
                conn.execute("INSERT INTO access VALUES ('c', ?, ?, ?)", (coll_id, rods, int(AccessLevel.OWN)))
            rods_home = conn.execute(
                "INSERT INTO collections (path, parent_id, owner_id, created) VALUES (?, ?, ?, ?)",
                (f"/{zone}/home/{ADMIN_USER}", home_id, rods, now),
            ).lastrowid
            conn.execute("INSERT INTO access VALUES ('c', ?, ?, ?)", (rods_home, rods, int(AccessLevel.OWN)))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            catalog.unlink(missing_ok=True)
            raise
        conn.close()
        log.info("created LocalGrid at %s (zone %s)", root_path, zone)
        return cls(root_path, user=ADMIN_USER)

    def as_user(self, name: str) -> "LocalGrid":
        """Another handle on the same catalog, acting as ``name``."""
        return LocalGrid(self.root, user=name)

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._tls, "conn", None)
        if conn is not None:
            conn.close()
            self._tls.conn = None

    def __repr__(self) -> str:
        return f"LocalGrid({str(self.root)!r}, user={self._user!r})"

    # --- connections and transactions -------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """One connection per thread and process (SQLite connections must not cross a fork)."""
        conn = getattr(self._tls, "conn", None)
        if conn is not None:
            if getattr(self._tls, "pid", None) == os.getpid():
                return conn
            _INHERITED_CONNECTIONS.append(conn)
        conn = sqlite3.connect(
            self.catalog_path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=True
        )
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._tls.conn = conn
        self._tls.pid = os.getpid()
        return conn

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """A write transaction takes the write lock up front (``BEGIN IMMEDIATE``), so two
        writers never deadlock on a lock upgrade; a read transaction gives a consistent snapshot."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            raise GridError(f"LocalGrid catalog {self.catalog_path} is busy or unreadable: {exc}") from exc
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise GridError(f"could not commit to LocalGrid catalog {self.catalog_path}: {exc}") from exc

    # --- identity ---------------------------------------------------------------------------------
    @property
    def zone(self) -> str:
        return self._zone

    @property
    def user(self) -> str:
        return self._user

    @property
    def is_admin(self) -> bool:
        return self._is_admin

    def _require_admin(self, what: str) -> None:
        if not self._is_admin:
            raise AccessDeniedError(
                f"{what} needs a rodsadmin; user {self._user!r} is not one (use --user {ADMIN_USER})",
                irods_code=CAT_INSUFFICIENT_PRIVILEGE_LEVEL,
            )

    # --- paths ------------------------------------------------------------------------------------
    def _check_path(self, path: str) -> str:
        return check_logical_path(path, self._zone, self._user)

    def _relative_to_zone(self, path: str) -> str:
        return path[len(self._zone) + 2 :]

    # --- access helpers ---------------------------------------------------------------------------
    def _grantees(self) -> tuple[int, int]:
        return (self._user_id, self._public_id)

    def _level(self, conn: sqlite3.Connection, obj_type: str, obj_id: int) -> AccessLevel:
        if self._is_admin:
            return AccessLevel.OWN
        row = conn.execute(
            "SELECT MAX(level) FROM access WHERE obj_type = ? AND obj_id = ? AND user_id IN (?, ?)",
            (obj_type, obj_id, *self._grantees()),
        ).fetchone()
        return AccessLevel(row[0]) if row and row[0] else AccessLevel.NONE

    def _acl_clause(self, obj_type: str, alias: str, level: AccessLevel) -> tuple[str, tuple]:
        """SQL condition: the caller holds ``level`` on ``alias.id`` (always true for rodsadmin)."""
        if self._is_admin:
            return "1", ()
        return (
            f"EXISTS (SELECT 1 FROM access a WHERE a.obj_type = '{obj_type}' AND a.obj_id = {alias}.id "
            "AND a.user_id IN (?, ?) AND a.level >= ?)",
            (*self._grantees(), int(level)),
        )

    def _lookup(self, conn: sqlite3.Connection, path: str) -> tuple[str, int] | None:
        row = conn.execute("SELECT id FROM data_objects WHERE path = ?", (path,)).fetchone()
        if row:
            return "d", int(row[0])
        row = conn.execute("SELECT id FROM collections WHERE path = ?", (path,)).fetchone()
        if row:
            return "c", int(row[0])
        return None

    def _not_found(self, path: str, kind: str | None = None) -> ObjectNotFoundError:
        what = {"d": "data object", "c": "collection"}.get(kind or "", "data object or collection")
        code = {"d": CAT_UNKNOWN_FILE, "c": CAT_UNKNOWN_COLLECTION}.get(kind or "", INVALID_OBJECT_TYPE)
        return ObjectNotFoundError(
            f"{what} {path} does not exist or user {self._user!r} has no access to it", irods_code=code
        )

    def _require(
        self, conn: sqlite3.Connection, path: str, level: AccessLevel, kind: str | None = None
    ) -> tuple[str, int]:
        """Resolve ``path`` (of ``kind`` 'd'/'c' if given) and check the caller holds ``level``.

        Invisible (no permission at all) reads as missing, as in iRODS; visible but too weak a
        permission is AccessDeniedError naming what is needed.
        """
        found = self._lookup(conn, path)
        if found is None or (kind is not None and found[0] != kind):
            raise self._not_found(path, kind)
        held = self._level(conn, *found)
        if held == AccessLevel.NONE:
            raise self._not_found(path, kind)
        if held < level:
            what = "data object" if found[0] == "d" else "collection"
            raise AccessDeniedError(
                f"user {self._user!r} has {held.irods_name} on {what} {path} but needs {level.irods_name}; "
                f"ask its owner for: ichmod {level.irods_name.split('_')[0]} {self._user} {path}"
            )
        return found

    # --- resources --------------------------------------------------------------------------------
    def _resources(self, conn: sqlite3.Connection, where: str = "1", params: tuple = ()) -> list[Resource]:
        rows = conn.execute(
            f"SELECT id, name, host, vault_path, type_name FROM resources r WHERE {where} ORDER BY name", params
        ).fetchall()
        if not rows:
            return []
        avus: dict[int, list[AVU]] = {int(r[0]): [] for r in rows}
        ids = tuple(avus)
        for entity_id, attribute, value, units in conn.execute(
            f"SELECT entity_id, attribute, value, units FROM avus WHERE entity_type = 'r' "
            f"AND entity_id IN ({','.join('?' * len(ids))}) ORDER BY attribute, id",
            ids,
        ):
            avus[int(entity_id)].append(AVU(attribute, value, units))
        return [Resource(name, host, vault, type_name, tuple(avus[int(rid)])) for rid, name, host, vault, type_name in rows]

    def find_resources(self, attribute: str, value: str | None = None) -> list[Resource]:
        cond = "EXISTS (SELECT 1 FROM avus v WHERE v.entity_type = 'r' AND v.entity_id = r.id AND v.attribute = ?"
        params: tuple = (attribute,)
        if value is not None:
            cond += " AND v.value = ?"
            params += (value,)
        with self._transaction(write=False) as conn:
            return self._resources(conn, cond + ")", params)

    def get_resource(self, name: str) -> Resource:
        with self._transaction(write=False) as conn:
            found = self._resources(conn, "name = ?", (name,))
        if not found:
            raise ObjectNotFoundError(
                f"resource {name!r} does not exist; known resources: {', '.join(r.name for r in self.list_resources()) or 'none'}",
                irods_code=CAT_INVALID_RESOURCE,
            )
        return found[0]

    def list_resources(self) -> list[Resource]:
        """Every resource with its AVUs (``ilsresc`` + ``imeta ls -R``)."""
        with self._transaction(write=False) as conn:
            return self._resources(conn)

    def make_resource(
        self, name: str, host: str = "localhost", vault_path: str | os.PathLike[str] | None = None
    ) -> Resource:
        """``iadmin mkresc NAME unixfilesystem HOST:VAULT`` (rodsadmin only)."""
        self._require_admin("creating a resource")
        if not name or "/" in name or any(c.isspace() for c in name) or name.startswith("."):
            raise GridError(f"invalid resource name {name!r}: use letters, digits, '_' or '-'")
        vault = Path(vault_path).resolve() if vault_path else self.root / VAULTS_DIR / name
        with self._transaction(write=True) as conn:
            if conn.execute("SELECT 1 FROM resources WHERE name = ?", (name,)).fetchone():
                raise AlreadyExistsError(f"resource {name!r} already exists")
            conn.execute(
                "INSERT INTO resources (name, host, vault_path, type_name) VALUES (?, ?, ?, 'unixfilesystem')",
                (name, host, str(vault)),
            )
            vault.mkdir(parents=True, exist_ok=True)
            os.chmod(vault, DIR_MODE)
        return self.get_resource(name)

    # --- users and ACLs ---------------------------------------------------------------------------
    def add_user(self, name: str, user_type: str = "rodsuser") -> None:
        """``iadmin mkuser NAME rodsuser``: also creates ``/zone/home/NAME`` owned by the user."""
        self._require_admin("adding a user")
        if user_type not in ("rodsuser", "rodsadmin"):
            raise GridError(f"user type must be rodsuser or rodsadmin, not {user_type!r}")
        if not name or "/" in name or "#" in name or any(c.isspace() for c in name) or name in (".", ".."):
            raise GridError(f"invalid user name {name!r}")
        home = f"/{self._zone}/home/{name}"
        with self._transaction(write=True) as conn:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise AlreadyExistsError(f"user {name!r} already exists")
            user_id = conn.execute("INSERT INTO users (name, type) VALUES (?, ?)", (name, user_type)).lastrowid
            parent = conn.execute("SELECT id FROM collections WHERE path = ?", (f"/{self._zone}/home",)).fetchone()
            existing = conn.execute("SELECT id FROM collections WHERE path = ?", (home,)).fetchone()
            if existing:
                coll_id = int(existing[0])
            else:
                coll_id = _row_id(conn.execute(
                    "INSERT INTO collections (path, parent_id, owner_id, created) VALUES (?, ?, ?, ?)",
                    (home, parent[0], user_id, time.time()),
                ))
            conn.execute(
                "INSERT OR REPLACE INTO access VALUES ('c', ?, ?, ?)", (coll_id, user_id, int(AccessLevel.OWN))
            )

    def list_users(self) -> list[tuple[str, str]]:
        """(name, type) of every user and group, by name."""
        with self._transaction(write=False) as conn:
            return [(n, t) for n, t in conn.execute("SELECT name, type FROM users ORDER BY name")]

    def set_acl(self, level: AccessLevel | str, user: str, path: str, recursive: bool = False) -> None:
        """``ichmod [-r] LEVEL USER PATH``; level ``null`` removes. The owner (own) or a rodsadmin may."""
        lvl = level if isinstance(level, AccessLevel) else AccessLevel.from_irods(str(level))
        self._check_path(path)
        with self._transaction(write=True) as conn:
            urow = conn.execute("SELECT id FROM users WHERE name = ?", (user,)).fetchone()
            if urow is None:
                raise ObjectNotFoundError(f"user {user!r} does not exist", irods_code=CAT_INVALID_USER)
            target_user = int(urow[0])
            kind, obj_id = self._require(conn, path, AccessLevel.OWN)
            targets: list[tuple[str, int]] = [(kind, obj_id)]
            if recursive and kind == "c":
                low, high = _prefix_bounds(path)
                own_c, own_c_params = self._acl_clause("c", "c", AccessLevel.OWN)
                own_d, own_d_params = self._acl_clause("d", "d", AccessLevel.OWN)
                targets += [
                    ("c", int(r[0]))
                    for r in conn.execute(
                        f"SELECT c.id FROM collections c WHERE c.path >= ? AND c.path < ? AND {own_c}",
                        (low, high, *own_c_params),
                    )
                ]
                targets += [
                    ("d", int(r[0]))
                    for r in conn.execute(
                        f"SELECT d.id FROM data_objects d WHERE d.path >= ? AND d.path < ? AND {own_d}",
                        (low, high, *own_d_params),
                    )
                ]
            for obj_type, target_id in targets:
                if lvl == AccessLevel.NONE:
                    conn.execute(
                        "DELETE FROM access WHERE obj_type = ? AND obj_id = ? AND user_id = ?",
                        (obj_type, target_id, target_user),
                    )
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO access VALUES (?, ?, ?, ?)", (obj_type, target_id, target_user, int(lvl))
                    )

    def get_acl(self, path: str) -> list[AccessEntry]:
        """The ACL of an object or collection the caller can see (``ils -A``)."""
        self._check_path(path)
        with self._transaction(write=False) as conn:
            kind, obj_id = self._require(conn, path, AccessLevel.READ_METADATA)
            return [
                AccessEntry(name, AccessLevel(level))
                for name, level in conn.execute(
                    "SELECT u.name, a.level FROM access a JOIN users u ON u.id = a.user_id "
                    "WHERE a.obj_type = ? AND a.obj_id = ? ORDER BY u.name",
                    (kind, obj_id),
                )
            ]

    # --- namespace --------------------------------------------------------------------------------
    def collection_exists(self, path: str) -> bool:
        self._check_path(path)
        with self._transaction(write=False) as conn:
            row = conn.execute("SELECT id FROM collections WHERE path = ?", (path,)).fetchone()
            return bool(row) and self._level(conn, "c", int(row[0])) > AccessLevel.NONE

    def data_object_exists(self, path: str) -> bool:
        self._check_path(path)
        with self._transaction(write=False) as conn:
            row = conn.execute("SELECT id FROM data_objects WHERE path = ?", (path,)).fetchone()
            return bool(row) and self._level(conn, "d", int(row[0])) > AccessLevel.NONE

    def _objects(
        self,
        conn: sqlite3.Connection,
        where: str,
        params: tuple,
        avu_attributes: Sequence[str],
        order_limit: str = "",
        limit_params: tuple = (),
        order: str = "d.path",
    ) -> list[DataObject]:
        """Objects matching ``where`` (on alias ``d``) with replicas and selected AVUs: 2 queries.

        With ``order_limit`` the page of object ids is chosen first (in a CTE) and replicas and
        AVUs are fetched only for that page.
        """
        ordering = f"ORDER BY {order} {order_limit}" if order_limit else ""
        page_cte = f"WITH page AS (SELECT d.id FROM data_objects d WHERE {where} {ordering})"
        rows = conn.execute(
            page_cte
            + " SELECT d.id, d.path, r.repl_num, s.name, r.phys_path, r.size, r.checksum, r.good"
            " FROM page JOIN data_objects d ON d.id = page.id"
            " LEFT JOIN replicas r ON r.data_id = d.id LEFT JOIN resources s ON s.id = r.resc_id"
            " ORDER BY d.path, r.repl_num",
            (*params, *limit_params),
        ).fetchall()
        avus: dict[int, list[AVU]] = {}
        attributes = list(dict.fromkeys(avu_attributes))
        if attributes and rows:
            for entity_id, attribute, value, units in conn.execute(
                page_cte + " SELECT v.entity_id, v.attribute, v.value, v.units FROM page"
                " JOIN avus v ON v.entity_type = 'd' AND v.entity_id = page.id"
                f" WHERE v.attribute IN ({','.join('?' * len(attributes))}) ORDER BY v.attribute, v.id",
                (*params, *limit_params, *attributes),
            ):
                avus.setdefault(int(entity_id), []).append(AVU(attribute, value, units))
        result: list[DataObject] = []
        current_id: int | None = None
        current_path = ""
        replicas: list[Replica] = []

        def flush() -> None:
            if current_id is None:
                return
            result.append(rows_.data_object(current_path, replicas, avus.get(current_id, ())))

        for data_id, path, repl_num, resc_name, phys, size, checksum, good in rows:
            if data_id != current_id:
                flush()
                current_id, current_path, replicas = int(data_id), path, []
            if repl_num is not None:
                replicas.append(rows_.replica(repl_num, resc_name, phys, size, checksum, 1 if good else 0))
        flush()
        return result

    def get_data_object(self, path: str, avu_attributes: Sequence[str] = ()) -> DataObject:
        self._check_path(path)
        with self._transaction(write=False) as conn:
            _, data_id = self._require(conn, path, AccessLevel.READ_METADATA, "d")
            return self._objects(conn, "d.id = ?", (data_id,), avu_attributes)[0]

    def _listing_where(
        self, conn: sqlite3.Connection, collection: str, recursive: bool, avu_filter: dict[str, str | None] | None
    ) -> tuple[str, tuple]:
        _, coll_id = self._require(conn, collection, AccessLevel.READ_METADATA, "c")
        params: tuple[object, ...]
        if recursive:
            low, high = _prefix_bounds(collection)
            where, params = "d.path >= ? AND d.path < ?", (low, high)
        else:
            where, params = "d.coll_id = ?", (coll_id,)
        acl, acl_params = self._acl_clause("d", "d", AccessLevel.READ)
        where += f" AND {acl}"
        params += acl_params
        for attribute, value in (avu_filter or {}).items():
            where += " AND EXISTS (SELECT 1 FROM avus f WHERE f.entity_type = 'd' AND f.entity_id = d.id AND f.attribute = ?"
            params += (attribute,)
            if value is not None:
                where += " AND f.value = ?"
                params += (value,)
            where += ")"
        return where, params

    def list_data_objects(
        self, collection: str, recursive: bool = False, avu_attributes: Sequence[str] = ()
    ) -> list[DataObject]:
        self._check_path(collection)
        with self._transaction(write=False) as conn:
            where, params = self._listing_where(conn, collection, recursive, None)
            return self._objects(conn, where, params, avu_attributes)

    def iter_data_objects(
        self,
        collection: str,
        recursive: bool = False,
        avu_attributes: Sequence[str] = (),
        page_size: int = LISTING_PAGE_SIZE,
    ) -> Iterator[list[DataObject]]:
        """Pages by key ranges: collection by collection (in path order), each page the next
        ``page_size`` names of one collection (``name > last``, on the (collection, name)
        index), so no page costs more than its own rows, however large the listing."""
        self._check_path(collection)
        check_page_size(page_size)
        with self._transaction(write=False) as conn:
            _, root_id = self._require(conn, collection, AccessLevel.READ_METADATA, "c")
            collections = [(root_id, collection)]
            if recursive:
                low, high = _prefix_bounds(collection)
                collections += [
                    (int(r[0]), r[1])
                    for r in conn.execute(
                        "SELECT id, path FROM collections WHERE path >= ? AND path < ? ORDER BY path", (low, high)
                    )
                ]
        acl, acl_params = self._acl_clause("d", "d", AccessLevel.READ)
        for coll_id, _path in collections:
            last = ""
            while True:
                with self._transaction(write=False) as conn:
                    page = self._objects(
                        conn, f"d.coll_id = ? AND d.name > ? AND {acl}", (coll_id, last, *acl_params),
                        avu_attributes, "LIMIT ?", (page_size,), order="d.name",
                    )
                if not page:
                    break
                yield page
                if len(page) < page_size:
                    break
                last = page[-1].name

    def list_data_objects_page(
        self,
        collection: str,
        recursive: bool = False,
        offset: int = 0,
        limit: int = 100,
        avu_filter: dict[str, str | None] | None = None,
        avu_attributes: Sequence[str] = (),
    ) -> DataObjectPage:
        """One page (sorted by path) of what :meth:`list_data_objects` returns, plus the total.

        ``avu_filter`` keeps objects carrying each attribute (with that value, or any value when
        the value is None). Three queries whatever the page size or collection size.
        """
        self._check_path(collection)
        if offset < 0 or limit < 0:
            raise GridError(f"offset and limit must be >= 0, not {offset} and {limit}")
        with self._transaction(write=False) as conn:
            where, params = self._listing_where(conn, collection, recursive, avu_filter)
            total = conn.execute(f"SELECT COUNT(*) FROM data_objects d WHERE {where}", params).fetchone()[0]
            items = self._objects(conn, where, params, avu_attributes, "LIMIT ? OFFSET ?", (limit, offset))
        return DataObjectPage(items, int(total), offset, limit)

    def count_data_objects(
        self, collection: str, recursive: bool = False, avu_filter: dict[str, str | None] | None = None
    ) -> int:
        """How many objects :meth:`list_data_objects_page` would page over (one query)."""
        self._check_path(collection)
        with self._transaction(write=False) as conn:
            where, params = self._listing_where(conn, collection, recursive, avu_filter)
            return int(conn.execute(f"SELECT COUNT(*) FROM data_objects d WHERE {where}", params).fetchone()[0])

    def list_collections(self, parent: str) -> list[str]:
        self._check_path(parent)
        with self._transaction(write=False) as conn:
            _, parent_id = self._require(conn, parent, AccessLevel.READ_METADATA, "c")
            acl, acl_params = self._acl_clause("c", "c", AccessLevel.READ_METADATA)
            return [
                r[0]
                for r in conn.execute(
                    f"SELECT c.path FROM collections c WHERE c.parent_id = ? AND {acl} ORDER BY c.path",
                    (parent_id, *acl_params),
                )
            ]

    # --- permissions ------------------------------------------------------------------------------
    def has_access(self, path: str, level: AccessLevel) -> bool:
        self._check_path(path)
        with self._transaction(write=False) as conn:
            found = self._lookup(conn, path)
            if found is None:
                raise self._not_found(path)
            held = self._level(conn, *found)
            if held == AccessLevel.NONE:
                raise self._not_found(path)
            return held >= level

    def paths_lacking_access(self, paths: Iterable[str], level: AccessLevel) -> list[str]:
        """Bulk form: paths (in the given order) that are missing, invisible or held below ``level``."""
        wanted = list(paths)
        for p in wanted:
            self._check_path(p)
        if self._is_admin or not wanted:
            with self._transaction(write=False) as conn:
                return [p for p in wanted if self._lookup(conn, p) is None]
        ok: set[str] = set()
        with self._transaction(write=False) as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for table, code in (("data_objects", "d"), ("collections", "c")):
                    ok.update(
                        r[0]
                        for r in conn.execute(
                            f"SELECT o.path FROM {table} o WHERE o.path IN ({marks}) AND EXISTS (SELECT 1 FROM access a "
                            f"WHERE a.obj_type = '{code}' AND a.obj_id = o.id AND a.user_id IN (?, ?) AND a.level >= ?)",
                            (*chunk, *self._grantees(), int(level)),
                        )
                    )
        return [p for p in wanted if p not in ok]

    # --- files in vaults --------------------------------------------------------------------------
    def _vault_file(self, vault: str, logical_path: str) -> Path:
        return Path(vault) / self._relative_to_zone(logical_path)

    @staticmethod
    def _ensure_dirs(vault: Path, target_dir: Path) -> None:
        """Create ``target_dir`` (inside ``vault``) with mode 0755 on every level it adds."""
        missing: list[Path] = []
        d = target_dir
        while not d.exists() and d != vault and vault in d.parents:
            missing.append(d)
            d = d.parent
        target_dir.mkdir(parents=True, exist_ok=True)
        for created in missing:
            try:
                os.chmod(created, DIR_MODE)
            except FileNotFoundError:  # pragma: no cover - raced with nothing; vault dirs are never removed
                pass

    def _copy_to_temp(self, source: Path, vault: str, logical_path: str) -> tuple[Path, Path, str, int]:
        """Copy ``source`` next to its final vault place; returns (temp, final, checksum, size).

        The final file is put in place with ``os.replace`` only once the catalog agrees, so a
        reader never sees half a file and hard links taken earlier keep the old content.
        """
        final = self._vault_file(vault, logical_path)
        self._ensure_dirs(Path(vault), final.parent)
        fd, temp_name = tempfile.mkstemp(prefix=".c2d-", suffix=".part", dir=final.parent)
        temp = Path(temp_name)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(_COPY_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
            os.chmod(temp, FILE_MODE)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return temp, final, "sha2:" + base64.b64encode(digest.digest()).decode("ascii"), size

    def _resource_row(self, conn: sqlite3.Connection, name: str) -> tuple[int, str]:
        row = conn.execute("SELECT id, vault_path FROM resources WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ObjectNotFoundError(f"resource {name!r} does not exist", irods_code=CAT_INVALID_RESOURCE)
        return int(row[0]), row[1]

    # --- changes ----------------------------------------------------------------------------------
    def replicate(self, path: str, resource: str) -> None:
        self._check_path(path)
        with self._transaction(write=False) as conn:
            _, data_id = self._require(conn, path, AccessLevel.READ, "d")
            _, vault = self._resource_row(conn, resource)
            obj = self._objects(conn, "d.id = ?", (data_id,), ())[0]
        if obj.good_replica_on(resource):
            return
        source = next((r for r in obj.replicas if r.good), None)
        if source is None:
            raise GridError(f"data object {path} has no good replica to copy to {resource!r}")
        temp, final, checksum, size = self._copy_to_temp(Path(source.physical_path), vault, path)
        try:
            with self._transaction(write=True) as conn:
                resc_id, _ = self._resource_row(conn, resource)
                row = conn.execute(
                    "SELECT repl_num, good FROM replicas WHERE data_id = ? AND resc_id = ?", (data_id, resc_id)
                ).fetchone()
                if row is not None and row[1]:
                    return  # another writer made it meanwhile
                current = conn.execute(
                    "SELECT checksum FROM replicas WHERE data_id = ? AND repl_num = ? AND good = 1",
                    (data_id, source.number),
                ).fetchone()
                if current is None or current[0] != checksum:
                    raise GridError(
                        f"data object {path} changed while it was being replicated to {resource!r}; try again"
                    )
                os.replace(temp, final)
                now = time.time()
                _write_good_replica(conn, data_id, resc_id, row[0] if row is not None else None, final, size, checksum, now)
        finally:
            temp.unlink(missing_ok=True)

    def _create_collections(self, conn: sqlite3.Connection, path: str) -> int:
        """Create ``path`` and missing parents inside an open write transaction; returns its id."""
        row = conn.execute("SELECT id FROM collections WHERE path = ?", (path,)).fetchone()
        if row:
            if self._level(conn, "c", int(row[0])) == AccessLevel.NONE:
                raise AccessDeniedError(
                    f"user {self._user!r} cannot create anything in {path}: it is not visible to them "
                    "(they hold no permission on it)"
                )
            return int(row[0])
        if conn.execute("SELECT 1 FROM data_objects WHERE path = ?", (path,)).fetchone():
            raise AlreadyExistsError(f"cannot create collection {path}: a data object has that path")
        parent = posixpath.dirname(path)
        if path == f"/{self._zone}":
            raise GridError(f"the zone collection {path} is missing from the catalog; it is damaged")
        parent_id = self._create_collections(conn, parent)
        held = self._level(conn, "c", parent_id)
        if held < AccessLevel.MODIFY:
            raise AccessDeniedError(
                f"user {self._user!r} needs modify_object on collection {parent} to create {path}"
            )
        coll_id = _row_id(conn.execute(
            "INSERT INTO collections (path, parent_id, owner_id, created) VALUES (?, ?, ?, ?)",
            (path, parent_id, self._user_id, time.time()),
        ))
        conn.execute("INSERT INTO access VALUES ('c', ?, ?, ?)", (coll_id, self._user_id, int(AccessLevel.OWN)))
        return coll_id

    def create_collection(self, path: str) -> None:
        self._check_path(path)
        with self._transaction(write=True) as conn:
            self._create_collections(conn, path)

    def put_file(self, local_path: Path, logical_path: str, resource: str, overwrite: bool = False) -> DataObject:
        self._check_path(logical_path)
        source = Path(local_path)
        if not source.is_file():
            raise GridError(f"cannot put {source} to {logical_path}: it is not a readable file")
        parent = posixpath.dirname(logical_path)
        with self._transaction(write=False) as conn:
            _, vault = self._resource_row(conn, resource)
            self._require(conn, parent, AccessLevel.MODIFY, "c")
            existing = conn.execute("SELECT id FROM data_objects WHERE path = ?", (logical_path,)).fetchone()
            if existing is not None and not overwrite:
                raise AlreadyExistsError(
                    f"data object {logical_path} already exists; overwrite it with force (iput -f / c2d local put -f)"
                )
            if conn.execute("SELECT 1 FROM collections WHERE path = ?", (logical_path,)).fetchone():
                raise AlreadyExistsError(f"cannot put a file to {logical_path}: a collection has that path")
        temp, final, checksum, size = self._copy_to_temp(source, vault, logical_path)
        try:
            with self._transaction(write=True) as conn:
                resc_id, _ = self._resource_row(conn, resource)
                kind, parent_id = self._require(conn, parent, AccessLevel.MODIFY, "c")
                row = conn.execute("SELECT id FROM data_objects WHERE path = ?", (logical_path,)).fetchone()
                now = time.time()
                if row is None:
                    data_id = conn.execute(
                        "INSERT INTO data_objects (coll_id, name, path, owner_id, created, modified) VALUES (?, ?, ?, ?, ?, ?)",
                        (parent_id, posixpath.basename(logical_path), logical_path, self._user_id, now, now),
                    ).lastrowid
                    conn.execute("INSERT INTO access VALUES ('d', ?, ?, ?)", (data_id, self._user_id, int(AccessLevel.OWN)))
                    conn.execute(
                        "INSERT INTO replicas VALUES (?, 0, ?, ?, ?, ?, 1, ?)",
                        (data_id, resc_id, str(final), size, checksum, now),
                    )
                else:
                    if not overwrite:
                        raise AlreadyExistsError(f"data object {logical_path} already exists; overwrite it with force")
                    data_id = int(row[0])
                    self._require(conn, logical_path, AccessLevel.MODIFY, "d")
                    conn.execute("UPDATE data_objects SET modified = ? WHERE id = ?", (now, data_id))
                    conn.execute("UPDATE replicas SET good = 0 WHERE data_id = ?", (data_id,))
                    here = conn.execute(
                        "SELECT repl_num FROM replicas WHERE data_id = ? AND resc_id = ?", (data_id, resc_id)
                    ).fetchone()
                    _write_good_replica(
                        conn, data_id, resc_id, here[0] if here is not None else None, final, size, checksum, now
                    )
                os.replace(temp, final)
                return self._objects(conn, "d.id = ?", (data_id,), ())[0]
        finally:
            temp.unlink(missing_ok=True)

    # --- metadata ---------------------------------------------------------------------------------
    def _entity_id(
        self, conn: sqlite3.Connection, entity_type: EntityType, name: str, for_write: bool
    ) -> int:
        entity_type = EntityType(entity_type)
        if entity_type in (EntityType.DATA_OBJECT, EntityType.COLLECTION):
            self._check_path(name)
            kind = _ENTITY_CODE[entity_type]
            needed = AccessLevel.MODIFY if for_write else AccessLevel.READ_METADATA
            return self._require(conn, name, needed, kind)[1]
        if for_write:
            self._require_admin(f"changing AVUs of {entity_type.value} {name!r}")
        table = "resources" if entity_type == EntityType.RESOURCE else "users"
        row = conn.execute(f"SELECT id FROM {table} WHERE name = ?", (name,)).fetchone()
        if row is None:
            code = CAT_INVALID_RESOURCE if entity_type == EntityType.RESOURCE else CAT_INVALID_USER
            raise ObjectNotFoundError(f"{entity_type.value} {name!r} does not exist", irods_code=code)
        return int(row[0])

    def apply_metadata(self, operations: Sequence[MetadataOperation]) -> None:
        """The whole sequence in one transaction: a failing operation leaves the catalog untouched."""
        ops = list(operations)
        if not ops:
            return
        with self._transaction(write=True) as conn:
            self._apply_operations(conn, ops, {})

    def set_avus(
        self, entity_type: EntityType, name: str, avus: Sequence[AVU], clear: Iterable[str] = ()
    ) -> None:
        """As :meth:`Grid.set_avus`, but reading the current values inside the write transaction,
        so concurrent writers setting the same attribute neither fail nor leave two values."""
        entity_type = EntityType(entity_type)
        wanted = [AVU(a.attribute, a.value, a.units or "") for a in avus]
        named = {a.attribute for a in wanted} | set(clear)
        with self._transaction(write=True) as conn:
            ids: dict[tuple[EntityType, str], int] = {}
            entity_id = self._entity_id(conn, entity_type, name, for_write=True)
            ids[(entity_type, name)] = entity_id
            current = [
                AVU(a, v, u)
                for a, v, u in conn.execute(
                    "SELECT attribute, value, units FROM avus WHERE entity_type = ? AND entity_id = ?",
                    (_ENTITY_CODE[entity_type], entity_id),
                )
                if a in named
            ]
            ops = [MetadataOperation("remove", entity_type, name, a) for a in current if a not in wanted]
            ops += [
                MetadataOperation("add", entity_type, name, a)
                for a in dict.fromkeys(wanted)
                if a not in current
            ]
            self._apply_operations(conn, ops, ids)

    def _apply_operations(
        self,
        conn: sqlite3.Connection,
        ops: Sequence[MetadataOperation],
        ids: dict[tuple[EntityType, str], int],
        *,
        strict: bool = False,
    ) -> None:
        for op in ops:
            key = (EntityType(op.entity_type), op.entity_name)
            if key not in ids:
                ids[key] = self._entity_id(conn, key[0], key[1], for_write=True)
            code = _ENTITY_CODE[key[0]]
            avu = op.avu
            where = f"{key[0].value} {op.entity_name}"
            if not isinstance(avu.attribute, str) or not avu.attribute or not isinstance(avu.value, str) or avu.value == "":
                raise GridError(
                    f"invalid AVU {avu.attribute!r}={avu.value!r} for {where}: attribute and value must be non-empty",
                    irods_code=SYS_INVALID_INPUT_PARAM,
                )
            units = avu.units or ""
            if op.operation == "add":
                # As on a real server: adding an AVU the entity carries already changes nothing.
                conn.execute(
                    "INSERT OR IGNORE INTO avus (entity_type, entity_id, attribute, value, units) VALUES (?, ?, ?, ?, ?)",
                    (code, ids[key], avu.attribute, avu.value, units),
                )
            else:
                # As on a real server: removing an AVU the entity does not carry is no error, so
                # a batch is no compare-and-swap (remove_avu is the one removal that can fail).
                cur = conn.execute(
                    "DELETE FROM avus WHERE entity_type = ? AND entity_id = ? AND attribute = ? AND value = ? AND units = ?",
                    (code, ids[key], avu.attribute, avu.value, units),
                )
                if cur.rowcount == 0 and strict:
                    raise NothingToRemoveError(
                        f"{where} has no AVU {avu.attribute!r}={avu.value!r} (units {units!r}) to remove",
                        irods_code=CAT_SUCCESS_BUT_WITH_NO_INFO,
                    )

    def add_avu(self, entity_type: EntityType, name: str, avu: AVU) -> None:
        """One AVU, refused when the entity carries it already (``imeta add``; the fake server's
        ``msiModAVUMetadata add``), unlike an atomic batch, which then changes nothing."""
        entity_type = EntityType(entity_type)
        with self._transaction(write=True) as conn:
            before = conn.total_changes
            self._apply_operations(conn, [MetadataOperation("add", entity_type, name, avu)], {})
            if conn.total_changes == before:
                raise GridError(
                    f"{entity_type.value} {name} already has the AVU {avu.attribute!r}={avu.value!r}",
                    irods_code=SYS_INVALID_INPUT_PARAM,
                )

    def remove_avu(self, entity_type: EntityType, name: str, avu: AVU) -> None:
        entity_type = EntityType(entity_type)
        with self._transaction(write=True) as conn:
            self._apply_operations(conn, [MetadataOperation("remove", entity_type, name, avu)], {}, strict=True)

    def get_avus(self, entity_type: EntityType, name: str) -> list[AVU]:
        entity_type = EntityType(entity_type)
        with self._transaction(write=False) as conn:
            entity_id = self._entity_id(conn, entity_type, name, for_write=False)
            return [
                AVU(a, v, u)
                for a, v, u in conn.execute(
                    "SELECT attribute, value, units FROM avus WHERE entity_type = ? AND entity_id = ? ORDER BY attribute, id",
                    (_ENTITY_CODE[entity_type], entity_id),
                )
            ]

    def _replica_to_read(self, path: str) -> Replica:
        """The first good replica of an object the caller may read (its file is the content)."""
        self._check_path(path)
        with self._transaction(write=False) as conn:
            _, data_id = self._require(conn, path, AccessLevel.READ, "d")
            obj = self._objects(conn, "d.id = ?", (data_id,), ())[0]
        good = [r for r in obj.replicas if r.good]
        if not good:
            raise GridError(f"data object {path} has no good replica to read")
        return good[0]

    def read_head(self, path: str, max_bytes: int) -> bytes:
        replica = self._replica_to_read(path)
        try:
            with open(replica.physical_path, "rb") as handle:
                return handle.read(max(0, max_bytes))
        except OSError as exc:
            raise GridError(f"cannot read the replica of {path}: {exc.strerror or exc}") from None

    def read_data_object(self, path: str, max_bytes: int = 16 * 1024 * 1024) -> bytes:
        replica = self._replica_to_read(path)
        if replica.size > max_bytes:
            raise GridError(f"data object {path} is {replica.size} bytes, more than the {max_bytes} allowed here")
        try:
            with open(replica.physical_path, "rb") as handle:
                return handle.read(max_bytes + 1)[: max_bytes]
        except OSError as exc:
            raise GridError(
                f"replica {replica.number} of {path} on {replica.resource_name} is missing from the vault "
                f"({replica.physical_path}): {exc.strerror}"
            ) from exc

    def read_to_file(self, path: str, local_path: Path) -> int:
        """Copy the first good replica's file (the vault stands for the server's disk here)."""
        replica = self._replica_to_read(path)
        try:
            source = open(replica.physical_path, "rb")  # noqa: SIM115 - closed below, apart from the target's errors
        except OSError as exc:
            raise GridError(
                f"replica {replica.number} of {path} on {replica.resource_name} cannot be read from the vault "
                f"({replica.physical_path}): {exc.strerror}"
            ) from exc
        with source:
            try:
                with open(local_path, "wb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
                    return target.tell()
            except OSError as exc:
                raise local_write_error(path, local_path, exc) from exc

    def find_collections_with_avu(
        self, attribute: str, value: str | None = None, under: str | None = None
    ) -> list[CollectionAVUs]:
        where = "EXISTS (SELECT 1 FROM avus v WHERE v.entity_type = 'c' AND v.entity_id = c.id AND v.attribute = ?"
        params: tuple = (attribute,)
        if value is not None:
            where += " AND v.value = ?"
            params += (value,)
        where += ")"
        if under is not None:
            self._check_path(under)
            low, high = _prefix_bounds(under)
            where += " AND (c.path = ? OR (c.path >= ? AND c.path < ?))"
            params += (under, low, high)
        acl, acl_params = self._acl_clause("c", "c", AccessLevel.READ_METADATA)
        where += f" AND {acl}"
        params += acl_params
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                f"SELECT c.id, c.path, v.attribute, v.value, v.units FROM collections c "
                f"JOIN avus v ON v.entity_type = 'c' AND v.entity_id = c.id WHERE {where} "
                "ORDER BY c.path, v.attribute, v.id",
                params,
            ).fetchall()
        grouped: dict[str, list[AVU]] = {}
        for _, path, a, v, u in rows:
            grouped.setdefault(path, []).append(AVU(a, v, u))
        return [CollectionAVUs(path, tuple(avus)) for path, avus in grouped.items()]

    # --- convenience for scripts and the CLI ------------------------------------------------------
    def put_tree(self, local_dir: Path, collection: str, resource: str, overwrite: bool = False) -> list[DataObject]:
        """``iput -r``: every file under ``local_dir`` into ``collection`` (created as needed)."""
        base = Path(local_dir)
        if not base.is_dir():
            raise GridError(f"{base} is not a directory")
        self._check_path(collection)
        self.create_collection(collection)
        made: list[DataObject] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = Path(dirpath).relative_to(base)
            coll = collection if str(rel) == "." else posixpath.join(collection, rel.as_posix())
            if coll != collection:
                self.create_collection(coll)
            for name in sorted(filenames):
                made.append(self.put_file(Path(dirpath) / name, posixpath.join(coll, name), resource, overwrite))
        return made


def _write_good_replica(
    conn: sqlite3.Connection,
    data_id: int,
    resc_id: int,
    replica_number: int | None,
    final: Path,
    size: int,
    checksum: str,
    now: float,
) -> None:
    """Refresh replica ``replica_number`` on the resource, or add the next number when None."""
    if replica_number is not None:
        conn.execute(
            "UPDATE replicas SET phys_path = ?, size = ?, checksum = ?, good = 1, modified = ? "
            "WHERE data_id = ? AND repl_num = ?",
            (str(final), size, checksum, now, data_id, replica_number),
        )
        return
    number = conn.execute(
        "SELECT COALESCE(MAX(repl_num), -1) + 1 FROM replicas WHERE data_id = ?", (data_id,)
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO replicas VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
        (data_id, number, resc_id, str(final), size, checksum, now),
    )


def _row_id(cursor: sqlite3.Cursor) -> int:
    """The id SQLite gave the row an INSERT just added."""
    if cursor.lastrowid is None:
        raise GridError("the catalog did not say which row it added")
    return int(cursor.lastrowid)
