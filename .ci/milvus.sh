#!/usr/bin/env bash
# A real Milvus standalone server for tests and CI, without Docker: the `milvus` wheel from PyPI (2.3.5) ships the
# C++ standalone binary with embedded etcd and rocksmq (`pip install milvus==2.3.5`, command `milvus-server`).
#
#   .ci/milvus.sh start  DIR PORT   run `milvus-server --data DIR --proxy-port PORT` in the background (its output in
#                                   DIR/milvus.log, the server's own logs in DIR/logs/), wait until pymilvus can
#                                   list_collections() on http://127.0.0.1:PORT (about 90 s at most)
#   .ci/milvus.sh stop   DIR        stop the child `milvus run standalone` (SIGTERM, SIGKILL after about 20 s) and
#                                   the Python wrapper, and check that nothing is left listening
#   .ci/milvus.sh status DIR        exit 0 if the server started from DIR answers
#
# Only ONE such server can run on a machine at a time: besides PORT it always binds 2379 and 2380 (embedded etcd,
# 127.0.0.1), 9091 (metrics, /healthz, REST; the wrapper moves to 9092... when 9091 is taken) and, on all
# interfaces, 53100 19529 19531 21121 21123 21124 13333 (coordinators and nodes). `start` checks them first.
#
# Traps handled here: SIGTERM to the wrapper leaves the child running; the wrapper never reaps the child and
# never exits on its own once the child is gone (the child lingers as a zombie). Both are started in a new
# session, so the whole process group is known: DIR/milvus-server.pid holds the wrapper's PID (= the group id),
# DIR/milvus-standalone.pid the child's.
set -euo pipefail

START_TIMEOUT_S=${P4V_MILVUS_START_TIMEOUT:-90}
STOP_TIMEOUT_S=${P4V_MILVUS_STOP_TIMEOUT:-20}
PYTHON=${PYTHON:-python3}
FIXED_PORTS=(2379 2380 53100 19529 19531 21121 21123 21124 13333)

# die, usage, alive, dispatch
source "$(dirname "${BASH_SOURCE[0]}")/service.sh"

