#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for the storage tests.
#
#   scripts/pg.sh start DIR PORT   initdb DIR, start on 127.0.0.1:PORT, print the URL
#   scripts/pg.sh stop DIR         stop the cluster in DIR and delete DIR
#
# Trust authentication on 127.0.0.1 only and fsync=off: never point this at data you keep.
set -euo pipefail

die() {
    echo "pg.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start DIR PORT | $0 stop DIR" >&2
    exit 2
}

find_bindir() {
    local initdb
    if initdb=$(command -v initdb 2>/dev/null); then
        dirname "$(readlink -f "$initdb")"
        return 0
    fi
    local dir
    # Newest major version first.
    while read -r dir; do
        if [[ -x "$dir/initdb" ]]; then
            echo "$dir"
            return 0
        fi
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
    return 1
}

ensure_bindir() {
    local bindir
    if bindir=$(find_bindir); then
        echo "$bindir"
        return 0
    fi
    echo "pg.sh: no initdb found; installing Debian's postgresql" >&2
    [[ $(id -u) -eq 0 ]] || die "initdb not found and not root: install postgresql first"
    DEBIAN_FRONTEND=noninteractive apt-get update >&2 \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2 \
        || die "apt-get install postgresql failed"
    bindir=$(find_bindir) || die "postgresql installed but initdb still not found"
    echo "$bindir"
}

# Run a PostgreSQL binary as the cluster owner: postgres refuses to run as root.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir=$1 port=$2 bindir
    [[ $port =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    [[ ! -e $dir || -z $(ls -A "$dir" 2>/dev/null) ]] || die "$dir exists and is not empty"
    bindir=$(ensure_bindir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user"
        chown postgres: "$dir"
    fi
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 \
        >"$dir/initdb.log" 2>&1 || die "initdb failed, see $dir/initdb.log"
    mkdir -p "$dir/socket"
    [[ $(id -u) -ne 0 ]] || chown postgres: "$dir/socket"
    # Only loopback TCP and the private socket; trust applies to nothing else.
    cat >"$dir/data/pg_hba.conf" <<HBA
local   all all              trust
host    all all 127.0.0.1/32 trust
HBA
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/socket -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null || {
        tail -n 5 "$dir/server.log" >&2 || true
        die "pg_ctl start failed, see $dir/server.log (remove it with: $0 stop $dir)"
    }
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
}

stop() {
    local dir=$1 bindir
    [[ -d $dir ]] || die "$dir does not exist"
    [[ -f $dir/data/PG_VERSION ]] || die "$dir holds no cluster made by pg.sh start"
    bindir=$(find_bindir) || die "no pg_ctl found"
    if [[ -f $dir/data/postmaster.pid ]]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null \
            || die "pg_ctl stop failed, see $dir/server.log"
    fi
    rm -rf "$dir"
}

case "${1:-}" in
start)
    [[ $# -eq 3 ]] || usage
    start "$2" "$3"
    ;;
stop)
    [[ $# -eq 2 ]] || usage
    stop "$2"
    ;;
*) usage ;;
esac
