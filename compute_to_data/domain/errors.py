"""One exception hierarchy for everything a researcher or an administrator may be told.

Every message is written for the person who has to act on it: it names the object, field or
setting involved and, where possible, what to do next. Each error carries the iRODS error it
ends a rule with (``irods_code``), so ``irule`` and scripts calling the rules see a code they
can key on. A class names its default iRODS error by *name* (``irods_error``); the code comes
from the project's one iRODS error table (:mod:`compute_to_data.domain.irods_codes`), which also
says which of these classes a code turns into when an adapter meets it.
"""

from __future__ import annotations

from typing import ClassVar

from compute_to_data.domain.irods_codes import (
    CAT_INVALID_USER,
    RULE_ENGINE_ERROR,
    code_of,
    error_name,
    lookup,
    parse_error_code,
    split_code,
)


class ComputeToDataError(Exception):
    """Base class: anything the project raises on purpose."""

    #: Name of the iRODS error this class ends a rule with unless an instance says otherwise.
    irods_error: ClassVar[str] = "SYS_INVALID_INPUT_PARAM"

    def __init__(self, message: str, *, irods_code: int | None = None) -> None:
        super().__init__(message)
        self._irods_code = irods_code

    @property
    def irods_code(self) -> int:
        """The iRODS error code for this error (the instance's own, else the class default)."""
        if self._irods_code is not None:
            return int(self._irods_code)
        return code_of(self.irods_error)

    @irods_code.setter
    def irods_code(self, value: int | None) -> None:
        self._irods_code = value

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(ComputeToDataError):
    """A task config (or a command-line value standing in for one) is invalid."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class SettingsError(ComputeToDataError):
    """The administrator's server-side settings file is missing a value or is malformed."""


class NotAllowedError(ComputeToDataError):
    """The task asks for something the server-side settings do not allow (image, limits...)."""

    irods_error = "SYS_NO_API_PRIV"


class GridError(ComputeToDataError):
    """An operation on the data grid (iRODS or the local stand-in) failed."""

    def __init__(
        self, message: str, *, irods_code: int | None = None, irods_name: str | None = None
    ) -> None:
        self.irods_name = irods_name
        super().__init__(message, irods_code=irods_code)


class GridUnreachableError(GridError):
    """The grid's server could not be reached or stopped answering (network, timeout)."""

    irods_error = "SYS_SOCK_OPEN_ERR"


class AuthenticationError(GridError):
    """The grid refused the user name or password (or no password was available)."""

    irods_error = "CAT_INVALID_AUTHENTICATION"


class ObjectNotFoundError(GridError):
    """A data object, collection, resource or user does not exist (or the caller cannot see it).

    Raise it with the code that says *what* is missing: CAT_UNKNOWN_COLLECTION for a
    collection, CAT_UNKNOWN_FILE for a data object, CAT_INVALID_RESOURCE for a resource. The
    default names a path in general; it is never CAT_NO_ROWS_FOUND, which the rule engine
    answers with a status instead of failing (so a rule could not end with it).
    """

    irods_error = "OBJ_PATH_DOES_NOT_EXIST"


class AccessDeniedError(GridError):
    """The caller lacks the permission an operation needs."""

    irods_error = "CAT_NO_ACCESS_PERMISSION"


class AlreadyExistsError(GridError):
    """The catalog already has an item by that name."""

    irods_error = "CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME"


class NothingToRemoveError(GridError):
    """Removing one AVU that is not there (``msiModAVUMetadata rm``: CAT_SUCCESS_BUT_WITH_NO_INFO).

    The one metadata write a real server refuses when another writer got there first: the
    claims of ``lifecycle/claims.py`` are built on it."""

    irods_error = "CAT_SUCCESS_BUT_WITH_NO_INFO"


class ResourceSelectionError(ComputeToDataError):
    """No compute resource fits the task."""


class NoEligibleInputsError(ComputeToDataError):
    """The input collection holds nothing the task could process."""


class StagingError(ComputeToDataError):
    """Inputs could not be made visible to the runner on the compute host."""


class RunnerError(ComputeToDataError):
    """The runner could not start or supervise the computation."""


class RunnerTimeoutError(RunnerError):
    """The computation ran longer than its wall-clock limit and was stopped."""


class TaskStateError(ComputeToDataError):
    """A task is unknown, or is in a state that does not allow the requested action."""


