#!/bin/sh
# A throwaway PostgreSQL cluster from Debian's packages, for the tests, the
# benchmarks and `make run-pg`: in a folder of its own, listening on
# 127.0.0.1 (and a Unix socket in the folder), trust authentication, run as
# a non-root user (as root: the `postgres` user the package creates).
#
#   pg-throwaway.sh start DIR [PORT]  creates the cluster if needed, starts it,
#                                     prints its URL (postgres://postgres@127.0.0.1:PORT/postgres)
#   pg-throwaway.sh stop DIR          fast shutdown (the cluster is kept)
#   pg-throwaway.sh kill DIR          immediate shutdown, as a crash
#   pg-throwaway.sh psql DIR SQL      runs SQL, prints the rows unaligned
#   pg-throwaway.sh remove DIR        stops it and deletes the folder
set -eu

cmd=${1:?usage: pg-throwaway.sh start|stop|kill|psql|remove DIR}
dir=${2:?usage: pg-throwaway.sh $cmd DIR}

bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
  # The newest installed server.
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    echo "pg-throwaway: no PostgreSQL server found under /usr/lib/postgresql (apt-get install postgresql)" >&2
    exit 1
  fi
  echo "$d"
}

# Runs a PostgreSQL program as a user it accepts (never root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

BIN=$(bindir)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

case "$cmd" in
start)
  port=${3:-}
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    if [ -z "$port" ]; then
      port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    fi
    mkdir -p "$dir/data" "$dir/run"
    if [ "$(id -u)" = 0 ]; then
      # The postgres user must reach the folder through every parent
      # (a temporary folder is 0700): those it cannot enter get o+x.
      chmod 0755 "$dir"
      p=$(dirname "$dir")
      while [ "$p" != / ]; do
        runuser -u postgres -- test -x "$p" || chmod o+x "$p"
        p=$(dirname "$p")
      done
      chown postgres "$dir/data" "$dir/run"
      chmod 0700 "$dir/data"
    fi
    as_pg "$BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
  fi
  port=$(cat "$dir/port")
  if ! as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/run/server.log" -w -t 30 \
      -o "-p $port -k $dir/run -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null ||
      { cat "$dir/run/server.log" >&2; exit 1; }
  fi
  echo "postgres://postgres@127.0.0.1:$port/postgres"
  ;;
stop)
  as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  ;;
kill)
  as_pg "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  ;;
psql)
  port=$(cat "$dir/port")
  as_pg "$BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "${3:?SQL}"
  ;;
remove)
  [ -f "$dir/data/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
*)
  echo "pg-throwaway: unknown command $cmd" >&2
  exit 2
  ;;
esac
