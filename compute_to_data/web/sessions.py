"""Who a browser acts as: one grid handle per signed-in user, never a shared admin account.

The browser's cookie (signed by Starlette's SessionMiddleware with a per-process random key,
HttpOnly, SameSite=Strict) holds only a random session id and the CSRF token; the grid handle
(for a zone: a python-irodsclient session logged in with the user's own password) stays in this
process's memory and is closed on sign-out or after ``idle_seconds`` without use. The password
itself is not kept: PRC keeps its connections authenticated.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from compute_to_data.domain.errors import AuthenticationError
from compute_to_data.grid.base import Grid
from compute_to_data.grid.client import IrodsClientGrid, IrodsConnectionOptions
from compute_to_data.grid.local import LocalGrid
from compute_to_data.web.security import new_token

log = logging.getLogger(__name__)


class Authenticator(Protocol):
    #: False: no sign-in page; every browser acts as the configured user (``--local``).
    needs_sign_in: bool

    def sign_in(self, username: str, password: str) -> Grid: ...

    def anonymous_grid(self) -> Grid: ...


class IrodsAuthenticator:
    """Logs in to the zone as the user who signs in (host, port and zone from the server's
    environment file or options; the user name and password from the form)."""

    needs_sign_in = True

    def __init__(self, options: IrodsConnectionOptions, session_factory: Callable[..., Any] | None = None) -> None:
        self.options = options
        self.session_factory = session_factory

    def describe(self) -> str:
        env = self.options.environment(require_user=False)
        return f"{env.get('irods_zone_name', '?')} at {env.get('irods_host', '?')}:{env.get('irods_port', '?')}"

    def sign_in(self, username: str, password: str) -> Grid:
        username = username.strip()
        if not username or not password:
            raise AuthenticationError("enter your iRODS user name and password")
        options = copy.deepcopy(self.options)
        options.user = username
        return IrodsClientGrid.connect(options, password=password, prompt=None, session_factory=self.session_factory)

    def anonymous_grid(self) -> Grid:
        raise AuthenticationError("sign in first")


class LocalAuthenticator:
    """``--local``: no sign-in; everybody acts as the configured LocalGrid user."""

    needs_sign_in = False

    def __init__(self, root: Path, user: str) -> None:
        self.grid = LocalGrid(root, user=user)

    def describe(self) -> str:
        return f"LocalGrid {self.grid.root} as {self.grid.user}"

    def sign_in(self, username: str, password: str) -> Grid:
        return self.grid

    def anonymous_grid(self) -> Grid:
        return self.grid


@dataclass
class UserSession:
    grid: Grid
    csrf: str = field(default_factory=new_token)
    created: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)
    cache: dict[str, tuple[float, Any]] = field(default_factory=dict)
    #: per task: what this person skipped and the decisions they can undo (the review queue)
    reviews: dict[str, "ReviewMemory"] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return self.grid.user

    def cached(self, key: str, ttl: float, compute: Callable[[], Any]) -> Any:
        """A per-user cache for slow answers (class counts on a zone)."""
        now = time.time()
        hit = self.cache.get(key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        value = compute()
        self.cache[key] = (now, value)
        if len(self.cache) > 256:
            oldest = sorted(self.cache.items(), key=lambda item: item[1][0])[:64]
            for k, _ in oldest:
                self.cache.pop(k, None)
        return value


@dataclass
class ReviewMemory:
    """One person's review of one task in this browser session: images skipped (offered again
    in a new session) and the decisions undo can take back, newest last."""

    skipped: set[str] = field(default_factory=set)
    #: each step: ("skip" | "decide", [(path, the verdict the image carried before, or None)])
    steps: list[tuple[str, list[tuple[str, Any]]]] = field(default_factory=list)

    MAX_STEPS = 200

    def push(self, kind: str, changes: list[tuple[str, Any]]) -> None:
        self.steps.append((kind, changes))
        del self.steps[: -self.MAX_STEPS]


class SessionStore:
    """Server-side sessions by random id; idle ones expire and their grid handle is closed."""

    def __init__(self, idle_seconds: float = 1800.0, max_sessions: int = 1000) -> None:
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self._sessions: dict[str, UserSession] = {}
        self._lock = threading.Lock()

    def create(self, grid: Grid) -> tuple[str, UserSession]:
        session_id = new_token()
        session = UserSession(grid)
        with self._lock:
            self._expire_locked()
            if len(self._sessions) >= self.max_sessions:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].last_seen)
                self._drop_locked(oldest)
            self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> UserSession | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if time.time() - session.last_seen > self.idle_seconds:
                self._drop_locked(session_id)
                return None
            session.last_seen = time.time()
            return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._drop_locked(session_id)

    def close_all(self) -> None:
        with self._lock:
            for session_id in list(self._sessions):
                self._drop_locked(session_id)

    def _expire_locked(self) -> None:
        now = time.time()
        for session_id, session in list(self._sessions.items()):
            if now - session.last_seen > self.idle_seconds:
                self._drop_locked(session_id)

    def _drop_locked(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None and isinstance(session.grid, IrodsClientGrid):
            session.grid.close()

    def __len__(self) -> int:
        return len(self._sessions)
