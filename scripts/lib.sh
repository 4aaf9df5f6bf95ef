# Shell helpers shared by the setup scripts (sourced, never run on its own).
#
#   c2d_say PREFIX MESSAGE...      progress on stderr
#   c2d_as_root COMMAND...         as root: directly, else through `sudo -n`
#   c2d_apt_install PACKAGE...     apt-get update + install, waiting for the dpkg lock
#   c2d_venv_python                the project's virtual environment's python (after bootstrap)
#
# Every apt-get here waits up to C2D_APT_LOCK_TIMEOUT seconds (default 600) for the dpkg and
# apt locks instead of failing at once: on a fresh machine another installer (cloud-init,
# unattended-upgrades) often holds them for the first minutes.

C2D_REPO=${C2D_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# The virtual environment the scripts create and use; override with C2D_VENV.
C2D_VENV=${C2D_VENV:-$C2D_REPO/.venv}
C2D_APT_LOCK_TIMEOUT=${C2D_APT_LOCK_TIMEOUT:-600}

c2d_say() { local who=$1; shift; echo "[$who] $*" >&2; }

c2d_as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        echo "[setup] need root for: $* (run as root, or install sudo)" >&2
        return 1
    fi
}

# The processes holding dpkg's or apt's locks, as "name (pid N)", or nothing.
c2d_apt_lock_holders() {
    local locks='/var/lib/dpkg/lock-frontend|/var/lib/dpkg/lock|/var/lib/apt/lists/lock|/var/cache/apt/archives/lock'
    if command -v lslocks >/dev/null 2>&1; then
        lslocks -n -o COMMAND,PID,PATH 2>/dev/null | awk -v re="^($locks)\$" '$3 ~ re { print $1 " (pid " $2 ")" }' | sort -u
    fi
}

# Tell the user what we are waiting for, before apt-get starts waiting silently.
c2d_apt_announce_wait() {
    local holders
    holders=$(c2d_apt_lock_holders | paste -sd, - || true)
    if [[ -n $holders ]]; then
        echo "[apt] waiting up to ${C2D_APT_LOCK_TIMEOUT}s for the dpkg/apt lock, held by: $holders" >&2
    fi
}

# apt-get with the lock timeout; apt-get update takes the lists lock, which older apt versions
# do not wait for, so a lock failure is retried until the same deadline.
c2d_apt_get() {
    local deadline=$((SECONDS + C2D_APT_LOCK_TIMEOUT)) out rc
    c2d_apt_announce_wait
    while true; do
        out=$(mktemp)
        rc=0
        DEBIAN_FRONTEND=noninteractive c2d_as_root apt-get -o DPkg::Lock::Timeout="$C2D_APT_LOCK_TIMEOUT" "$@" 2>"$out" || rc=$?
        cat "$out" >&2
        if ((rc == 0)) || ! grep -q 'Could not get lock' "$out" || ((SECONDS >= deadline)); then
            rm -f "$out"
            return $rc
        fi
        rm -f "$out"
        echo "[apt] apt-get $1: the lock is busy; retrying in 5 s (until ${C2D_APT_LOCK_TIMEOUT}s have passed)" >&2
        c2d_apt_announce_wait
        sleep 5
    done
}

# apt-get update (once per script run) and install of the given packages.
C2D_APT_UPDATED=${C2D_APT_UPDATED:-}
c2d_apt_install() {
    if [[ -z $C2D_APT_UPDATED ]]; then
        c2d_apt_get update -qq >&2 || { echo "[apt] apt-get update failed (need root or sudo, and Debian's mirror)" >&2; return 1; }
        C2D_APT_UPDATED=1
    fi
    c2d_apt_get install -y -qq --no-install-recommends "$@" >&2
}

c2d_venv_python() { echo "$C2D_VENV/bin/python"; }
