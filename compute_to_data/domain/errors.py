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
        from compute_to_data.domain.irods_codes import (
            code_of,  # the table imports this module
        )

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


class TaskFailedError(ComputeToDataError):
    """The task ran but ended in the ``failed`` state; the message is the recorded error."""

    irods_error = "ACTION_FAILED_ERR"


class TaskCancelled(ComputeToDataError):
    """The task was cancelled (``c2d_cancel``) before or while it ran."""


class TaskBusyError(TaskStateError):
    """Another process on this host is running the task right now (it holds the task's run lock)."""


class TaskLostError(TaskStateError):
    """The task is no longer this run's: declared dead by a reaper, or taken over by another run."""
