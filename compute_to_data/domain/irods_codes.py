"""The project's one iRODS error table: code -> name -> kind of failure (a leaf: the errors module maps kinds to classes).

Every adapter turns the iRODS errors it meets into the project's typed errors through this
table: the rule-engine adapter (``RuntimeError('[iRods__Error__Code:N] ...')`` raised by
``callback``), the python-irodsclient adapter (PRC's exceptions, which carry the same codes)
and LocalGrid (which raises with these codes so that the fake server can hand them on). The
classes in :mod:`compute_to_data.domain.errors` name their default code here too, so a code means one
thing everywhere.

Inside the server the message of a failed call starts with ``[iRods__Error__Code:<code>] [-]\\t``
and goes on with C++ source locations and stack text (docs/irods-behaviour.md). Researchers
must never see that text: :func:`parse_error_code` takes the code out, :func:`error_name` names
it, and :func:`to_grid_error` turns it into a typed error whose message says what failed, on
what, and the iRODS name.

Codes are ``-mmmmnnn``: ``mmmm000`` is the iRODS error, ``nnn`` an optional ``errno``
(``-510002`` is UNIX_FILE_OPEN_ERR with ENOENT). The table holds the codes this project can meet
(values from iRODS ``rodsErrorTable.h``, the same as python-irodsclient's ``irods.exception``);
unknown codes are shown as numbers and become :class:`GridError`.

One code has two readings in iRODS: CAT_INVALID_USER is what a login naming an unknown user
gets, and what naming an unknown user anywhere else gets. The table says "not found"; the
python-irodsclient adapter reports it as a refused login while it logs in
(:func:`login_error_class`), which is the only place the project meets it that way.
"""

from __future__ import annotations

import errno as _errno
import re
from dataclasses import dataclass

#: What kind of failure a code is; :mod:`compute_to_data.domain.errors` turns a kind into its class.
_NOT_FOUND = "not_found"
_DENIED = "denied"
_EXISTS = "exists"
_AUTH = "authentication"
_NET = "unreachable"
GridError = "grid"
NotAllowedError = "not_allowed"
TaskFailedError = "task_failed"


@dataclass(frozen=True)
class IrodsError:
    """One row of the table."""

    code: int
    name: str
    #: the kind of failure (``not_found``, ``denied``, ...): the errors module maps it to a class
    kind: str


