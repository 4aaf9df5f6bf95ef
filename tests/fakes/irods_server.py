"""A fake iRODS server for the Python rule engine: ``callback``, ``rei``, irule, the delay queue.

Backed by a LocalGrid catalog so state is real: every microservice acts through LocalGrid's
public methods *as the client user* (permissions enforced by LocalGrid), and GenQuery reads the
catalog (read-only) through :mod:`.irods_catalog`. Behaviour follows what a real iRODS 5.0.2
server did (docs/irods-behaviour.md; tests/grid/test_fake_server_facts.py holds the fake to it):

* ``callback.NAME(*args)`` returns ``{'status': True, 'code': 0, 'arguments': [...]}`` with the
  output slots updated; errors raise ``RuntimeError('[iRods__Error__Code:N] [-]\\t<C++ stack>')``
  except CAT_NO_ROWS_FOUND, which comes back as ``{'status': False, 'code': -808000, ...}``
  (also ``msiDataObjRepl`` on a missing object);
* only ``str``, ``int``, ``float`` and ``irods_types`` instances cross the boundary;
* ``msiCheckAccess`` takes underscored permission names (others: -130000) and raises -1105000
  for a path that is missing or that the caller cannot see; result 1/0 in ``arguments[2]``;
* ``msiCollCreate(p, "0", 0)`` on an existing collection raises -809000;
* ``msiDataObjRead`` returns a ``BytesBuf`` whose ``get_bytes()`` is a list of ints, and
  ``None`` in ``arguments[2]`` (status True, code 0) for every call at the end of the object;
* a rodsuser sees neither ``/zone`` nor ``/zone/home`` nor other users' homes (LocalGrid's
  ACLs are those of a stock zone), so ``msiCheckAccess`` raises -1105000 for them;
* ``msi_atomic_apply_metadata_operations`` is all or nothing (LocalGrid transaction), an invalid
  operation raises -130000;
* ``msiExit(code, message)`` fails the rule with that code, and irule shows the message
  (except CAT_NO_ROWS_FOUND, which ``callback`` answers with a status like any other call);
  ``writeLine('stdout', ...)`` is shown only when the rule succeeds;
* ``delayExec`` queues a Python body (wrapped into ``def expressionFcn(rule_args, callback,
  rei)``, run as the submitting user by :meth:`FakeIrodsServer.run_delay_queue`), to start
  ``PLUSET`` after it was queued on the fake's clock (:attr:`FakeIrodsServer.now`, moved on by
  :meth:`FakeIrodsServer.advance`): a run of the queue starts what is due by the delay server's
  next poll (30 s); delay and remote rule text is limited to 2,700 characters;
* ``remoteExec(host, '', 'rule("a", "b")', '')`` runs a native-language call of a Python rule
  or a microservice on ``host`` (a resource host or the server itself, also as ``localhost``):
  the rule runs as on that host (:meth:`FakeIrodsServer.current_host` says which, per thread),
  so a zone with several resource hosts runs each host's share there;
* ``msiPhyPathReg`` is refused to a rodsuser (PATH_REG_NOT_ALLOWED);
* ``msiCollRepl(coll, "destRescName=R", 0)`` replicates every object under ``coll``
  (recursively) that has no good replica on ``R``, code 0.

With ``costs`` (:mod:`.costs`) every call takes the time it took on the measured zone; several
rules may then run at once (:mod:`.delay_server`, or ``run_delay_queue(concurrency=N)``), each
thread its own agent with its own ``callback``, as on the real server.

What LocalGrid does not model is refused loudly: ``msiDataObjUnlink`` answers SYS_NOT_SUPPORTED.
"""

from __future__ import annotations

import itertools
import json
import posixpath
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compute_to_data.domain.catalog import AVU, AccessLevel, EntityType, MetadataOperation
from compute_to_data.domain.errors import ComputeToDataError, GridError, ObjectNotFoundError
from compute_to_data.domain.irods_codes import code_of, error_name, parse_error_code
from compute_to_data.grid.local import LocalGrid
from tests.fakes import irods_modules
from tests.fakes.costs import CatalogCosts, charge_name
from tests.fakes.irods_catalog import run_genquery
from tests.fakes.irods_genquery_parser import GenQueryError

CAT_NO_ROWS_FOUND = code_of("CAT_NO_ROWS_FOUND")
SYS_INVALID_INPUT_PARAM = code_of("SYS_INVALID_INPUT_PARAM")
INVALID_OBJECT_TYPE = code_of("INVALID_OBJECT_TYPE")
MAX_RULE_TEXT = 2700
#: the delay server wakes up this often (delay_server_sleep_time_in_seconds, 30 by default)
DELAY_SERVER_POLL_SECONDS = 30.0
#: PLUSET units (a bare number is seconds)
_PLUSET = re.compile(r"<PLUSET>\s*(\d+)\s*([smhdy]?)\s*</PLUSET>")
_PLUSET_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}
PYTHON_INSTANCE = "irods_rule_engine_plugin-python-instance"
NATIVE_INSTANCE = "irods_rule_engine_plugin-irods_rule_language-instance"

