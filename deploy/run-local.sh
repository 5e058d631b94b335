#!/usr/bin/env bash
# run-local.sh: seed a demo tenant (once) and run authserver + simapi in the
# foreground on the embedded SQLite database in ./var. `make run` builds the
# binaries and calls this; Ctrl-C stops both servers.
#
# The first run creates:
#   tenants  district_health_dept_a ("District A Health Department") and platform
#   users    reader (read-only), analyst, manager, admin   in district_health_dept_a
#   clients  integration      password,refresh_token, all six scopes, audience simapi
#            forecast-worker  client_credentials, role analyst
#            simapi           the resource server's introspection client (tenant platform)
# with random passwords and client secrets, kept in var/demo.env (mode 0600).
# Later runs reuse var/demo.env and the databases; `make clean` (or rm -rf var)
# starts over.
#
# Overrides (environment):
#   AUTH_PORT / SIM_PORT   listen ports on 127.0.0.1 (default 8080 / 8081)
#   AUTH_ADDR / SIM_ADDR   full listen addresses (win over the ports)
#   AUTH_ISSUER            issuer URL (default http://<AUTH_ADDR>)
#   VAR_DIR                data directory (default ./var)
#   READY_TIMEOUT          seconds to wait for each /readyz (default 30)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

VAR_DIR=${VAR_DIR:-./var}
BIN=${BIN:-./bin}
AUTH_PORT=${AUTH_PORT:-8080}
SIM_PORT=${SIM_PORT:-8081}
AUTH_ADDR=${AUTH_ADDR:-127.0.0.1:$AUTH_PORT}
SIM_ADDR=${SIM_ADDR:-127.0.0.1:$SIM_PORT}
READY_TIMEOUT=${READY_TIMEOUT:-30}

AUTH_DB="sqlite:$VAR_DIR/authserver.db"
SIM_DB="sqlite:$VAR_DIR/simapi.db"
DEMO_ENV="$VAR_DIR/demo.env"
TENANT=district_health_dept_a
ALL_SCOPES="forecasts:read simulations:run data:export observations:write users:manage billing:read"

die() { echo "run-local: $*" >&2; exit 1; }
say() { echo "==> $*"; }

