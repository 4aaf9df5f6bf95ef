"""iRODS error codes: names, parsing of the rule engine's exceptions, mapping to typed errors.

Inside the server, a failed microservice call raises ``RuntimeError`` whose message starts with
``[iRods__Error__Code:<code>] [-]\\t`` and goes on with C++ source locations and stack text
(``../shared/irods-facts.md``). Researchers must never see that text: :func:`parse_error_code`
takes the code out, :func:`error_name` names it, and :func:`to_grid_error` turns it into one of
the project's typed errors with a message saying what failed, on what, and the iRODS name.

Codes are ``-mmmmnnn``: ``mmmm000`` is the iRODS error, ``nnn`` an optional ``errno``
(``-510002`` is UNIX_FILE_OPEN_ERR with ENOENT). The table holds the codes this project can meet
(values from iRODS ``rodsErrorTable.h``); unknown codes are shown as numbers.
"""

from __future__ import annotations

import errno as _errno
import os
import re

from ..errors import AccessDeniedError, AlreadyExistsError, GridError, ObjectNotFoundError

ERROR_NAMES: dict[int, str] = {
    -13000: "SYS_NO_API_PRIV",
    -21000: "SYS_INVALID_SERVER_HOST",
    -22000: "SYS_SVR_TO_SVR_CONNECT_FAILED",
    -24000: "SYS_INTERNAL_NULL_INPUT_ERR",
    -31000: "SYS_INVALID_FILE_PATH",
    -36000: "SYS_NO_PATH_PERMISSION",
    -40000: "SYS_NO_DATA_OBJ_PERMISSION",
    -46000: "SYS_COPY_ALREADY_IN_RESC",
    -66000: "SYS_NOT_SUPPORTED",
    -78000: "SYS_RESC_DOES_NOT_EXIST",
    -105000: "SYS_RESC_IS_DOWN",
    -110000: "SYS_RESC_QUOTA_EXCEEDED",
    -121000: "SYS_USER_NO_PERMISSION",
    -128000: "CANT_REG_IN_VAULT_FILE",
    -129000: "PATH_REG_NOT_ALLOWED",
    -130000: "SYS_INVALID_INPUT_PARAM",
    -144000: "SYS_RULE_NOT_FOUND",
    -154000: "SYS_INTERNAL_ERR",
    -164000: "SYS_REPLICA_DOES_NOT_EXIST",
    -165000: "SYS_UNKNOWN_ERROR",
    -166000: "SYS_NO_GOOD_REPLICA",
    -167000: "SYS_LIBRARY_ERROR",
    -168000: "SYS_REPLICA_INACCESSIBLE",
    -169000: "SYS_NOT_ALLOWED",
    -170000: "NOT_A_COLLECTION",
    -171000: "NOT_A_DATA_OBJECT",
    -172000: "JSON_VALIDATION_ERROR",
    -176000: "DOES_NOT_EXIST",
    -310000: "USER_FILE_DOES_NOT_EXIST",
    -311000: "USER_FILE_TOO_LARGE",
    -312000: "OVERWRITE_WITHOUT_FORCE_FLAG",
    -314000: "USER_CHKSUM_MISMATCH",
    -316000: "USER__NULL_INPUT_ERR",
    -317000: "USER_INPUT_PATH_ERR",
    -318000: "USER_INPUT_OPTION_ERR",
    -346000: "USER_PATH_EXCEEDS_MAX",
    -349000: "USER_INPUT_FORMAT_ERR",
    -350000: "USER_ACCESS_DENIED",
    -358000: "OBJ_PATH_DOES_NOT_EXIST",
    -360000: "USER_INPUT_STRING_ERR",
    -361000: "USER_INVALID_RESC_INPUT",
    -405000: "INTERMEDIATE_REPLICA_ACCESS",
    -406000: "LOCKED_DATA_OBJECT_ACCESS",
    -408000: "END_OF_RESULTSET",
    -510000: "UNIX_FILE_OPEN_ERR",
    -511000: "UNIX_FILE_CREATE_ERR",
    -512000: "UNIX_FILE_READ_ERR",
    -513000: "UNIX_FILE_WRITE_ERR",
    -520000: "UNIX_FILE_MKDIR_ERR",
    -806000: "CAT_SQL_ERR",
    -808000: "CAT_NO_ROWS_FOUND",
    -809000: "CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME",
    -814000: "CAT_UNKNOWN_COLLECTION",
    -816000: "CAT_INVALID_ARGUMENT",
    -817000: "CAT_UNKNOWN_FILE",
    -818000: "CAT_NO_ACCESS_PERMISSION",
    -819000: "CAT_SUCCESS_BUT_WITH_NO_INFO",
    -827000: "CAT_INVALID_USER",
    -830000: "CAT_INSUFFICIENT_PRIVILEGE_LEVEL",
    -831000: "CAT_INVALID_RESOURCE",
    -833000: "CAT_NAME_EXISTS_AS_COLLECTION",
    -834000: "CAT_NAME_EXISTS_AS_DATAOBJ",
    -852000: "CAT_UNKNOWN_RESOURCE",
    -856000: "CAT_BIND_VARIABLE_LIMIT_EXCEEDED",
    -1084000: "INPUT_ARG_NOT_WELL_FORMED_ERR",
    -1097000: "NO_RULE_OR_MSI_FUNCTION_FOUND_ERR",
    -1101000: "RULE_FAILED_ERR",
    -1102000: "NO_MICROSERVICE_FOUND_ERR",
    -1104000: "INVALID_OBJECT_NAME",
    -1105000: "INVALID_OBJECT_TYPE",
    -1107000: "NO_COLUMN_NAME_FOUND",
    -1110000: "MSI_OPERATION_NOT_ALLOWED",
    -1116000: "REMOTE_IRODS_CONNECT_ERR",
    -1201000: "RE_PARSER_ERROR",
    -1205000: "RE_RUNTIME_ERROR",
    -1803000: "HIERARCHY_ERROR",
    -1811000: "INVALID_OPERATION",
    -1821000: "REPLICA_NOT_IN_RESC",
    -1826000: "INVALID_KVP_STRING",
    -1828000: "RULE_ENGINE_ERROR",
}
NAME_CODES: dict[str, int] = {name: code for code, name in ERROR_NAMES.items()}