class ChangedSinceSubmitError(ComputeToDataError):
    """The model, labels or notebook a task pinned when it was created changed since: a run
    (a shard, a resume) would classify with another one and mix two models in one task."""


class TaskFailedError(ComputeToDataError):
    """The task ran but ended in the ``failed`` state; the message is the recorded error."""

    irods_error = "ACTION_FAILED_ERR"


class TaskCancelled(ComputeToDataError):
    """The task was cancelled (``c2d_cancel``) before or while it ran."""


class TaskBusyError(TaskStateError):
    """Another process on this host is running the task right now (it holds the task's run lock)."""


class TaskNotFoundError(ObjectNotFoundError):
    """No task by that id or task collection, or none the caller may see: one code either way.

    Scripts key on the code of "no such task", so every rule ends with CAT_UNKNOWN_COLLECTION
    for it, whether the task was named by id or by collection, and whether it does not exist or
    belongs to someone who did not share it (telling those apart would reveal other users' tasks).
    (The code is the instance's, not a class default: the table turns CAT_UNKNOWN_COLLECTION into
    the broader ObjectNotFoundError, as it must for any missing collection.)
    """

    def __init__(self, message: str, *, irods_code: int | None = None, irods_name: str | None = None) -> None:
        super().__init__(message, irods_code=code_of("CAT_UNKNOWN_COLLECTION") if irods_code is None else irods_code,
                         irods_name=irods_name or "CAT_UNKNOWN_COLLECTION")


class TaskLostError(TaskStateError):
    """The task is no longer this run's: declared dead by a reaper, or taken over by another run."""


# --- iRODS codes -> the classes above ----------------------------------------------------------
def _classes_by_kind() -> dict[str, type[ComputeToDataError]]:
    return {
        "not_found": ObjectNotFoundError,
        "denied": AccessDeniedError,
        "exists": AlreadyExistsError,
        "authentication": AuthenticationError,
        "unreachable": GridUnreachableError,
        "grid": GridError,
        "not_allowed": NotAllowedError,
        "task_failed": TaskFailedError,
        "nothing_to_remove": NothingToRemoveError,
    }


def error_class(code: int | None) -> type[ComputeToDataError]:
    """The project's exception class for ``code`` (GridError for codes the table lacks)."""
    row = lookup(code) if code is not None else None
    return _classes_by_kind()[row.kind] if row is not None else GridError


def login_error_class(code: int | None) -> type[ComputeToDataError]:
    """As :func:`error_class`, for an error met while logging in: an unknown user is a refused login."""
    cls = error_class(code)
    if code is not None and split_code(code)[0] == CAT_INVALID_USER:
        return AuthenticationError
    return cls


def make_error(code: int | None, message: str, *, irods_name: str | None = None) -> ComputeToDataError:
    """An instance of the table's class for ``code``, carrying ``code`` and its name."""
    cls = error_class(code)
    if issubclass(cls, GridError):
        name = irods_name or (error_name(code) if code is not None else None)
        return cls(message, irods_code=code, irods_name=name)
    return cls(message, irods_code=code)


def grid_error_for_code(code: int, what: str, hint: str = "") -> ComputeToDataError:
    """A typed error for ``code``: ``"<what> failed: <NAME> (<code>)[; hint]"``.

    ``what`` says which operation on which path, e.g. ``"replicating /z/home/a/x.png to gpu_resc"``.
    The class is the table's (a GridError subclass for every code a microservice answers with,
    NotAllowedError for SYS_NO_API_PRIV, TaskFailedError for a rule that ended ACTION_FAILED_ERR).
    """
    name = error_name(code)
    message = f"{what} failed: {name} ({int(code)})"
    if hint:
        message += f"; {hint}"
    return make_error(int(code), message, irods_name=name)


def to_grid_error(exc: BaseException, what: str, hint: str = "") -> ComputeToDataError:
    """Turn a ``RuntimeError`` raised by ``callback`` into the project's typed error.

    The C++ stack text of the original message is dropped; the code and its name are kept. A
    RuntimeError without an iRODS code keeps only its first line (it is a Python-level failure).
    """
    code = parse_error_code(exc)
    if code is None:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return GridError(f"{what} failed: {first_line[:300]}", irods_code=RULE_ENGINE_ERROR)
    return grid_error_for_code(code, what, hint)
