#!/usr/bin/env bash
# Load-test authserver on PostgreSQL against its floors (make bench-load).
#
# Creates a throw-away database authserver_bench_<pid> next to
# AUTH_BENCH_POSTGRES_URL, seeds a tenant, a user and three clients, starts
# bin/authserver on 127.0.0.1:18090, runs bin/loadgen, then stops the
# server and drops the database (also on failure or Ctrl-C).
# Expects bin/authserver and bin/loadgen to be built (make build does it).
#
# Environment:
#   AUTH_BENCH_POSTGRES_URL  admin URL of the PostgreSQL server
#                            (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
#   WORKERS      concurrent workers (default 16)
#   DURATION     measured window of each scenario (default 10s)
#   WARMUP       warm-up before each window (default 2s)
#   BCRYPT_COST  bcrypt cost of the server and the user (default 12)
#   SCENARIOS    comma-separated loadgen scenarios (default: all)
#   LOADGEN_ARGS extra loadgen flags, e.g. "--json"
#   BENCH_PORT   server port (default 18090)
#   KEEP_DB      when set, keep the database afterwards (for EXPLAIN)
set -euo pipefail

cd "$(dirname "$0")/.."

ADMIN_URL="${AUTH_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
WORKERS="${WORKERS:-16}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
BCRYPT_COST="${BCRYPT_COST:-12}"
SCENARIOS="${SCENARIOS:-cc,refresh,introspect,password,insert-floor,bcrypt-floor}"
PORT="${BENCH_PORT:-18090}"
ADDR="127.0.0.1:${PORT}"
BASE="http://${ADDR}"
DB_NAME="authserver_bench_$$"

for b in bin/authserver bin/loadgen; do
	[[ -x "$b" ]] || { echo "bench-load: $b is missing; run 'make build' first" >&2; exit 1; }
done
case "$ADMIN_URL" in
postgres://* | postgresql://*) ;;
*) echo "bench-load: AUTH_BENCH_POSTGRES_URL must be a postgres:// URL" >&2; exit 1 ;;
esac

# The bench database URL: the admin URL with its path replaced.
DB_URL="$(printf '%s' "$ADMIN_URL" | sed -E "s#^(postgres(ql)?://[^/?]+)(/[^?]*)?#\\1/${DB_NAME}#")"

have_psql=false
command -v psql >/dev/null 2>&1 && have_psql=true

db_admin() { # db_admin create|drop
	if $have_psql; then
		if [[ $1 == create ]]; then
			psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -qAt -c "CREATE DATABASE \"${DB_NAME}\"" >/dev/null
		else
			psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -qAt -c "DROP DATABASE IF EXISTS \"${DB_NAME}\" WITH (FORCE)" >/dev/null
		fi
	else
		bin/loadgen --database "$ADMIN_URL" "--$1-database" "$DB_NAME"
	fi
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench-load.XXXXXX")"
LOG="$WORK/authserver.log"
SERVER_PID=""
DB_CREATED=false

cleanup() {
	local rc=$?
	set +e
	if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null
		for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
	fi
	if $DB_CREATED && [[ -n "${KEEP_DB:-}" ]]; then
		echo "bench-load: KEEP_DB set: database ${DB_NAME} kept for inspection" >&2
	elif $DB_CREATED; then
		db_admin drop || echo "bench-load: could not drop database ${DB_NAME}; drop it by hand" >&2
	fi
	if [[ $rc -ne 0 && -s "$LOG" ]]; then
		echo "bench-load: last server log lines ($LOG):" >&2
		tail -n 20 "$LOG" >&2
		echo "bench-load: keeping $WORK for inspection" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if curl -fsS -o /dev/null --max-time 1 "$BASE/readyz" 2>/dev/null; then
	echo "bench-load: something already answers on $BASE; set BENCH_PORT" >&2
	exit 1
fi

echo "bench-load: creating database ${DB_NAME}" >&2
db_admin create
DB_CREATED=true

export AUTH_DATABASE_URL="$DB_URL"
AUTH_KEY_ENCRYPTION_KEY="$(head -c 32 /dev/urandom | base64)"
export AUTH_KEY_ENCRYPTION_KEY

rand_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
USER_PASSWORD="bench-$(rand_hex 12)"
APP_SECRET="$(rand_hex 24)"
CC_SECRET="$(rand_hex 24)"
RS_SECRET="$(rand_hex 24)"
SCOPES="forecasts:read simulations:run"

echo "bench-load: migrating and seeding" >&2
bin/authserver migrate >/dev/null
bin/authserver tenant create --id bench --name "Load test" >/dev/null
printf '%s\n' "$USER_PASSWORD" | bin/authserver user create --tenant bench --username bench-user \
	--role analyst --bcrypt-cost "$BCRYPT_COST" >/dev/null
printf '%s\n' "$APP_SECRET" | bin/authserver client create --tenant bench --id bench-app \
	--grants password,refresh_token --scopes "$SCOPES" --audience simapi --secret-stdin >/dev/null
printf '%s\n' "$CC_SECRET" | bin/authserver client create --tenant bench --id bench-cc \
	--grants client_credentials --scopes "$SCOPES" --audience simapi --role analyst --secret-stdin >/dev/null
printf '%s\n' "$RS_SECRET" | bin/authserver client create --tenant bench --id bench-rs \
	--introspect --audience simapi --secret-stdin >/dev/null

echo "bench-load: starting authserver on $ADDR (log: $LOG)" >&2
bin/authserver serve --addr "$ADDR" --issuer "$BASE" --log-level warn \
	--bcrypt-cost "$BCRYPT_COST" 2>"$LOG" &
SERVER_PID=$!

for i in $(seq 1 100); do
	if curl -fsS -o /dev/null --max-time 1 "$BASE/readyz" 2>/dev/null; then
		break
	fi
	if ! kill -0 "$SERVER_PID" 2>/dev/null; then
		echo "bench-load: authserver exited during start-up" >&2
		exit 1
	fi
	if [[ $i -eq 100 ]]; then
		echo "bench-load: authserver not ready after 20s" >&2
		exit 1
	fi
	sleep 0.2
done

# Secrets go through the environment, not argv.
# shellcheck disable=SC2086 # LOADGEN_ARGS is split on purpose
LOADGEN_CC_CLIENT_SECRET="$CC_SECRET" \
	LOADGEN_APP_CLIENT_SECRET="$APP_SECRET" \
	LOADGEN_INTROSPECT_CLIENT_SECRET="$RS_SECRET" \
	LOADGEN_USER_PASSWORD="$USER_PASSWORD" \
	LOADGEN_DATABASE_URL="$DB_URL" \
	bin/loadgen \
	--target "$BASE" \
	--workers "$WORKERS" \
	--duration "$DURATION" \
	--warmup "$WARMUP" \
	--bcrypt-cost "$BCRYPT_COST" \
	--scenarios "$SCENARIOS" \
	--cc-client-id bench-cc \
	--app-client-id bench-app \
	--introspect-client-id bench-rs \
	--username bench-user \
	--server-pid "$SERVER_PID" \
	${LOADGEN_ARGS:-}