# The codes this project asks about by name.
SYS_NO_API_PRIV = NAME_CODES["SYS_NO_API_PRIV"]
SYS_NOT_SUPPORTED = NAME_CODES["SYS_NOT_SUPPORTED"]
SYS_RESC_DOES_NOT_EXIST = NAME_CODES["SYS_RESC_DOES_NOT_EXIST"]
SYS_INVALID_INPUT_PARAM = NAME_CODES["SYS_INVALID_INPUT_PARAM"]
USER_FILE_DOES_NOT_EXIST = NAME_CODES["USER_FILE_DOES_NOT_EXIST"]
OVERWRITE_WITHOUT_FORCE_FLAG = NAME_CODES["OVERWRITE_WITHOUT_FORCE_FLAG"]
USER_INPUT_PATH_ERR = NAME_CODES["USER_INPUT_PATH_ERR"]
CAT_NO_ROWS_FOUND = NAME_CODES["CAT_NO_ROWS_FOUND"]
CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME = NAME_CODES["CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME"]
CAT_UNKNOWN_COLLECTION = NAME_CODES["CAT_UNKNOWN_COLLECTION"]
CAT_UNKNOWN_FILE = NAME_CODES["CAT_UNKNOWN_FILE"]
CAT_NO_ACCESS_PERMISSION = NAME_CODES["CAT_NO_ACCESS_PERMISSION"]
CAT_INVALID_RESOURCE = NAME_CODES["CAT_INVALID_RESOURCE"]
CAT_INVALID_USER = NAME_CODES["CAT_INVALID_USER"]
INPUT_ARG_NOT_WELL_FORMED_ERR = NAME_CODES["INPUT_ARG_NOT_WELL_FORMED_ERR"]
INVALID_OBJECT_TYPE = NAME_CODES["INVALID_OBJECT_TYPE"]
NO_COLUMN_NAME_FOUND = NAME_CODES["NO_COLUMN_NAME_FOUND"]
RULE_ENGINE_ERROR = NAME_CODES["RULE_ENGINE_ERROR"]

