# Shared by scripts/run-example and scripts/test: install what is missing (Debian), and start
# a private PostgreSQL cluster and redis-server under .dev/ when DATABASE_URL / REDIS_URL are
# not given. Source it; it defines functions only.

JR_ROOT=${JR_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
JR_DEV=${JR_DEV:-$JR_ROOT/.dev}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

apt_updated=
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "missing $*; install it with your package manager"
  if [ -z "$apt_updated" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    apt_updated=1
  fi
  say "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

require_rust() {
  command -v cargo >/dev/null 2>&1 && return 0
  [ -x "$HOME/.cargo/bin/cargo" ] && { export PATH="$HOME/.cargo/bin:$PATH"; return 0; }
  die "cargo not found: install Rust (https://rustup.rs, or Debian's cargo and rustc packages)"
}

pg_bindir() {
  local v
  for v in $(ls /usr/lib/postgresql 2>/dev/null | sort -rn); do
    [ -x "/usr/lib/postgresql/$v/bin/initdb" ] && { echo "/usr/lib/postgresql/$v/bin"; return 0; }
  done
  return 1
}

require_postgres() {
  pg_bindir >/dev/null || apt_install postgresql
  local bindir version
  bindir=$(pg_bindir) || die "PostgreSQL server binaries not found after install"
  version=$(basename "$(dirname "$bindir")")
  [ -f "/usr/share/postgresql/$version/extension/debversion.control" ] \
    || apt_install "postgresql-$version-debversion"
  fix_debversion "$version"
}

# Debian bookworm's debversion 1.1.2 gives operator `>` the negator `>=` instead of `<=`;
# PostgreSQL 15.14 and later refuse that, so CREATE EXTENSION fails. Upstream fixed the same
# line; repair it in place when the broken line is there.
fix_debversion() {
  local script="/usr/share/postgresql/$1/extension/debversion--1.1.sql"
  [ -f "$script" ] || return 0
  if sed -n '/^CREATE OPERATOR > (/,/^);/p' "$script" | grep -q 'NEGATOR = >=,'; then
    say "repairing the negator of operator > in $script (known packaging bug)"
    as_root sed -i '/^CREATE OPERATOR > (/,/^);/ s/NEGATOR = >=,/NEGATOR = <=,/' "$script"
  fi
}

# The private cluster runs as the invoking user, or as `postgres` when invoked as root
# (initdb refuses root). Data and socket live in .dev/pg (or /tmp if postgres cannot reach it).
start_private_postgres() {
  require_postgres
  local bindir owner data port=55432
  bindir=$(pg_bindir)
  owner=$(id -un)
  data="$JR_DEV/pg"
  if [ "$(id -u)" -eq 0 ]; then
    owner=postgres
    id postgres >/dev/null 2>&1 || die "no postgres user; reinstall the postgresql package"
    mkdir -p "$JR_DEV"
    if ! runuser -u postgres -- test -x "$JR_DEV"; then
      data="/tmp/janitor-runner-pg-$(echo "$JR_ROOT" | md5sum | cut -c1-8)"
    fi
  fi
  run_pg() { if [ "$owner" = "$(id -un)" ]; then "$@"; else runuser -u "$owner" -- "$@"; fi; }
  if [ ! -f "$data/PG_VERSION" ]; then
    say "creating a private PostgreSQL cluster in $data"
    mkdir -p "$data"
    [ "$owner" = "$(id -un)" ] || chown "$owner" "$data"
    chmod 700 "$data"
    run_pg "$bindir/initdb" -D "$data" -U postgres -A trust --no-sync >/dev/null
  fi
  [ "$owner" = "$(id -un)" ] || chown -R "$owner" "$data"
  if ! run_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    say "starting the private PostgreSQL (socket in $data)"
    run_pg "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
      -o "-c listen_addresses='' -c unix_socket_directories='$data' -p $port -c fsync=off -c max_connections=300" \
      start >/dev/null || { cat "$data/server.log" >&2; die "PostgreSQL did not start"; }
  fi
  export DATABASE_URL="postgresql://postgres@localhost/postgres?host=$data&port=$port"
  JR_PG_DATA=$data
}

# Creates database $1 in the private cluster if needed; prints its URL.
ensure_private_database() {
  local psql; psql="$(pg_bindir)/psql"
  if [ -z "$("$psql" "$DATABASE_URL" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$1'")" ]; then
    "$psql" "$DATABASE_URL" -qc "CREATE DATABASE \"$1\"" >/dev/null
  fi
  echo "${DATABASE_URL/localhost\/postgres/localhost/$1}"
}

stop_private_postgres() {
  [ -n "${JR_PG_DATA:-}" ] || return 0
  local bindir; bindir=$(pg_bindir)
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$bindir/pg_ctl" -D "$JR_PG_DATA" -m fast stop >/dev/null 2>&1 || true
  else "$bindir/pg_ctl" -D "$JR_PG_DATA" -m fast stop >/dev/null 2>&1 || true; fi
}

# A private redis-server on a Unix socket in .dev/redis; keeps nothing on disk.
start_private_redis() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  local dir="$JR_DEV/redis"
  mkdir -p "$dir"
  if [ -S "$dir/redis.sock" ] && redis_alive "$dir/redis.sock"; then :; else
    say "starting a private redis-server (socket $dir/redis.sock)"
    rm -f "$dir/redis.sock"
    redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 --save '' \
      --appendonly no --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
      --dir "$dir" >/dev/null
    local i
    for i in $(seq 50); do [ -S "$dir/redis.sock" ] && break; sleep 0.1; done
    [ -S "$dir/redis.sock" ] || die "redis-server did not start; see $dir/redis.log"
  fi
  export REDIS_URL="redis+unix://$dir/redis.sock"
  JR_REDIS_DIR=$dir
}

redis_alive() {
  command -v redis-cli >/dev/null 2>&1 || return 0
  redis-cli -s "$1" ping >/dev/null 2>&1
}

stop_private_redis() {
  [ -n "${JR_REDIS_DIR:-}" ] && [ -f "$JR_REDIS_DIR/redis.pid" ] || return 0
  kill "$(cat "$JR_REDIS_DIR/redis.pid")" 2>/dev/null || true
}

# Test databases of runs that crashed before cleaning up (templates are kept: they are caches).
drop_stale_test_databases() {
  local psql bindir
  bindir=$(pg_bindir 2>/dev/null) && psql="$bindir/psql" || psql=$(command -v psql) || return 0
  "$psql" "$DATABASE_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'jrtest\_%'" 2>/dev/null |
    while read -r name; do
      "$psql" "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
}

# Where cargo puts its builds: target/ unless CARGO_TARGET_DIR or a cargo config says otherwise.
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps --manifest-path "$JR_ROOT/Cargo.toml" \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

# A virtualenv in .venv with maturin and pytest.
JR_VENV=${JR_VENV:-$JR_ROOT/.venv}
python_env() {
  command -v python3 >/dev/null 2>&1 || apt_install python3
  if [ ! -x "$JR_VENV/bin/python" ]; then
    python3 -m venv "$JR_VENV" 2>/dev/null || { apt_install python3-venv; rm -rf "$JR_VENV"; python3 -m venv "$JR_VENV"; }
  fi
  # moto: a real S3 server for the object-storage test; breezy: the client the Python site
  # and publisher open store branch URLs with (tests/it/upstream.rs, through JR_BREEZY_PYTHON).
  "$JR_VENV/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.5,<2" "pytest>=7" "moto[server,s3]>=5,<6" "mypy>=1.8" "breezy>=3.3,<4" >&2
}

# Builds the extension into .venv (debug build, sharing cargo's target directory).
maturin_develop() {
  say "building the Python extension"
  (cd "$JR_ROOT" && VIRTUAL_ENV="$JR_VENV" "$JR_VENV/bin/maturin" develop --quiet >&2)
}

# A throwaway PostgreSQL cluster with default settings (fsync on) and pg_stat_statements in
# directory $1 on port $2, for measurements; sets THROWAWAY_PG_ADMIN (the postgres database's
# URL), THROWAWAY_PG_PID (the postmaster) and THROWAWAY_PG_DATA. Stop it with
# stop_throwaway_postgres.
start_throwaway_postgres() {
  require_postgres
  local data=$1/pg port=$2 bindir owner
  bindir=$(pg_bindir)
  owner=$(id -un)
  [ "$(id -u)" -eq 0 ] && owner=postgres
  mkdir -p "$data"
  chmod 755 "$1"
  [ "$owner" = "$(id -un)" ] || chown "$owner" "$data"
  chmod 700 "$data"
  say "a PostgreSQL cluster with default settings in $data"
  _as_pg_owner "$owner" "$bindir/initdb" -D "$data" -U postgres -A trust >/dev/null
  _as_pg_owner "$owner" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
    -o "-c listen_addresses='' -c unix_socket_directories='$data' -p $port \
        -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all" \
    start >/dev/null || { cat "$data/server.log" >&2; die "PostgreSQL did not start"; }
  THROWAWAY_PG_ADMIN="postgresql://postgres@localhost/postgres?host=$data&port=$port"
  THROWAWAY_PG_PID=$(head -1 "$data/postmaster.pid")
  THROWAWAY_PG_DATA=$data
}

stop_throwaway_postgres() {
  [ -n "${THROWAWAY_PG_DATA:-}" ] || return 0
  local owner; owner=$(id -un)
  [ "$(id -u)" -eq 0 ] && owner=postgres
  _as_pg_owner "$owner" "$(pg_bindir)/pg_ctl" -D "$THROWAWAY_PG_DATA" -m immediate stop >/dev/null 2>&1 || true
}

_as_pg_owner() {
  local owner=$1; shift
  if [ "$owner" = "$(id -un)" ]; then "$@"; else runuser -u "$owner" -- "$@"; fi
}

# A directory for a measurement's logs and artifacts: on a tmpfs (/dev/shm) when there is one,
# since creating a directory per run on ext4 cost the runner 240-500 µs per cycle depending on
# the file system's history (inode allocation skips recently deleted inodes), noise larger than
# the differences measured; otherwise under $1. `--logs-on-disk` in the scripts keeps $1.
measurement_store_dir() {
  if [ "${2:-}" != on-disk ] && [ -d /dev/shm ] && [ -w /dev/shm ] &&
     [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
    mktemp -d -p /dev/shm janitor-runner-measure.XXXXXX
  else
    mkdir -p "$1/store" && echo "$1/store"
  fi
}
