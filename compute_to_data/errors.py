"""One exception hierarchy for everything a researcher or an administrator may be told.

Every message is written for the person who has to act on it: it names the object, field or
setting involved and, where possible, what to do next. iRODS error codes are kept on the
exception so the rule entry points can hand them back to ``irule`` unchanged.
"""

from __future__ import annotations


class ComputeToDataError(Exception):
    """Base class: anything the project raises on purpose."""

    #: iRODS error code used when this error ends a rule (see ``rules.py``); SYS_INVALID_INPUT_PARAM.
    irods_code: int = -130000

    def __init__(self, message: str, *, irods_code: int | None = None) -> None:
        super().__init__(message)
        if irods_code is not None:
            self.irods_code = irods_code

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

    irods_code = -13000  # SYS_NO_API_PRIV


class GridError(ComputeToDataError):
    """An operation on the data grid (iRODS or the local stand-in) failed."""

    def __init__(
        self, message: str, *, irods_code: int | None = None, irods_name: str | None = None
    ) -> None:
        self.irods_name = irods_name
        super().__init__(message, irods_code=irods_code)


class AuthenticationError(GridError):
    """The grid refused the user name or password (or no password was available)."""

    irods_code = -826000  # CAT_INVALID_AUTHENTICATION


class ObjectNotFoundError(GridError):
    """A data object, collection, resource or user does not exist (or the caller cannot see it)."""

    irods_code = -808000  # CAT_NO_ROWS_FOUND


class AccessDeniedError(GridError):
    """The caller lacks the permission an operation needs."""

    irods_code = -818000  # CAT_NO_ACCESS_PERMISSION


class AlreadyExistsError(GridError):
    """The catalog already has an item by that name."""

    irods_code = -809000  # CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME


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


class TaskCancelled(ComputeToDataError):
    """The task was cancelled (``c2d_cancel``) before or while it ran."""


class TaskBusyError(TaskStateError):
    """Another process on this host is running the task right now (it holds the task's run lock)."""


class TaskLostError(TaskStateError):
    """The task is no longer this run's: declared dead by a reaper, or taken over by another run."""