_NOT_FOUND = {
    "USER_FILE_DOES_NOT_EXIST", "CAT_NO_ROWS_FOUND", "CAT_UNKNOWN_COLLECTION", "CAT_UNKNOWN_FILE",
    "INVALID_OBJECT_TYPE", "OBJ_PATH_DOES_NOT_EXIST", "SYS_RESC_DOES_NOT_EXIST", "CAT_INVALID_RESOURCE",
    "CAT_UNKNOWN_RESOURCE", "CAT_INVALID_USER", "DOES_NOT_EXIST", "SYS_REPLICA_DOES_NOT_EXIST",
    "NOT_A_COLLECTION", "NOT_A_DATA_OBJECT",
}
_DENIED = {
    "SYS_NO_API_PRIV", "CAT_NO_ACCESS_PERMISSION", "CAT_INSUFFICIENT_PRIVILEGE_LEVEL", "USER_ACCESS_DENIED",
    "SYS_NO_PATH_PERMISSION", "SYS_NO_DATA_OBJ_PERMISSION", "SYS_USER_NO_PERMISSION", "PATH_REG_NOT_ALLOWED",
    "CANT_REG_IN_VAULT_FILE", "SYS_NOT_ALLOWED", "MSI_OPERATION_NOT_ALLOWED",
}
_EXISTS = {
    "CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME", "OVERWRITE_WITHOUT_FORCE_FLAG", "CAT_NAME_EXISTS_AS_COLLECTION",
    "CAT_NAME_EXISTS_AS_DATAOBJ",
}

_CODE_RE = re.compile(r"\[iRods__Error__Code:(-?\d+)\]")


def split_code(code: int) -> tuple[int, int]:
    """``-510002`` -> (``-510000``, ``2``): the iRODS error and the errno folded into it."""
    magnitude = abs(int(code))
    return -(magnitude // 1000 * 1000), magnitude % 1000


def error_name(code: int) -> str:
    """``-818000`` -> ``CAT_NO_ACCESS_PERMISSION``; ``-510002`` -> ``UNIX_FILE_OPEN_ERR (ENOENT)``."""
    code = int(code)
    if code in ERROR_NAMES:
        return ERROR_NAMES[code]
    base, err = split_code(code)
    if base in ERROR_NAMES:
        if err:
            return f"{ERROR_NAMES[base]} ({_errno.errorcode.get(err, 'errno ' + str(err))})"
        return ERROR_NAMES[base]
    return f"iRODS error {code}"


def describe_code(code: int) -> str:
    """``-818000 CAT_NO_ACCESS_PERMISSION``, the form ``irule`` prints."""
    return f"{int(code)} {error_name(code)}"


def parse_error_code(exc: BaseException | str) -> int | None:
    """The code of a rule-engine error message, or None when the message carries none."""
    match = _CODE_RE.search(str(exc))
    return int(match.group(1)) if match else None


def is_irods_error(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and parse_error_code(exc) is not None


def _class_for(name: str) -> type[GridError]:
    base = name.split(" ", 1)[0]
    if base in _NOT_FOUND:
        return ObjectNotFoundError
    if base in _DENIED:
        return AccessDeniedError
    if base in _EXISTS:
        return AlreadyExistsError
    return GridError


def grid_error_for_code(code: int, what: str, hint: str = "") -> GridError:
    """A typed error for ``code``: ``"<what> failed: <NAME> (<code>)[; hint]"``.

    ``what`` says which operation on which path, e.g. ``"replicating /z/home/a/x.png to gpu_resc"``.
    """
    name = error_name(code)
    message = f"{what} failed: {name} ({int(code)})"
    if hint:
        message += f"; {hint}"
    cls = _class_for(name)
    return cls(message, irods_code=int(code), irods_name=name)


def to_grid_error(exc: BaseException, what: str, hint: str = "") -> GridError:
    """Turn a ``RuntimeError`` raised by ``callback`` into the project's typed error.

    The C++ stack text of the original message is dropped; the code and its name are kept. A
    RuntimeError without an iRODS code keeps only its first line (it is a Python-level failure).
    """
    code = parse_error_code(exc)
    if code is None:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return GridError(f"{what} failed: {first_line[:300]}", irods_code=RULE_ENGINE_ERROR)
    return grid_error_for_code(code, what, hint)


def errno_of(code: int) -> str:
    """The ``strerror`` of the errno folded into a code ('' when there is none)."""
    _, err = split_code(code)
    return os.strerror(err) if err else ""