TABLE: tuple[IrodsError, ...] = tuple(
    IrodsError(code, name, cls)
    for code, name, cls in (
        (-1000, "SYS_SOCK_OPEN_ERR", _NET),
        (-4000, "SYS_HEADER_READ_LEN_ERR", _NET),
        (-12000, "SYS_UNMATCHED_API_NUM", GridError),
        (-13000, "SYS_NO_API_PRIV", NotAllowedError),
        (-21000, "SYS_INVALID_SERVER_HOST", GridError),
        (-22000, "SYS_SVR_TO_SVR_CONNECT_FAILED", GridError),
        (-23000, "SYS_BAD_FILE_DESCRIPTOR", GridError),
        (-24000, "SYS_INTERNAL_NULL_INPUT_ERR", GridError),
        (-31000, "SYS_INVALID_FILE_PATH", GridError),
        (-36000, "SYS_NO_PATH_PERMISSION", _DENIED),
        (-40000, "SYS_NO_DATA_OBJ_PERMISSION", _DENIED),
        (-46000, "SYS_COPY_ALREADY_IN_RESC", GridError),
        (-66000, "SYS_NOT_SUPPORTED", GridError),
        (-78000, "SYS_RESC_DOES_NOT_EXIST", _NOT_FOUND),
        (-105000, "SYS_RESC_IS_DOWN", GridError),
        (-110000, "SYS_RESC_QUOTA_EXCEEDED", GridError),
        (-115000, "SYS_SOCK_READ_TIMEDOUT", _NET),
        (-121000, "SYS_USER_NO_PERMISSION", _DENIED),
        (-128000, "CANT_REG_IN_VAULT_FILE", _DENIED),
        (-129000, "PATH_REG_NOT_ALLOWED", _DENIED),
        (-130000, "SYS_INVALID_INPUT_PARAM", GridError),
        (-144000, "SYS_RULE_NOT_FOUND", GridError),
        (-154000, "SYS_INTERNAL_ERR", GridError),
        (-164000, "SYS_REPLICA_DOES_NOT_EXIST", _NOT_FOUND),
        (-165000, "SYS_UNKNOWN_ERROR", GridError),
        (-166000, "SYS_NO_GOOD_REPLICA", GridError),
        (-167000, "SYS_LIBRARY_ERROR", GridError),
        (-168000, "SYS_REPLICA_INACCESSIBLE", GridError),
        (-169000, "SYS_NOT_ALLOWED", _DENIED),
        (-170000, "NOT_A_COLLECTION", _NOT_FOUND),
        (-171000, "NOT_A_DATA_OBJECT", _NOT_FOUND),
        (-172000, "JSON_VALIDATION_ERROR", GridError),
        (-176000, "DOES_NOT_EXIST", _NOT_FOUND),
        (-310000, "USER_FILE_DOES_NOT_EXIST", _NOT_FOUND),
        (-311000, "USER_FILE_TOO_LARGE", GridError),
        (-312000, "OVERWRITE_WITHOUT_FORCE_FLAG", _EXISTS),
        (-314000, "USER_CHKSUM_MISMATCH", GridError),
        (-316000, "USER__NULL_INPUT_ERR", GridError),
        (-317000, "USER_INPUT_PATH_ERR", GridError),
        (-318000, "USER_INPUT_OPTION_ERR", GridError),
        (-346000, "USER_PATH_EXCEEDS_MAX", GridError),
        (-349000, "USER_INPUT_FORMAT_ERR", GridError),
        (-350000, "USER_ACCESS_DENIED", _DENIED),
        (-358000, "OBJ_PATH_DOES_NOT_EXIST", _NOT_FOUND),
        (-360000, "USER_INPUT_STRING_ERR", GridError),
        (-361000, "USER_INVALID_RESC_INPUT", GridError),
        (-405000, "INTERMEDIATE_REPLICA_ACCESS", GridError),
        (-406000, "LOCKED_DATA_OBJECT_ACCESS", GridError),
        (-408000, "END_OF_RESULTSET", GridError),
        (-510000, "UNIX_FILE_OPEN_ERR", GridError),
        (-511000, "UNIX_FILE_CREATE_ERR", GridError),
        (-512000, "UNIX_FILE_READ_ERR", GridError),
        (-513000, "UNIX_FILE_WRITE_ERR", GridError),
        (-520000, "UNIX_FILE_MKDIR_ERR", GridError),
        (-806000, "CAT_SQL_ERR", GridError),
        (-808000, "CAT_NO_ROWS_FOUND", _NOT_FOUND),
        (-809000, "CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME", _EXISTS),
        (-814000, "CAT_UNKNOWN_COLLECTION", _NOT_FOUND),
        (-816000, "CAT_INVALID_ARGUMENT", GridError),
        (-817000, "CAT_UNKNOWN_FILE", _NOT_FOUND),
        (-818000, "CAT_NO_ACCESS_PERMISSION", _DENIED),
        (-819000, "CAT_SUCCESS_BUT_WITH_NO_INFO", "nothing_to_remove"),
        (-826000, "CAT_INVALID_AUTHENTICATION", _AUTH),
        (-827000, "CAT_INVALID_USER", _NOT_FOUND),
        (-830000, "CAT_INSUFFICIENT_PRIVILEGE_LEVEL", _DENIED),
        (-831000, "CAT_INVALID_RESOURCE", _NOT_FOUND),
        (-832000, "CAT_INVALID_CLIENT_USER", _AUTH),
        (-833000, "CAT_NAME_EXISTS_AS_COLLECTION", _EXISTS),
        (-834000, "CAT_NAME_EXISTS_AS_DATAOBJ", _EXISTS),
        (-840000, "CAT_PASSWORD_EXPIRED", _AUTH),
        (-850000, "CAT_PASSWORD_ENCODING_ERROR", _AUTH),
        (-852000, "CAT_UNKNOWN_RESOURCE", _NOT_FOUND),
        (-856000, "CAT_BIND_VARIABLE_LIMIT_EXCEEDED", GridError),
        (-907000, "AUTH_FILE_DOES_NOT_EXIST", _AUTH),
        (-992000, "PAM_AUTH_NOT_BUILT_INTO_SERVER", _AUTH),
        (-993000, "PAM_AUTH_PASSWORD_FAILED", _AUTH),
        (-1017000, "NO_RULE_FOUND_ERR", GridError),
        (-1084000, "INPUT_ARG_NOT_WELL_FORMED_ERR", GridError),
        (-1090000, "ACTION_FAILED_ERR", TaskFailedError),
        (-1097000, "NO_RULE_OR_MSI_FUNCTION_FOUND_ERR", GridError),
        (-1101000, "RULE_FAILED_ERR", GridError),
        (-1102000, "NO_MICROSERVICE_FOUND_ERR", GridError),
        (-1104000, "INVALID_OBJECT_NAME", GridError),
        (-1105000, "INVALID_OBJECT_TYPE", _NOT_FOUND),
        (-1107000, "NO_COLUMN_NAME_FOUND", GridError),
        (-1110000, "MSI_OPERATION_NOT_ALLOWED", _DENIED),
        (-1116000, "REMOTE_IRODS_CONNECT_ERR", GridError),
        (-1201000, "RE_PARSER_ERROR", GridError),
        (-1205000, "RE_RUNTIME_ERROR", GridError),
        (-1803000, "HIERARCHY_ERROR", GridError),
        (-1811000, "INVALID_OPERATION", GridError),
        (-1821000, "REPLICA_NOT_IN_RESC", GridError),
        (-1826000, "INVALID_KVP_STRING", GridError),
        (-1828000, "RULE_ENGINE_ERROR", GridError),
    )
)
BY_CODE: dict[int, IrodsError] = {row.code: row for row in TABLE}
BY_NAME: dict[str, IrodsError] = {row.name: row for row in TABLE}
ERROR_NAMES: dict[int, str] = {row.code: row.name for row in TABLE}
NAME_CODES: dict[str, int] = {row.name: row.code for row in TABLE}