_PERMISSIONS = {
    "null": AccessLevel.NONE,
    "read_metadata": AccessLevel.READ_METADATA,
    "read_object": AccessLevel.READ,
    "modify_object": AccessLevel.MODIFY,
    "delete_object": AccessLevel.OWN,  # 1130 in iRODS; LocalGrid knows no level between modify and own
    "own": AccessLevel.OWN,
}
#: calls charged per object they handle, inside the call
_CHARGED_PER_OBJECT = frozenset({"msiCollRepl"})
_FLAGS = {"-d": EntityType.DATA_OBJECT, "-C": EntityType.COLLECTION, "-R": EntityType.RESOURCE, "-u": EntityType.USER}


def irods_error(code: int, message: str) -> RuntimeError:
    """The exception ``callback`` raises: the code first, then C++ locations nobody should show."""
    return RuntimeError(
        f"[iRods__Error__Code:{code}] [-]\t/irods_source/server/re/src/irods_re_plugin.cpp:317:"
        f"irods::error irods::rule_engine_context_manager::exec_microservice_adapter :  "
        f"status [{error_name(code)}]  errno [] -- message [{message}]\n"
        "\t[-]\t/irods_source/plugins/rule_engines/python/irods_rule_engine_plugin-python.cxx:1214:"
        "boost::python::object callback_wrapper :  status [RULE_ENGINE_ERROR]"
    )


def _code_of(exc: ComputeToDataError) -> int:
    """The iRODS code LocalGrid put on its error (each typed error has a default)."""
    return int(exc.irods_code)


def _parse_options(text: str) -> dict[str, str]:
    """``key=value++++key2=`` -> dict; a part without '=' is malformed (INVALID_KVP_STRING)."""
    options: dict[str, str] = {}
    if not text:
        return options
    for part in text.split("++++"):
        if "=" not in part:
            raise irods_error(code_of("INVALID_KVP_STRING"), f"malformed option string {text!r}")
        key, _, value = part.partition("=")
        options[key] = value
    return options


@dataclass
class DelayedRule:
    id: int
    user: str
    zone: str
    hints: str
    body: str
    instance: str
    #: when the delay server may start it (the fake's clock, seconds)
    not_before: float = 0.0


@dataclass
class RuleRun:
    """What ``irule`` would show: exit status, stdout (only on success) and the error text."""

    code: int
    stdout: str
    error: str = ""
    rule_args: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code >= 0

    @property
    def error_name(self) -> str:
        return error_name(self.code) if self.code < 0 else ""


class FakeRei:
    """The rule execution instance: session variables, this execution's stdout."""

    def __init__(self, user: str, zone: str, user_type: str, host: str, data_object: Mapping[str, str] | None = None):
        client = {"user_name": user, "irods_zone": zone, "user_type": user_type}
        self.session: dict[str, Any] = {
            "client_user": dict(client),
            "proxy_user": dict(client),
            "plugin_instance_name": PYTHON_INSTANCE,
        }
        if data_object is not None:
            self.session["data_object"] = dict(data_object)
        self.host = host
        self.stdout: list[str] = []
        self.exit: tuple[int, str] | None = None


@dataclass
class _Open:
    mode: str
    path: str
    resource: str = ""
    force: bool = False
    data: bytes = b""
    position: int = 0
    spool: Any = None


