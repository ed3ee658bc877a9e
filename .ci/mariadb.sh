#!/usr/bin/env bash
# A throwaway MariaDB server for tests and CI (no systemd, no Docker; needs the Debian mariadb-server package).
#
#   .ci/mariadb.sh start  DIR PORT   initialise DIR/data if absent, start mariadbd on 127.0.0.1:PORT, wait until it
#                                    answers, then (idempotently) create 'p4v'@'127.0.0.1' and 'p4v'@'localhost'
#                                    with ALL PRIVILEGES on *.* (tests create and drop their own databases)
#   .ci/mariadb.sh stop   DIR        SIGTERM the server, wait for it to exit (SIGKILL after about 20 s)
#   .ci/mariadb.sh status DIR        exit 0 if the server in DIR answers
#
# The p4v password comes from $P4V_MYSQL_PASSWORD (default p4v-test-only). Files in DIR: data/, mysqld.sock,
# mysqld.pid, error.log, mysqld.out. root connects only over the Unix socket (socket authentication).
# Starting a server that is already running is harmless (it only re-applies the user and grants).
set -euo pipefail

START_TIMEOUT_S=${P4V_MARIADB_START_TIMEOUT:-30}
STOP_TIMEOUT_S=${P4V_MARIADB_STOP_TIMEOUT:-20}

# die, usage, alive, dispatch
source "$(dirname "${BASH_SOURCE[0]}")/service.sh"

# The PID from DIR/mysqld.pid, if that process is alive and is a mariadbd/mysqld.
server_pid() {
    local pid comm
    [[ -s $DIR/mysqld.pid ]] || return 1
    pid=$(tr -dc '0-9' <"$DIR/mysqld.pid")
    alive "$pid" || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    [[ $comm == mariadbd || $comm == mysqld ]] || return 1
    echo "$pid"
}

# Client options: socket explicitly (the clients obey $MYSQL_HOST over --socket otherwise).
client_opts() {
    CLIENT=(--no-defaults -h localhost --protocol=socket "--socket=$DIR/mysqld.sock" -u"$(id -un)")
}

ping_server() {
    client_opts
    mariadb-admin "${CLIENT[@]}" --connect-timeout=2 ping >/dev/null 2>&1
}

sql_quote() {  # escape for a single-quoted SQL string literal
    local s=${1//\\/\\\\}
    printf '%s' "${s//\'/\\\'}"
}

ensure_user() {
    local pw q
    pw=${P4V_MYSQL_PASSWORD:-p4v-test-only}
    q=$(sql_quote "$pw")
    client_opts
    mariadb "${CLIENT[@]}" --batch <<SQL
CREATE USER IF NOT EXISTS 'p4v'@'127.0.0.1' IDENTIFIED BY '$q';
CREATE USER IF NOT EXISTS 'p4v'@'localhost' IDENTIFIED BY '$q';
ALTER USER 'p4v'@'127.0.0.1' IDENTIFIED BY '$q';
ALTER USER 'p4v'@'localhost' IDENTIFIED BY '$q';
GRANT ALL PRIVILEGES ON *.* TO 'p4v'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'p4v'@'localhost';
FLUSH PRIVILEGES;
SQL
}

cmd_start() {
    local port=$1 pid deadline me
    [[ $port =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    command -v mariadbd >/dev/null || PATH=$PATH:/usr/sbin:/sbin
    command -v mariadbd >/dev/null || die "mariadbd not found (apt-get install mariadb-server)"
    mkdir -p "$DIR"
    me=$(id -un)

    if pid=$(server_pid) && ping_server; then
        echo "mariadb.sh: already running in $DIR (pid $pid)"
        ensure_user
        return 0
    fi

    if [[ ! -d $DIR/data/mysql ]]; then
        rm -rf "$DIR/data"
        if ! mariadb-install-db --no-defaults --user="$me" --datadir="$DIR/data" \
                --auth-root-authentication-method=socket --skip-test-db >"$DIR/install-db.log" 2>&1; then
            cat "$DIR/install-db.log" >&2
            die "mariadb-install-db failed"
        fi
    fi

    rm -f "$DIR/mysqld.pid" "$DIR/mysqld.sock"
    mariadbd --no-defaults --user="$me" --datadir="$DIR/data" --socket="$DIR/mysqld.sock" \
        --port="$port" --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$DIR/mysqld.pid" --log-error="$DIR/error.log" \
        --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2 \
        </dev/null >>"$DIR/mysqld.out" 2>&1 &
    pid=$!

    deadline=$((SECONDS + START_TIMEOUT_S))
    until ping_server; do
        if ! alive "$pid"; then
            echo "mariadb.sh: mariadbd exited during start-up; $DIR/error.log:" >&2
            cat "$DIR/error.log" "$DIR/mysqld.out" >&2 2>/dev/null || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            echo "mariadb.sh: no answer within ${START_TIMEOUT_S} s; $DIR/error.log:" >&2
            cat "$DIR/error.log" >&2 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
    ensure_user
    echo "mariadb.sh: up on 127.0.0.1:$port (pid $pid, socket $DIR/mysqld.sock)"
}

cmd_stop() {
    local pid deadline
    if ! pid=$(server_pid); then
        echo "mariadb.sh: not running in $DIR"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT_S))
    while alive "$pid"; do
        if ((SECONDS >= deadline)); then
            echo "mariadb.sh: pid $pid still alive after ${STOP_TIMEOUT_S} s, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
    done
    alive "$pid" && die "could not stop pid $pid"
    rm -f "$DIR/mysqld.pid"
    echo "mariadb.sh: stopped (pid $pid)"
}

cmd_status() {
    local pid
    if pid=$(server_pid) && ping_server; then
        echo "mariadb.sh: running in $DIR (pid $pid)"
        return 0
    fi
    echo "mariadb.sh: not running in $DIR"
    return 1
}

dispatch "$@"