# connect_host turns a listen address into something a client can dial.
connect_host() {
	local host=${1%:*}
	case "$host" in "" | 0.0.0.0 | "[::]") host=127.0.0.1 ;; esac
	echo "$host"
}
AUTH_HOST=$(connect_host "$AUTH_ADDR") AUTH_PORT=${AUTH_ADDR##*:}
SIM_HOST=$(connect_host "$SIM_ADDR") SIM_PORT=${SIM_ADDR##*:}
AUTH_URL="http://$AUTH_HOST:$AUTH_PORT"
SIM_URL="http://$SIM_HOST:$SIM_PORT"
ISSUER=${AUTH_ISSUER:-$AUTH_URL}

for b in authserver simapi; do
	[[ -x "$BIN/$b" ]] || die "$BIN/$b not found: run 'make build' first (or 'make run')"
done

# gen N: N random characters of [A-Za-z0-9].
gen() {
	local s=""
	while ((${#s} < $1)); do
		s+=$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n')
	done
	printf '%s' "${s:0:$1}"
}

# ---------------------------------------------------------------- seed
seed() {
	say "seeding a new demo into $VAR_DIR"
	READER_PASSWORD=$(gen 24)
	ANALYST_PASSWORD=$(gen 24)
	MANAGER_PASSWORD=$(gen 24)
	ADMIN_PASSWORD=$(gen 24)
	INTEGRATION_CLIENT_SECRET=$(gen 48)
	FORECAST_WORKER_CLIENT_SECRET=$(gen 48)
	SIMAPI_CLIENT_SECRET=$(gen 48)

	local as=("$BIN/authserver" --database "$AUTH_DB")
	"${as[@]}" migrate
	"${as[@]}" tenant create --id "$TENANT" --name "District A Health Department"
	"${as[@]}" tenant create --id platform --name "EpiTwin platform services"

	local u role pw
	for u in reader:read-only analyst:analyst manager:manager admin:admin; do
		role=${u#*:} u=${u%%:*}
		case "$u" in
		reader) pw=$READER_PASSWORD ;; analyst) pw=$ANALYST_PASSWORD ;;
		manager) pw=$MANAGER_PASSWORD ;; admin) pw=$ADMIN_PASSWORD ;;
		esac
		printf '%s\n' "$pw" | "${as[@]}" user create --tenant "$TENANT" --username "$u" --role "$role"
	done

	printf '%s\n' "$INTEGRATION_CLIENT_SECRET" | "${as[@]}" client create --secret-stdin \
		--tenant "$TENANT" --id integration --grants password,refresh_token \
		--scopes "$ALL_SCOPES" --audience simapi
	printf '%s\n' "$FORECAST_WORKER_CLIENT_SECRET" | "${as[@]}" client create --secret-stdin \
		--tenant "$TENANT" --id forecast-worker --grants client_credentials --role analyst \
		--scopes "forecasts:read simulations:run data:export" --audience simapi
	printf '%s\n' "$SIMAPI_CLIENT_SECRET" | "${as[@]}" client create --secret-stdin \
		--tenant platform --id simapi --introspect --audience simapi

	"$BIN/simapi" migrate --database "$SIM_DB" 2>>"$VAR_DIR/simapi.log"

	# Written last, so its presence means the seed completed.
	(
		umask 077
		cat >"$DEMO_ENV.tmp" <<-EOF
			# EpiTwin local demo, generated $(date -u +%Y-%m-%dT%H:%M:%SZ) by deploy/run-local.sh. Keep private.
			DEMO_TENANT=$TENANT
			READER_PASSWORD=$READER_PASSWORD
			ANALYST_PASSWORD=$ANALYST_PASSWORD
			MANAGER_PASSWORD=$MANAGER_PASSWORD
			ADMIN_PASSWORD=$ADMIN_PASSWORD
			INTEGRATION_CLIENT_SECRET=$INTEGRATION_CLIENT_SECRET
			FORECAST_WORKER_CLIENT_SECRET=$FORECAST_WORKER_CLIENT_SECRET
			SIMAPI_CLIENT_SECRET=$SIMAPI_CLIENT_SECRET
		EOF
	)
	chmod 600 "$DEMO_ENV.tmp"
	mv "$DEMO_ENV.tmp" "$DEMO_ENV"
	say "demo seeded; passwords and client secrets saved in $DEMO_ENV (mode 0600)"
}

trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$VAR_DIR"
chmod 700 "$VAR_DIR"
if [[ -f "$DEMO_ENV" ]]; then
	[[ -f "$VAR_DIR/authserver.db" ]] ||
		die "$DEMO_ENV exists but $VAR_DIR/authserver.db does not; remove $VAR_DIR (make clean) to reseed"
	chmod 600 "$DEMO_ENV"
	# shellcheck disable=SC1090
	source "$DEMO_ENV"
	for v in READER_PASSWORD ANALYST_PASSWORD MANAGER_PASSWORD ADMIN_PASSWORD \
		INTEGRATION_CLIENT_SECRET FORECAST_WORKER_CLIENT_SECRET SIMAPI_CLIENT_SECRET; do
		[[ -n "${!v:-}" ]] || die "$DEMO_ENV lacks $v; remove $VAR_DIR (make clean) to reseed"
	done
	say "reusing the demo seeded in $DEMO_ENV"
else
	for f in authserver.db simapi.db; do
		[[ ! -e "$VAR_DIR/$f" ]] ||
			die "$VAR_DIR/$f exists but $DEMO_ENV does not (an earlier seed failed, or the database was made by hand); remove $VAR_DIR (make clean) to reseed"
	done
	# A failed seed must not leave a half-seeded database behind.
	trap 'rm -f "$VAR_DIR"/authserver.db* "$VAR_DIR"/simapi.db* "$DEMO_ENV.tmp"
		echo "run-local: seeding failed (see above); removed the partial databases" >&2' EXIT
	seed
	trap - EXIT
fi

# ---------------------------------------------------------------- serve
PIDS=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ((${#PIDS[@]})); then
		say "stopping servers"
		kill -TERM "${PIDS[@]}" 2>/dev/null || true
		local i p
		for ((i = 0; i < 100; i++)); do # up to 20s of graceful shutdown
			alive || break
			sleep 0.2
		done
		for p in "${PIDS[@]}"; do
			kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
			wait "$p" 2>/dev/null || true
		done
	fi
	exit "$rc"
}
# alive: some server started here is still running.
alive() {
	local p
	for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done
	return 1
}
trap cleanup EXIT

# port_busy HOST PORT: something already accepts connections there.
port_busy() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# ready URL: GET URL answers 200.
ready() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null
	else
		local hp=${1#http://} path status
		path=/${hp#*/} hp=${hp%%/*}
		(
			exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}" || exit 1
			printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hp" >&3
			read -r -t 2 _ status _ <&3 && [[ $status == 200 ]]
		) 2>/dev/null
	fi
}

# wait_ready NAME PID URL LOG: poll URL until it answers 200 (bounded),
# failing early with the log's tail when the process dies.
wait_ready() {
	local name=$1 pid=$2 url=$3 log=$4 deadline=$((SECONDS + READY_TIMEOUT))
	until ready "$url"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "run-local: $name exited during startup; last lines of $log:" >&2
			tail -n 20 "$log" >&2
			exit 1
		fi
		if ((SECONDS >= deadline)); then
			echo "run-local: $name not ready at $url after ${READY_TIMEOUT}s; last lines of $log:" >&2
			tail -n 20 "$log" >&2
			exit 1
		fi
		sleep 0.2
	done
}

check_port() { # NAME HOST PORT
	if port_busy "$2" "$3"; then
		die "cannot start $1: port $3 on $2 is already in use (an earlier run, or another server).
Stop that process, or choose free ports, e.g.:  AUTH_PORT=$((AUTH_PORT + 10000)) SIM_PORT=$((SIM_PORT + 10000)) make run"
	fi
}
check_port authserver "$AUTH_HOST" "$AUTH_PORT"
check_port simapi "$SIM_HOST" "$SIM_PORT"

say "starting authserver on $AUTH_ADDR (log: $VAR_DIR/authserver.log)"
"$BIN/authserver" serve --database "$AUTH_DB" --addr "$AUTH_ADDR" --issuer "$ISSUER" \
	>>"$VAR_DIR/authserver.log" 2>&1 &
AUTH_PID=$!
PIDS+=("$AUTH_PID")
wait_ready authserver "$AUTH_PID" "$AUTH_URL/readyz" "$VAR_DIR/authserver.log"

say "starting simapi on $SIM_ADDR (log: $VAR_DIR/simapi.log)"
SIM_INTROSPECTION_CLIENT_SECRET=$SIMAPI_CLIENT_SECRET \
	"$BIN/simapi" serve --database "$SIM_DB" --addr "$SIM_ADDR" --issuer "$ISSUER" \
	--audience simapi --introspection-client-id simapi \
	>>"$VAR_DIR/simapi.log" 2>&1 &
SIM_PID=$!
PIDS+=("$SIM_PID")
wait_ready simapi "$SIM_PID" "$SIM_URL/readyz" "$VAR_DIR/simapi.log"

# ---------------------------------------------------------------- usage
AUTH=$AUTH_URL SIM=$SIM_URL
cat <<EOF

EpiTwin is running:  authserver $AUTH   simapi $SIM
Tenant $TENANT; users (password in $DEMO_ENV):
  reader    read-only   $READER_PASSWORD
  analyst   analyst     $ANALYST_PASSWORD
  manager   manager     $MANAGER_PASSWORD
  admin     admin       $ADMIN_PASSWORD

Try it from another terminal (bash; needs curl, no jq):

# helper: print one string field of a JSON answer
json() { sed -n "s/.*\"\$1\":\"\([^\"]*\)\".*/\1/p"; }

# 1. password grant: user "analyst" through the third-party client "integration"
RESP=\$(curl -sS -u 'integration:$INTEGRATION_CLIENT_SECRET' -d grant_type=password -d username=analyst -d 'password=$ANALYST_PASSWORD' $AUTH/oauth2/token)
ACCESS=\$(echo "\$RESP" | json access_token); REFRESH=\$(echo "\$RESP" | json refresh_token); echo "\$RESP"

# 2. who am I (tenant, role, scopes, effective permissions)
curl -sS -H "Authorization: Bearer \$ACCESS" $SIM/v1/me; echo

# 3. run a 180-day SEIR simulation, then list the tenant's forecasts
FORECAST=\$(curl -sS -H "Authorization: Bearer \$ACCESS" -H 'Content-Type: application/json' -d '{"population":1000000,"initial_exposed":100,"initial_infected":10,"initial_recovered":0,"beta":0.3,"sigma":0.2,"gamma":0.1,"days":180}' $SIM/v1/simulate | json id); echo "forecast \$FORECAST"
curl -sS -H "Authorization: Bearer \$ACCESS" $SIM/v1/forecasts; echo

# 4. download the forecast's plot
curl -sS -H "Authorization: Bearer \$ACCESS" -o forecast.svg $SIM/v1/forecasts/\$FORECAST/plot.svg && echo "wrote forecast.svg"

# 5. refresh (the refresh token rotates: keep the new one)
RESP=\$(curl -sS -u 'integration:$INTEGRATION_CLIENT_SECRET' -d grant_type=refresh_token -d "refresh_token=\$REFRESH" $AUTH/oauth2/token)
ACCESS=\$(echo "\$RESP" | json access_token); REFRESH=\$(echo "\$RESP" | json refresh_token); echo "\$RESP"

# 6. client-credentials token for the internal service "forecast-worker"
curl -sS -u 'forecast-worker:$FORECAST_WORKER_CLIENT_SECRET' -d grant_type=client_credentials $AUTH/oauth2/token; echo

# 7. introspect the access token as the resource server "simapi"
curl -sS -u 'simapi:$SIMAPI_CLIENT_SECRET' -d "token=\$ACCESS" $AUTH/oauth2/introspect; echo

# 8. revoke the refresh token (ends its whole family, access tokens included), then introspect again
curl -sS -u 'integration:$INTEGRATION_CLIENT_SECRET' -d "token=\$REFRESH" -d token_type_hint=refresh_token $AUTH/oauth2/revoke && echo revoked
curl -sS -u 'simapi:$SIMAPI_CLIENT_SECRET' -d "token=\$ACCESS" $AUTH/oauth2/introspect; echo
sleep 5; curl -sS -H "Authorization: Bearer \$ACCESS" $SIM/v1/me; echo   # 401 once simapi's 5s introspection cache expires

# Other roles: repeat step 1 with username=reader (403 on /v1/simulate), manager or admin.
Logs: $VAR_DIR/authserver.log, $VAR_DIR/simapi.log.  Press Ctrl-C to stop both servers.
EOF

# Stay in the foreground until Ctrl-C (the traps stop both servers) or
# until a server dies on its own. `sleep & wait` keeps Ctrl-C immediate.
while kill -0 "$AUTH_PID" 2>/dev/null && kill -0 "$SIM_PID" 2>/dev/null; do
	sleep 1 &
	wait $! || true
done
for p in "$AUTH_PID" "$SIM_PID"; do
	if ! kill -0 "$p" 2>/dev/null; then
		name=authserver log=$VAR_DIR/authserver.log
		[[ $p == "$SIM_PID" ]] && name=simapi log=$VAR_DIR/simapi.log
		echo "run-local: $name has exited; last lines of $log:" >&2
		tail -n 20 "$log" >&2
	fi
done
exit 1