# Living members of process group $1.
group_pids() {
    local pg=$1 f stat pid fields
    for f in /proc/[0-9]*/stat; do
        stat=$(cat "$f" 2>/dev/null) || continue
        stat=${stat##*) }
        read -r -a fields <<<"$stat"     # state ppid pgrp ...
        [[ ${fields[2]} == "$pg" && ${fields[0]} != Z ]] || continue
        pid=${f#/proc/}
        echo "${pid%/stat}"
    done
}

# The wrapper's PID if it is alive and really is our milvus-server.
wrapper_pid() {
    local pid
    [[ -s $DIR/milvus-server.pid ]] || return 1
    pid=$(tr -dc '0-9' <"$DIR/milvus-server.pid")
    alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'milvus-server' || return 1
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

show_logs() {
    local f
    for f in "$DIR/milvus.log" "$DIR/logs/milvus-stderr.log" "$DIR/logs/milvus-stdout.log"; do
        [[ -s $f ]] || continue
        echo "----- last lines of $f -----" >&2
        tail -n 40 "$f" | cut -c1-400 >&2
    done
}

# Wait for pymilvus to answer. Exit codes: 0 up, 2 the process group died, 3 timeout.
wait_ready() {
    local port=$1 pgid=$2 timeout=$3
    "$PYTHON" - "$port" "$pgid" "$timeout" <<'PY'
import logging, os, sys, time
logging.disable(logging.CRITICAL)
port, pgid, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
from pymilvus import MilvusClient

def group_alive():
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False

deadline = time.monotonic() + timeout
last = None
while time.monotonic() < deadline:
    if not group_alive():
        print("milvus.sh: the server exited during start-up", file=sys.stderr)
        sys.exit(2)
    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{port}", timeout=5)
        client.list_collections()
        client.close()
        sys.exit(0)
    except Exception as exc:  # not up yet
        last = exc
        time.sleep(1)
print(f"milvus.sh: no answer within {timeout:.0f} s (last error: {last})", file=sys.stderr)
sys.exit(3)
PY
}

# Start milvus-server in a new session (the wrapper becomes a group leader, its child inherits the
# group); sets pgid.
launch() {
    pgid=$("$PYTHON" - "$DIR" "$1" <<'PY'
import subprocess, sys
d, port = sys.argv[1], sys.argv[2]
log = open(f"{d}/milvus.log", "ab")
p = subprocess.Popen(["milvus-server", "--data", d, "--proxy-port", port], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, close_fds=True)
print(p.pid)
PY
)
    rm -f "$DIR/milvus-standalone.pid"
    echo "$pgid" >"$DIR/milvus-server.pid"
}

cmd_start() {
    local port=$1 pid pgid rc p busy=() t0=$SECONDS attempt
    [[ $port =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    command -v milvus-server >/dev/null || die "milvus-server not found (pip install milvus==2.3.5)"
    mkdir -p "$DIR"

    if pid=$(wrapper_pid); then
        if wait_ready "$(cat "$DIR/milvus.port" 2>/dev/null || echo "$port")" "$pid" 5 2>/dev/null; then
            echo "milvus.sh: already running from $DIR (wrapper pid $pid)"
            return 0
        fi
        echo "milvus.sh: a server from $DIR is alive but does not answer; stopping it first" >&2
        cmd_stop
    fi

    for p in "$port" "${FIXED_PORTS[@]}"; do
        port_open "$p" && busy+=("$p")
    done
    ((${#busy[@]} == 0)) || die "port(s) ${busy[*]} already in use (only one Milvus standalone can run per machine)"
    port_open 9091 && echo "milvus.sh: warning: 9091 is taken, the metrics/health port moves to the next free one" >&2

    echo "$port" >"$DIR/milvus.port"
    # Seen once in CI: the server logged "Proxy successfully started" and never answered on its port.
    # Try once more from a clean data folder before failing the run.
    for attempt in 1 2; do
        launch "$port"
        rc=0
        wait_ready "$port" "$pgid" "$START_TIMEOUT_S" || rc=$?
        ((rc == 0)) && break
        show_logs
        cmd_stop >&2 || true
        ((attempt == 2)) && exit 1
        echo "milvus.sh: starting once more from a clean data folder" >&2
        mv "$DIR/milvus.log" "$DIR/milvus.log.1" 2>/dev/null || true
        find "$DIR" -mindepth 1 -maxdepth 1 ! -name milvus.port ! -name 'milvus.log.1' -exec rm -rf {} +
    done
    # Record the child (`milvus run standalone`).
    for p in $(group_pids "$pgid"); do
        [[ $p == "$pgid" ]] || echo "$p"
    done >"$DIR/milvus-standalone.pid"
    echo "milvus.sh: up on http://127.0.0.1:$port in $((SECONDS - t0)) s" \
         "(wrapper pid $pgid, standalone pid $(tr '\n' ' ' <"$DIR/milvus-standalone.pid"| sed 's/ $//'))"
}

# Send $1 to the given PIDs, wait up to $2 s for them all to go, return 1 if some are still alive.
signal_and_wait() {
    local sig=$1 timeout=$2 deadline p left
    shift 2
    (($# > 0)) || return 0
    kill "-$sig" "$@" 2>/dev/null || true
    deadline=$((SECONDS + timeout))
    while :; do
        left=()
        for p in "$@"; do alive "$p" && left+=("$p"); done
        ((${#left[@]} == 0)) && return 0
        ((SECONDS >= deadline)) && return 1
        sleep 0.2
    done
}

cmd_stop() {
    local pgid="" wrapper="" children=() recorded=() p port leftover=() members
    wrapper=$(wrapper_pid || true)
    [[ -s $DIR/milvus-server.pid ]] && pgid=$(tr -dc '0-9' <"$DIR/milvus-server.pid")
    port=$(cat "$DIR/milvus.port" 2>/dev/null || true)

    # The children: recorded ones that are still a milvus, plus any other member of the group.
    if [[ -s $DIR/milvus-standalone.pid ]]; then
        read -r -a recorded < <(tr '\n' ' ' <"$DIR/milvus-standalone.pid") || true
        for p in "${recorded[@]}"; do
            alive "$p" && [[ $(cat "/proc/$p/comm" 2>/dev/null) == milvus* ]] && children+=("$p")
        done
    fi
    if [[ -n $pgid ]] && { [[ -n $wrapper ]] || ((${#children[@]} > 0)); }; then
        for p in $(group_pids "$pgid"); do
            [[ $p == "$pgid" || " ${children[*]} " == *" $p "* ]] || children+=("$p")
        done
    fi

    if [[ -z $wrapper && ${#children[@]} -eq 0 ]]; then
        echo "milvus.sh: not running from $DIR"
        rm -f "$DIR/milvus-server.pid" "$DIR/milvus-standalone.pid"
        return 0
    else
        # Child first, so that Milvus shuts down cleanly; the wrapper would only orphan it.
        if ! signal_and_wait TERM "$STOP_TIMEOUT_S" "${children[@]}"; then
            echo "milvus.sh: standalone still alive after ${STOP_TIMEOUT_S} s, sending SIGKILL" >&2
            signal_and_wait KILL 5 "${children[@]}" || true
        fi
        # The wrapper never exits by itself once its child is gone.
        if [[ -n $wrapper ]] && ! signal_and_wait TERM 5 "$wrapper"; then
            signal_and_wait KILL 5 "$wrapper" || true
        fi
        # Anything else left in the group.
        members=$(group_pids "$pgid")
        if [[ -n $members ]]; then
            # shellcheck disable=SC2086
            signal_and_wait KILL 5 $members || die "could not stop pid(s) $members"
        fi
        echo "milvus.sh: stopped (wrapper pid ${wrapper:-gone}, standalone pid(s) ${children[*]:-gone})"
    fi
    rm -f "$DIR/milvus-server.pid" "$DIR/milvus-standalone.pid"

    # Nothing of ours may still listen (sockets close when the processes are gone; allow a moment).
    for _ in $(seq 1 25); do
        leftover=()
        for p in $port "${FIXED_PORTS[@]}"; do port_open "$p" && leftover+=("$p"); done
        ((${#leftover[@]} == 0)) && return 0
        sleep 0.2
    done
    die "still listening after stop: ${leftover[*]}"
}

cmd_status() {
    local pid
    if pid=$(wrapper_pid) && wait_ready "$(cat "$DIR/milvus.port" 2>/dev/null)" "$pid" 5 2>/dev/null; then
        echo "milvus.sh: running from $DIR (wrapper pid $pid, port $(cat "$DIR/milvus.port"))"
        return 0
    fi
    echo "milvus.sh: not running from $DIR"
    return 1
}

dispatch "$@"