def code_of(name: str) -> int:
    """``"CAT_UNKNOWN_FILE"`` -> ``-817000``; KeyError for a name the table does not hold."""
    return BY_NAME[name].code


# The codes this project asks about by name.
SYS_NO_API_PRIV = code_of("SYS_NO_API_PRIV")
SYS_NOT_SUPPORTED = code_of("SYS_NOT_SUPPORTED")
SYS_RESC_DOES_NOT_EXIST = code_of("SYS_RESC_DOES_NOT_EXIST")
SYS_INVALID_INPUT_PARAM = code_of("SYS_INVALID_INPUT_PARAM")
SYS_INTERNAL_ERR = code_of("SYS_INTERNAL_ERR")
USER_FILE_DOES_NOT_EXIST = code_of("USER_FILE_DOES_NOT_EXIST")
OVERWRITE_WITHOUT_FORCE_FLAG = code_of("OVERWRITE_WITHOUT_FORCE_FLAG")
USER_INPUT_PATH_ERR = code_of("USER_INPUT_PATH_ERR")
OBJ_PATH_DOES_NOT_EXIST = code_of("OBJ_PATH_DOES_NOT_EXIST")
CAT_NO_ROWS_FOUND = code_of("CAT_NO_ROWS_FOUND")
CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME = code_of("CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME")
CAT_UNKNOWN_COLLECTION = code_of("CAT_UNKNOWN_COLLECTION")
CAT_UNKNOWN_FILE = code_of("CAT_UNKNOWN_FILE")
CAT_SUCCESS_BUT_WITH_NO_INFO = code_of("CAT_SUCCESS_BUT_WITH_NO_INFO")
CAT_NO_ACCESS_PERMISSION = code_of("CAT_NO_ACCESS_PERMISSION")
CAT_INSUFFICIENT_PRIVILEGE_LEVEL = code_of("CAT_INSUFFICIENT_PRIVILEGE_LEVEL")
CAT_INVALID_RESOURCE = code_of("CAT_INVALID_RESOURCE")
CAT_INVALID_USER = code_of("CAT_INVALID_USER")
INPUT_ARG_NOT_WELL_FORMED_ERR = code_of("INPUT_ARG_NOT_WELL_FORMED_ERR")
INVALID_OBJECT_TYPE = code_of("INVALID_OBJECT_TYPE")
NO_COLUMN_NAME_FOUND = code_of("NO_COLUMN_NAME_FOUND")
ACTION_FAILED_ERR = code_of("ACTION_FAILED_ERR")
RULE_ENGINE_ERROR = code_of("RULE_ENGINE_ERROR")
#: What a call of a rule that is not installed ends with (the rulebase is missing).
NO_RULE_CODES = frozenset(code_of(n) for n in ("NO_RULE_FOUND_ERR", "NO_RULE_OR_MSI_FUNCTION_FOUND_ERR", "NO_MICROSERVICE_FOUND_ERR", "SYS_RULE_NOT_FOUND"))

_CODE_RE = re.compile(r"\[iRods__Error__Code:(-?\d+)\]")


def split_code(code: int) -> tuple[int, int]:
    """``-510002`` -> (``-510000``, ``2``): the iRODS error and the errno folded into it."""
    magnitude = abs(int(code))
    return -(magnitude // 1000 * 1000), magnitude % 1000


def lookup(code: int) -> IrodsError | None:
    """The table row of ``code`` (an errno folded into it is ignored), None when unknown."""
    code = int(code)
    return BY_CODE.get(code) or BY_CODE.get(split_code(code)[0])


def error_name(code: int) -> str:
    """``-818000`` -> ``CAT_NO_ACCESS_PERMISSION``; ``-510002`` -> ``UNIX_FILE_OPEN_ERR (ENOENT)``."""
    code = int(code)
    if code in BY_CODE:
        return BY_CODE[code].name
    row = lookup(code)
    if row is None:
        return f"iRODS error {code}"
    err = split_code(code)[1]
    return f"{row.name} ({_errno.errorcode.get(err, 'errno ' + str(err))})" if err else row.name


def describe_code(code: int) -> str:
    """``-818000 CAT_NO_ACCESS_PERMISSION``, the form ``irule`` prints."""
    return f"{int(code)} {error_name(code)}"


def parse_error_code(exc: BaseException | str) -> int | None:
    """The code of a rule-engine error message, or None when the message carries none."""
    match = _CODE_RE.search(str(exc))
    return int(match.group(1)) if match else None