class FakeIrodsServer:
    """One zone's server as the rule engine sees it. ``host`` is where rules run by default."""

    def __init__(
        self,
        grid_root: str | Path,
        rulebase: Mapping[str, Callable[..., Any]] | None = None,
        *,
        host: str = "irods-provider",
        acl_policy: str = "open",
        costs: CatalogCosts | None = None,
    ) -> None:
        irods_modules.install()
        self.root = Path(grid_root)
        self.admin = LocalGrid(self.root, "rods")
        self.catalog = self.admin.catalog_path
        self.zone = self.admin.zone
        self.host = host
        self.acl_policy = acl_policy
        self.rules: dict[str, Callable[..., Any]] = dict(rulebase or {})
        self.delay_queue: list[DelayedRule] = []
        #: the delay server's clock (seconds since the epoch); only advance() moves it
        self.now = time.time()
        self.server_log: list[str] = []
        self.remote_calls: list[tuple[str, str]] = []
        self.calls: Counter[str] = Counter()
        #: fault injection: microservice name -> N: its call N+1 fails once (SYS_INTERNAL_ERR
        #: -154000, as a catalog hiccup would answer), the calls around it succeed
        self.faults: dict[str, int] = {}
        self.queries: list[tuple[str, str]] = []
        #: microservices a callback was asked for from another thread than its rule's (must stay empty)
        self.cross_thread_calls: list[str] = []
        self._ids = itertools.count(10001)
        self._fds = itertools.count(3)
        self._open: dict[int, _Open] = {}
        self._cursors: dict[int, tuple[list[tuple[str, ...]], int]] = {}
        #: what each call costs (None: nothing, the default in tests)
        self.costs = costs
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def host_stack(self) -> list[str]:
        """The hosts of the rules running in this thread, innermost last (each thread is an agent)."""
        stack = getattr(self._local, "hosts", None)
        if stack is None:
            stack = self._local.hosts = []
        return stack

    def count_call(self, name: str) -> int:
        """One more call of ``name``; returns how many there were (fault injection counts them)."""
        with self._lock:
            self.calls[name] += 1
            return self.calls[name]

    # --- rulebase -------------------------------------------------------------------------------
    def load_rulebase(self, module: Any, names: list[str] | None = None) -> None:
        """What ``from module import *`` in core.py makes callable by name."""
        for name in names or module.__all__:
            self.rules[name] = getattr(module, name)

    # --- sessions -------------------------------------------------------------------------------
    def user_type(self, user: str) -> str:
        for name, kind in self.admin.list_users():
            if name == user:
                return kind
        raise KeyError(f"no user {user!r} in the fake zone")

    def rei(self, user: str, host: str | None = None, data_object: Mapping[str, str] | None = None) -> FakeRei:
        return FakeRei(user, self.zone, self.user_type(user), host or self.host, data_object)

    def callback(self, user: str = "alice", host: str | None = None, rei: FakeRei | None = None) -> "FakeCallback":
        rei = rei or self.rei(user, host)
        return FakeCallback(self, rei)

    def session(self, user: str = "alice", host: str | None = None) -> tuple["FakeCallback", FakeRei]:
        """(callback, rei) of a rule running as ``user`` on ``host``, for code that takes both."""
        rei = self.rei(user, host)
        return FakeCallback(self, rei), rei

    def current_host(self) -> str:
        """The host the innermost running rule executes on."""
        return self.host_stack[-1] if self.host_stack else self.host

    def known_hosts(self) -> set[str]:
        """This server (also as ``localhost``) and every resource's host."""
        return {self.host, "localhost"} | {r.host for r in self.admin.list_resources()}

    # --- running rules as irule and the delay server would ------------------------------------------
    def _execute(self, fn: Callable[..., Any], rule_args: list[str], rei: FakeRei) -> RuleRun:
        callback = FakeCallback(self, rei)
        self.host_stack.append(rei.host)
        try:
            result = fn(rule_args, callback, rei)
        except Exception as exc:  # noqa: BLE001 - what the plugin does with any exception
            code = parse_error_code(exc)
            if code is None:
                code = -1
            message = rei.exit[1] if rei.exit else ("Unknown iRODS error" if code == -1 else error_name(code))
            return RuleRun(code, "", message, rule_args)
        finally:
            self.host_stack.pop()
        if isinstance(result, int) and not isinstance(result, bool) and result < 0:
            return RuleRun(result, "", error_name(result), rule_args)
        return RuleRun(0, "".join(rei.stdout), "", rule_args)

    def irule(self, rule: str, *args: str, user: str = "alice", host: str | None = None) -> RuleRun:
        """``irule -r irods_rule_engine_plugin-irods_rule_language-instance -F rule.r "*arg='...'"``:
        the Python rule gets its arguments as a list of unquoted strings."""
        if rule not in self.rules:
            return RuleRun(code_of("NO_RULE_OR_MSI_FUNCTION_FOUND_ERR"), "", f"no rule {rule}")
        return self._execute(self.rules[rule], [str(a) for a in args], self.rei(user, host))

    def advance(self, seconds: float) -> None:
        """Let time pass for the delay server (rules queued with a PLUSET become due)."""
        self.now += seconds

    def due_rules(self) -> list[DelayedRule]:
        """What the delay server's next poll starts: the rules due by then, in the order queued."""
        return [e for e in self.delay_queue if e.not_before <= self.now + DELAY_SERVER_POLL_SECONDS]

    def run_delay_queue(self, limit: int | None = None, concurrency: int = 1) -> list[RuleRun]:
        """Run the queued rules that are due, in order, as the delay server does (as their
        submitting user); rules they queue run too when they are due by the same poll. With
        ``concurrency`` > 1, that many at once, each in a thread of its own (an agent each)."""
        if concurrency <= 1:
            runs = []
            while limit is None or len(runs) < limit:
                entry = self.take_delayed()
                if entry is None:
                    break
                runs.append(self.run_delayed(entry))
            return runs
        from concurrent.futures import ThreadPoolExecutor

        done: list[RuleRun] = []
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="delay-executor") as pool:
            while limit is None or len(done) < limit:
                batch: list[DelayedRule] = []
                while limit is None or len(done) + len(batch) < limit:
                    entry = self.take_delayed()
                    if entry is None:
                        break
                    batch.append(entry)
                if not batch:
                    break
                done.extend(pool.map(self.run_delayed, batch))
        return done

    def take_delayed(self) -> DelayedRule | None:
        """The oldest rule due by the delay server's next poll, off the queue (None: none is due)."""
        with self._lock:
            due = self.due_rules()
            if not due:
                return None
            self.delay_queue.remove(due[0])
            return due[0]

    def run_delayed(self, entry: DelayedRule) -> RuleRun:
        """Run one queued rule as its submitting user (the delay server's executor does this)."""
        if entry.instance != PYTHON_INSTANCE:
            raise AssertionError(f"fake delay server runs Python bodies only, not {entry.instance}")
        source = "def expressionFcn(rule_args, callback, rei):\n" + "\n".join(
            "    " + line for line in entry.body.splitlines()
        )
        namespace: dict[str, Any] = {}
        exec(compile(source, f"<delayed rule {entry.id}>", "exec"), namespace)  # noqa: S102 - the plugin does this
        return self._execute(namespace["expressionFcn"], [], self.rei(entry.user))

    def put(
        self, local: Path, logical: str, user: str = "alice", resource: str = "lts_resc", pep: str = "acPostProcForPut"
    ) -> RuleRun | None:
        """``iput``: the object is created, then the PEP (if the rulebase defines it) runs."""
        LocalGrid(self.root, user).put_file(Path(local), logical, resource)
        if pep not in self.rules:
            return None
        replica = self.admin.get_data_object(logical).good_replica_on(resource)
        rei = self.rei(user, data_object={
            "object_path": logical, "resource_name": resource,
            "file_path": replica.physical_path if replica else "",
        })
        return self._execute(self.rules[pep], [], rei)


