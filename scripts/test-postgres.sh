#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: initdb in a fresh temp dir, a free port on
# 127.0.0.1, trust auth, no fsync (data is thrown away). Never a fixed path or port.
#   scripts/test-postgres.sh start   → prints the cluster dir on line 1 and its URL on line 2
#   scripts/test-postgres.sh stop DIR
set -euo pipefail

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && [ -x "$d/initdb" ] || { echo "PostgreSQL server binaries not found (run scripts/setup.sh)" >&2; exit 1; }
  echo "$d"
}

# initdb refuses to run as root: run the server as the postgres system user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

case "${1:-}" in
  start)
    BIN=$(pg_bin)
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-pg.XXXXXX")
    chmod 755 "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
    as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --no-locale >"$DIR/initdb.log" 2>&1 \
      || { cat "$DIR/initdb.log" >&2; exit 1; }
    for _ in 1 2 3 4 5; do
      PORT=$(free_port)
      if as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
          -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
          start >/dev/null 2>&1; then
        echo "$DIR"
        echo "postgres://postgres@127.0.0.1:$PORT/postgres"
        exit 0
      fi
    done
    cat "$DIR/server.log" >&2 || true
    echo "could not start a throwaway PostgreSQL cluster" >&2
    exit 1
    ;;
  stop)
    DIR=${2:?usage: $0 stop DIR}
    BIN=$(pg_bin)
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
    ;;
  *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