class FakeCallback:
    """``callback`` of one rule execution: microservices, rules by name, GenQuery."""

    def __init__(self, server: FakeIrodsServer, rei: FakeRei) -> None:
        self._server = server
        self._rei = rei
        self._user = rei.session["client_user"]["user_name"]
        self._grid: LocalGrid | None = None
        #: the thread of this rule's agent: the real server's callback must never be called from another
        self._thread: int | None = None

    @property
    def grid(self) -> LocalGrid:
        """The catalog as this rule's user; one per callback (a rule's calls come from one
        thread), so a call costs no new catalog connection."""
        if self._grid is None:
            self._grid = LocalGrid(self._server.root, self._user)
        return self._grid

    def __getattr__(self, name: str) -> Callable[..., dict]:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(type(self), "msi_" + name, None)
        if method is not None:
            # a call's time on the fake starts here: its handling of the call is part of what
            # the measured call cost (tests/fakes/costs.py, ``serve``)
            arrived = self._server.costs.clock() if self._server.costs is not None else 0.0

            def call(*args: Any) -> dict:
                self._check_thread(name)
                self._check_args(name, args)
                count = self._server.count_call(name)
                if name in self._server.faults and count == self._server.faults[name] + 1:
                    raise irods_error(-154000, f"{name} failed (injected fault)")
                if self._server.costs is not None and name not in _CHARGED_PER_OBJECT:
                    return self._server.costs.serve(self._charge_name(name, args), lambda: method(self, *args),
                                                    started=arrived)
                return method(self, *args)
            return call
        if name in self._server.rules:
            return lambda *args: self._call_rule(name, args)
        def missing(*args: Any) -> dict:
            raise irods_error(code_of("NO_RULE_OR_MSI_FUNCTION_FOUND_ERR"), f"no rule or microservice named {name}")
        return missing

    def _check_thread(self, name: str) -> None:
        """The rule engine's callback belongs to the agent's thread: a call from another thread
        (a reader, a tagger started by the rule) would crash the real server's agent."""
        current = threading.get_ident()
        if self._thread is None:
            self._thread = current
        elif self._thread != current:
            self._server.cross_thread_calls.append(name)
            raise RuntimeError(f"fake callback: {name} called from a second thread; the rule engine's callback "
                               "must only be called from the rule's own thread")

    def _charge_name(self, name: str, args: tuple) -> str:
        """What a call is charged as: closing a written object registers a replica, closing a
        read one does not; ``msiModAVUMetadata`` by its operation (:func:`.costs.charge_name`)."""
        if name == "msiDataObjClose" and args:
            handle = self._server._open.get(int(args[0])) if str(args[0]).lstrip("-").isdigit() else None
            return f"{name} {'write' if handle is not None and handle.mode == 'w' else 'read'}"
        return charge_name(name, args)

    @staticmethod
    def _check_args(name: str, args: tuple) -> None:
        allowed = (
            str, int, float, irods_modules.BytesBuf, irods_modules.KeyValPair, irods_modules.RodsObjStat,
            irods_modules.GenQueryInp, irods_modules.GenQueryOut,
        )
        for i, arg in enumerate(args):
            if isinstance(arg, bool) or not isinstance(arg, allowed):
                raise TypeError(
                    f"fake callback: argument {i} of {name} is a {type(arg).__name__}; the rule engine "
                    "takes str, int, float and irods_types instances only"
                )

    @staticmethod
    def _ok(args: list[Any]) -> dict:
        return {"status": True, "code": 0, "arguments": args}

    @staticmethod
    def _no_rows(args: list[Any]) -> dict:
        return {"status": False, "code": CAT_NO_ROWS_FOUND, "arguments": args}

    def _fail(self, exc: ComputeToDataError, args: list[Any] | None = None) -> dict:
        code = _code_of(exc)
        if code == CAT_NO_ROWS_FOUND:
            return self._no_rows(list(args or []))
        raise irods_error(code, str(exc))

    def _call_rule(self, name: str, args: tuple) -> dict:
        rule_args = [str(a) for a in args]
        self._server.host_stack.append(self._rei.host)
        try:
            result = self._server.rules[name](rule_args, self, self._rei)
        except RuntimeError as exc:
            if parse_error_code(exc) is None:
                raise irods_error(code_of("RULE_ENGINE_ERROR"), f"rule {name} failed: {exc}") from None
            raise
        except Exception as exc:  # noqa: BLE001
            raise irods_error(code_of("RULE_ENGINE_ERROR"), f"rule {name} raised {type(exc).__name__}: {exc}") from None
        finally:
            self._server.host_stack.pop()
        if isinstance(result, int) and not isinstance(result, bool) and result < 0:
            raise irods_error(result, f"rule {name} returned {result}")
        return self._ok(rule_args)

    # --- output -----------------------------------------------------------------------------------
    def msi_writeLine(self, stream: str, text: str) -> dict:
        if stream == "stdout":
            self._rei.stdout.append(f"{text}\n")
        elif stream == "serverLog":
            self._server.server_log.append(text)
        else:
            raise irods_error(SYS_INVALID_INPUT_PARAM, f"unknown stream {stream!r}")
        return self._ok([stream, text])

    def msi_msiExit(self, code: str, message: str) -> dict:
        value = int(code)
        if value == CAT_NO_ROWS_FOUND:  # callback's one code that comes back as a status
            return self._no_rows([code, message])
        self._rei.exit = (value, message)
        raise irods_error(value, message)

    # --- access -------------------------------------------------------------------------------------
    def msi_msiCheckAccess(self, path: str, permission: str, result: Any) -> dict:
        if permission not in _PERMISSIONS:
            raise irods_error(SYS_INVALID_INPUT_PARAM, f"invalid permission name {permission!r}")
        try:
            allowed = self.grid.has_access(path, _PERMISSIONS[permission])
        except ObjectNotFoundError:
            raise irods_error(INVALID_OBJECT_TYPE, f"{path} is neither a data object nor a collection") from None
        except GridError as exc:
            return self._fail(exc)
        return self._ok([path, permission, 1 if allowed else 0])

    # --- collections and replicas ----------------------------------------------------------------
    def msi_msiCollCreate(self, path: str, parents: str, status: Any) -> dict:
        grid = self.grid
        try:
            if parents != "1":
                if self._server.admin.collection_exists(path):
                    raise irods_error(code_of("CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME"), f"collection {path} exists")
                if not self._server.admin.collection_exists(posixpath.dirname(path)):
                    raise irods_error(code_of("CAT_UNKNOWN_COLLECTION"), f"parent of {path} does not exist")
            grid.create_collection(path)
        except ComputeToDataError as exc:
            return self._fail(exc)
        return self._ok([path, parents, 0])

    def _destination(self, name: str, options: str) -> str:
        """The ``destRescName`` of a replication's options, which must name a resource."""
        resource = _parse_options(options).get("destRescName")
        if not resource:
            raise irods_error(SYS_INVALID_INPUT_PARAM, f"{name} needs destRescName")
        if resource not in {r.name for r in self._server.admin.list_resources()}:
            raise irods_error(code_of("SYS_RESC_DOES_NOT_EXIST"), f"resource {resource} does not exist")
        return resource

    def msi_msiDataObjRepl(self, path: str, options: str, status: Any) -> dict:
        resource = self._destination("msiDataObjRepl", options)
        try:
            self.grid.replicate(path, resource)
        except ObjectNotFoundError:
            return self._no_rows([path, options, status])  # observed: no exception, status False
        except ComputeToDataError as exc:
            return self._fail(exc, [path, options, status])
        return self._ok([path, options, 0])

    def msi_msiCollRepl(self, collection: str, options: str, status: Any) -> dict:
        """Every object under ``collection`` (recursively) gets a good replica on destRescName;
        objects that have one already are left alone (as ``msiDataObjRepl`` leaves them)."""
        resource = self._destination("msiCollRepl", options)
        grid = self.grid
        try:
            if not grid.collection_exists(collection):
                raise ObjectNotFoundError(f"collection {collection} does not exist", irods_code=code_of("CAT_UNKNOWN_COLLECTION"))
            objects = grid.list_data_objects(collection, recursive=True)
            if self._server.costs is not None:
                self._server.costs.charge("msiCollRepl", len(objects))
            for obj in objects:
                grid.replicate(obj.path, resource)
        except ComputeToDataError as exc:
            return self._fail(exc, [collection, options, status])
        return self._ok([collection, options, 0])

    # --- data objects -------------------------------------------------------------------------------
    def msi_msiDataObjCreate(self, path: str, options: str, fd: Any) -> dict:
        opts = _parse_options(options)
        resource = opts.get("destRescName", "")
        force = "forceFlag" in opts
        admin = self._server.admin
        if not resource and admin.data_object_exists(path):  # the zone's default: where it lives
            resource = admin.get_data_object(path).replicas[0].resource_name
        if resource not in {r.name for r in admin.list_resources()}:
            raise irods_error(code_of("SYS_RESC_DOES_NOT_EXIST"), f"resource {resource!r} does not exist")
        grid = self.grid
        parent = posixpath.dirname(path)
        try:
            if admin.collection_exists(path):
                raise irods_error(code_of("CAT_NAME_EXISTS_AS_COLLECTION"), f"{path} is a collection")
            if not grid.collection_exists(parent):
                raise irods_error(code_of("CAT_UNKNOWN_COLLECTION"), f"collection {parent} does not exist")
            if not grid.has_access(parent, AccessLevel.MODIFY):
                raise irods_error(code_of("CAT_NO_ACCESS_PERMISSION"), f"no permission to create in {parent}")
            if admin.data_object_exists(path):
                # observed: creating an object that exists succeeds without forceFlag (no exclusive create)
                force = True
                if not grid.data_object_exists(path) or not grid.has_access(path, AccessLevel.MODIFY):
                    raise irods_error(code_of("CAT_NO_ACCESS_PERMISSION"), f"no permission to overwrite {path}")
        except ComputeToDataError as exc:
            return self._fail(exc)
        number = next(self._server._fds)
        spool = tempfile.NamedTemporaryFile(prefix="fake-irods-", delete=False)
        self._server._open[number] = _Open("w", path, resource, force, spool=spool)
        return self._ok([path, options, number])

    def msi_msiDataObjWrite(self, fd: int, data: Any, written: Any) -> dict:
        handle = self._handle(fd, "w")
        if isinstance(data, str):
            payload = data.encode("utf-8")
        elif isinstance(data, irods_modules.BytesBuf):
            payload = bytes(data.get_bytes())
        else:
            raise TypeError(f"msiDataObjWrite takes a str or a BytesBuf, not {type(data).__name__}")
        handle.spool.write(payload)
        return self._ok([fd, data, len(payload)])

    def msi_msiDataObjOpen(self, spec: str, fd: Any) -> dict:
        opts = _parse_options(spec) if "=" in spec else {"objPath": spec}
        path = opts.get("objPath", "")
        try:
            size = self.grid.get_data_object(path).size
            data = self.grid.read_data_object(path, max_bytes=max(size, 1))
        except ComputeToDataError as exc:
            return self._fail(exc)
        number = next(self._server._fds)
        self._server._open[number] = _Open("r", path, data=data)
        return self._ok([spec, number])

    def msi_msiDataObjRead(self, fd: int, length: Any, buffer: Any) -> dict:
        handle = self._handle(fd, "r")
        count = int(length)
        chunk = handle.data[handle.position : handle.position + count]
        handle.position += len(chunk)
        if not chunk:  # observed: at the end of the object there is no buffer at all
            return self._ok([fd, length, None])
        out = irods_modules.BytesBuf()
        out.set_buffer(chunk)
        return self._ok([fd, length, out])

    def msi_msiDataObjClose(self, fd: int, status: Any) -> dict:
        handle = self._handle(fd, None)
        del self._server._open[int(fd)]
        if handle.mode == "w":
            handle.spool.close()
            try:
                self.grid.put_file(Path(handle.spool.name), handle.path, handle.resource, overwrite=handle.force)
            except ComputeToDataError as exc:
                return self._fail(exc)
            finally:
                Path(handle.spool.name).unlink(missing_ok=True)
        return self._ok([fd, 0])

    def msi_msiPhyPathReg(self, path: str, resource: str, physical: str, kind: str, status: Any) -> dict:
        """Registration in place: refused to a rodsuser by the default policy (observed)."""
        if self._rei.session["client_user"]["user_type"] != "rodsadmin":
            raise irods_error(code_of("PATH_REG_NOT_ALLOWED"), f"{self._user} may not register {physical}")
        raise irods_error(code_of("SYS_NOT_SUPPORTED"), "the fake server (LocalGrid) does not model registration")

    def msi_msiDataObjUnlink(self, spec: str, status: Any) -> dict:
        raise irods_error(code_of("SYS_NOT_SUPPORTED"), "the fake server (LocalGrid) does not model deletion")

    def msi_msiDataObjChksum(self, path: str, flags: str, checksum: Any) -> dict:
        try:
            obj = self.grid.get_data_object(path)
        except ComputeToDataError as exc:
            return self._fail(exc)
        return self._ok([path, flags, obj.checksum])

    def msi_msiObjStat(self, path: str, stat: Any) -> dict:
        try:
            obj = self.grid.get_data_object(path)
        except ComputeToDataError as exc:
            return self._fail(exc)
        out = irods_modules.RodsObjStat()
        out.objSize = obj.size
        return self._ok([path, out])

    def _handle(self, fd: Any, mode: str | None) -> _Open:
        handle = self._server._open.get(int(fd))
        if handle is None or (mode is not None and handle.mode != mode):
            raise irods_error(code_of("SYS_BAD_FILE_DESCRIPTOR"), f"bad file descriptor {fd}")
        return handle

    # --- metadata -------------------------------------------------------------------------------------
    def msi_msi_atomic_apply_metadata_operations(self, text: str, output: str) -> dict:
        try:
            doc = json.loads(text)
            kind = EntityType(doc["entity_type"])
            name = doc["entity_name"]
            operations = [
                MetadataOperation(op["operation"], kind, name, AVU(op["attribute"], op["value"], op.get("units", "")))
                for op in doc["operations"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise irods_error(SYS_INVALID_INPUT_PARAM, f"invalid atomic metadata request: {exc}") from None
        for op in operations:
            if not op.avu.attribute or not op.avu.value:
                raise irods_error(SYS_INVALID_INPUT_PARAM, "attribute and value must not be empty")
        if kind == EntityType.DATA_OBJECT and not self.grid.data_object_exists(name):
            # observed: -130000 for a data object that does not exist, not CAT_UNKNOWN_FILE
            raise irods_error(SYS_INVALID_INPUT_PARAM, f"no data object {name}")
        try:
            self.grid.apply_metadata(operations)
        except ComputeToDataError as exc:
            return self._fail(exc, [text, output])
        return self._ok([text, "{}"])

    def msi_msiModAVUMetadata(self, flag: str, name: str, operation: str, attribute: str, value: str, units: str) -> dict:
        args = [flag, name, operation, attribute, value, units]
        if "null" in args or flag not in _FLAGS or not attribute or not value:
            raise irods_error(SYS_INVALID_INPUT_PARAM, f"invalid msiModAVUMetadata arguments {args!r}")
        kind = _FLAGS[flag]
        avu = AVU(attribute, value, units)
        try:
            if operation == "add":
                self.grid.add_avu(kind, name, avu)
            elif operation == "rm":  # observed: -819000 when the AVU is not there
                self.grid.remove_avu(kind, name, avu)
            elif operation == "set":
                self.grid.set_avus(kind, name, [avu])
            else:
                raise irods_error(SYS_INVALID_INPUT_PARAM, f"unknown operation {operation!r}")
        except ComputeToDataError as exc:
            return self._fail(exc, args)
        return self._ok(args)

    # --- GenQuery (used by the fake genquery module) ----------------------------------------------
    def msi_msiMakeGenQuery(self, columns: str, conditions: str, inp: Any) -> dict:
        gqi = irods_modules.GenQueryInp()
        gqi.columns = [c.strip() for c in columns.split(",") if c.strip()]
        gqi.conditions = conditions
        return self._ok([columns, conditions, gqi])

    def msi_msiExecGenQuery(self, gqi: Any, out: Any) -> dict:
        self._server.queries.append((", ".join(gqi.columns), gqi.conditions))
        try:
            rows = run_genquery(self._server.catalog, self._user, gqi.columns, gqi.conditions, self._server.acl_policy)
        except GenQueryError as exc:
            raise irods_error(exc.code, str(exc)) from None
        rows = rows[gqi.rowOffset :]
        if not rows:
            return self._no_rows([gqi, irods_modules.GenQueryOut()])
        return self._ok([gqi, self._page(rows, gqi, len(rows))])

    def msi_msiGetMoreRows(self, gqi: Any, gqo: Any, index: Any) -> dict:
        cursor = self._server._cursors.pop(gqo.continueInx, None)
        if cursor is None:
            return self._ok([gqi, irods_modules.GenQueryOut(), 0])
        rows, total = cursor
        if gqi.options & irods_modules.AUTO_CLOSE:
            page = self._page(rows, gqi, total)
            self._server._cursors.pop(page.continueInx, None)
            page.continueInx = 0
            return self._ok([gqi, page, 0])
        page = self._page(rows, gqi, total)
        return self._ok([gqi, page, page.continueInx])

    def _page(self, rows: list[tuple[str, ...]], gqi: Any, total: int) -> Any:
        size = max(1, min(int(gqi.maxRows or irods_modules.MAX_SQL_ROWS), irods_modules.MAX_SQL_ROWS))
        head, rest = rows[:size], rows[size:]
        index = 0
        if rest:
            index = next(self._server._ids)
            self._server._cursors[index] = (rest, total)
        return irods_modules.GenQueryOut().fill(head, len(gqi.columns), index, total)

    # --- delayed and remote execution --------------------------------------------------------------
    def msi_delayExec(self, hints: str, body: str, recovery: str) -> dict:
        match = re.search(r"<INST_NAME>(.*?)</INST_NAME>", hints)
        if match is None:
            raise AssertionError("fake server: delayExec without INST_NAME would be offered to every engine")
        if len(hints) + len(body) > MAX_RULE_TEXT:
            raise irods_error(code_of("RE_RUNTIME_ERROR"), f"delayed rule text is {len(hints) + len(body)} characters, over {MAX_RULE_TEXT}")
        if match.group(1) == PYTHON_INSTANCE:
            compile("def expressionFcn(rule_args, callback, rei):\n" + "\n".join("    " + l for l in body.splitlines()),
                    "<delayed>", "exec")
        delay = 0.0
        if "<PLUSET>" in hints:
            pluset = _PLUSET.search(hints)
            if pluset is None:
                raise irods_error(code_of("RE_RUNTIME_ERROR"), f"malformed PLUSET in delay hints {hints!r}")
            delay = float(int(pluset.group(1)) * _PLUSET_UNITS[pluset.group(2)])
        entry = DelayedRule(next(self._server._ids), self._user, self._server.zone, hints, body, match.group(1),
                            not_before=self._server.now + delay)
        self._server.delay_queue.append(entry)
        return self._ok([hints, body, recovery])

    _NATIVE_CALL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*;?\s*')
    _NATIVE_ARG = re.compile(r'\s*"([A-Za-z0-9_=./:@+-]*)"\s*')

    def msi_remoteExec(self, host: str, hints: str, rule_text: str, recovery: str) -> dict:
        if host not in self._server.known_hosts():
            raise irods_error(code_of("SYS_INVALID_SERVER_HOST"), f"host {host!r} is not a server of this zone")
        if len(rule_text) > MAX_RULE_TEXT:
            raise irods_error(code_of("RE_RUNTIME_ERROR"), f"remote rule text is {len(rule_text)} characters, over {MAX_RULE_TEXT}")
        match = self._NATIVE_CALL.fullmatch(rule_text)
        if match is None:
            raise irods_error(code_of("RE_PARSER_ERROR"), f"cannot parse native rule text {rule_text!r}")
        name, raw_args = match.groups()
        args = []
        for part in raw_args.split(",") if raw_args.strip() else []:
            arg = self._NATIVE_ARG.fullmatch(part)
            if arg is None:
                raise irods_error(code_of("RE_PARSER_ERROR"), f"fake server: argument {part!r} is not a plain string literal")
            args.append(arg.group(1))
        rei = FakeRei(self._user, self._server.zone, self._rei.session["client_user"]["user_type"], host)
        if name not in self._server.rules:
            if getattr(type(self), "msi_" + name, None) is None:
                raise irods_error(code_of("NO_RULE_OR_MSI_FUNCTION_FOUND_ERR"), f"no rule named {name} on {host}")
            self._server.remote_calls.append((host, rule_text))
            getattr(FakeCallback(self._server, rei), name)(*args)  # a microservice, e.g. writeLine
            return self._ok([host, hints, rule_text, recovery])
        self._server.remote_calls.append((host, rule_text))
        run = self._server._execute(self._server.rules[name], args, rei)
        if not run.ok:
            raise irods_error(run.code, run.error or f"remote rule {name} failed on {host}")
        return self._ok([host, hints, rule_text, recovery])
