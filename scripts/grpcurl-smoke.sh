#!/usr/bin/env bash
# Smoke test with the real grpcurl, as an on-call engineer would use it:
# reflection (list, describe), health, a search, a start with a JSON body and
# a rejected start whose error details must print as JSON, a traced call, the
# lagging filter, the Prometheus /metrics page, the console, and every
# example of the README against `serve --demo` (scripts/readme_examples.py).
#
# Needs: grpcurl on PATH, psql, a built binary (BIN, default
# target/debug/connector-control), PostgreSQL at DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres). Uses a database of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/debug/connector-control}
ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB="cc_smoke_$$"
# The same server and options, another database (URL or key-value form).
BASE=${ADMIN_URL%%\?*}
QUERY=""
[[ "$ADMIN_URL" == *\?* ]] && QUERY="?${ADMIN_URL#*\?}"
case "$BASE" in
  *://*/*) SMOKE_URL="${BASE%/*}/$DB$QUERY" ;;
  *://*) SMOKE_URL="$BASE/$DB$QUERY" ;;
  *) SMOKE_URL="$ADMIN_URL dbname=$DB" ;;
esac
WORK=$(mktemp -d)
passed=0

cleanup() {
  [[ -n "${SERVER_PID:-}" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "smoke: FAILED: $1" >&2
  [[ -f "$WORK/out" ]] && { echo "--- output:" >&2; cat "$WORK/out" >&2; }
  echo "--- server log:" >&2
  cat "$WORK/server.log" >&2 || true
  echo "smoke: $passed passed, 1 failed"
  exit 1
}

# expect NAME PATTERN COMMAND...: runs COMMAND, requires PATTERN in its output.
expect() {
  local name=$1 pattern=$2
  shift 2
  "$@" >"$WORK/out" 2>&1 || true
  grep -qF -- "$pattern" "$WORK/out" || fail "$name: expected '$pattern'"
  passed=$((passed + 1))
  echo "smoke: ok - $name"
}

psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB" >/dev/null

# The URL goes through the environment: a command line is visible in `ps`.
DATABASE_URL="$SMOKE_URL" "$BIN" serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --console-listen 127.0.0.1:0 \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do
  ADDR=$(sed -n 's/.*serving gRPC addr=\([0-9.:]*\).*/\1/p' "$WORK/server.log")
  [[ -n "$ADDR" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited during start-up"
  sleep 0.1
done
[[ -n "${ADDR:-}" ]] || fail "server did not start within 30 s"

G=(grpcurl -plaintext -max-time 10)
SVC=connector.v1.ConnectorService

expect "list services through reflection" "$SVC" "${G[@]}" "$ADDR" list
expect "health is SERVING" '"status": "SERVING"' "${G[@]}" "$ADDR" grpc.health.v1.Health/Check
expect "describe shows StartConnector" "rpc StartConnector" "${G[@]}" "$ADDR" describe "$SVC"
expect "describe documents error reasons" "ERROR_REASON_PULL_BACK_OUT_OF_RANGE" \
  "${G[@]}" "$ADDR" describe connector.v1.ErrorReason

expect "create a connector" '"state": "CONNECTOR_STATE_STOPPED"' "${G[@]}" -d '{
  "connector": {
    "id": "orders-eu", "name": "orders to warehouse",
    "project_id": "proj-orders", "project_name": "Orders",
    "kind": "CONNECTOR_KIND_INCREMENTAL_SYNC",
    "source": {"type": "MYSQL", "region": "eu-1", "address": "10.0.1.20:3306"},
    "destination": {"type": "OCEANBASE", "region": "eu-2", "address": "10.0.2.30:2881"}
  }}' "$ADDR" "$SVC/CreateConnector"

expect "search by name" '"totalSize": 1' "${G[@]}" -d '{"query": "WAREHOUSE"}' \
  "$ADDR" "$SVC/ListConnectors"

expect "a dry-run start writes nothing" '"validateOnly": true' "${G[@]}" -d '{
  "id": "orders-eu", "validate_only": true}' "$ADDR" "$SVC/StartConnector"

expect "start with pull-back" '"status": "COMMAND_STATUS_PENDING"' "${G[@]}" -d '{
  "id": "orders-eu", "pull_back_time": "2026-01-01T00:00:00Z", "request_id": "smoke-1"}' \
  "$ADDR" "$SVC/StartConnector"

expect "a second start explains itself" '"reason":"CONNECTOR_NOT_STOPPED"' "${G[@]}" \
  -d '{"id": "orders-eu"}' "$ADDR" "$SVC/StartConnector"

expect "the history has one command, the start" '"generation": "1"' "${G[@]}" \
  -d '{"connector_id": "orders-eu"}' "$ADDR" "$SVC/ListCommands"

expect "a dry-run batch pause shows what it would pause" '"outcome": "BATCH_OUTCOME_CHANGED"' \
  "${G[@]}" -d '{"filter": {"query": "orders"}, "reason": "smoke", "validate_only": true}' \
  "$ADDR" "$SVC/BatchPauseConnectors"
expect "a batch over its guard is refused" '"reason":"TOO_MANY_CONNECTORS"' "${G[@]}" \
  -d '{"ids": ["orders-eu", "billing-eu"], "max_connectors": 1}' "$ADDR" "$SVC/BatchPauseConnectors"

expect "a restart policy can be changed" '"maxRestarts": 5' "${G[@]}" -d '{
  "id": "orders-eu", "restart_policy": {"max_restarts": 5, "initial_backoff": "30s"}}' \
  "$ADDR" "$SVC/UpdateRestartPolicy"

# A watch streams until interrupted: -max-time ends it after the snapshot.
expect "a watch begins with the snapshot" '"type": "WATCH_EVENT_TYPE_SNAPSHOT_END"' "${G[@]}" \
  -max-time 2 -d '{"filter": {"query": "orders"}}' "$ADDR" "$SVC/WatchConnectors"
expect "an altered resume token is refused" '"field":"resume_token"' "${G[@]}" \
  -d '{"resume_token": "AAAA"}' "$ADDR" "$SVC/WatchConnectors"
expect "nothing waits for an automatic start" '{' "${G[@]}" -d '{"awaiting_restart": true}' \
  "$ADDR" "$SVC/ListConnectors"

expect "regions list where connectors run" '"name": "eu-2"' "${G[@]}" "$ADDR" "$SVC/ListRegions"
expect "agents can be listed" '{' "${G[@]}" -d '{"region": "eu-2"}' "$ADDR" \
  connector.v1.AgentService/ListAgents
expect "this replica leads" '"leader": true' "${G[@]}" "$ADDR" \
  connector.v1.AgentService/ListReplicas
expect "the audit trail has the start" '"action": "START_CONNECTOR"' "${G[@]}" \
  -d '{"connector_id": "orders-eu"}' "$ADDR" connector.v1.AuditService/ListAuditEvents

expect "bad fields are listed" '"field":"page_size"' "${G[@]}" -d '{"page_size": -1}' \
  "$ADDR" "$SVC/ListConnectors"
"${G[@]}" -d '{"connector": {"id": "payments-eu", "name": "payments",
  "project_id": "proj-payments", "project_name": "Payments",
  "kind": "CONNECTOR_KIND_INCREMENTAL_SYNC",
  "source": {"type": "MYSQL", "region": "eu-1", "address": "10.0.1.21:3306"},
  "destination": {"type": "OCEANBASE", "region": "eu-2", "address": "10.0.2.31:2881"}}}' \
  "$ADDR" "$SVC/CreateConnector" >/dev/null || fail "creating a second connector"
expect "a pull-back into the future is out of range" '"reason":"PULL_BACK_OUT_OF_RANGE"' \
  "${G[@]}" -d '{"id": "payments-eu", "pull_back_time": "2999-01-01T00:00:00Z"}' \
  "$ADDR" "$SVC/StartConnector"
HUGE=$(python3 -c 'print("x" * 100000)')
expect "an oversized request names the size limit" '"reason":"MESSAGE_TOO_LARGE"' \
  "${G[@]}" -d "{\"query\": \"$HUGE\"}" "$ADDR" "$SVC/ListConnectors"
expect "a traced call with a traceparent" '"id": "orders-eu"' "${G[@]}" \
  -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' \
  -d '{"id": "orders-eu"}' "$ADDR" "$SVC/GetConnector"
# No agent reported on it: starting, not lagging.
"${G[@]}" -d '{"lagging": true}' "$ADDR" "$SVC/ListConnectors" >"$WORK/out" 2>&1 \
  || fail "the lagging filter: the call failed"
grep -q "orders-eu" "$WORK/out" && fail "the lagging filter: a starting connector is not lagging"
passed=$((passed + 1))
echo "smoke: ok - the lagging filter"

METRICS=$(sed -n 's/.*serving Prometheus metrics.*addr=\([0-9.:]*\).*/\1/p' "$WORK/server.log")
[[ -n "$METRICS" ]] || fail "no /metrics address in the server log"
expect "/metrics counts calls by method and code" \
  'rpc_grpc_status_code="FAILED_PRECONDITION",rpc_method="StartConnector"' \
  python3 -c "import urllib.request, sys; sys.stdout.write(urllib.request.urlopen('http://$METRICS/metrics').read().decode())"

CONSOLE=$(sed -n 's/.*serving the console.*addr=\([0-9.:]*\).*/\1/p' "$WORK/server.log")
[[ -n "$CONSOLE" ]] || fail "no console address in the server log"
expect "the console's Connector tab lists the connectors" 'orders to warehouse' \
  python3 -c "import urllib.request, sys; sys.stdout.write(urllib.request.urlopen('http://$CONSOLE/?q=orders').read().decode())"

kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || fail "server exited non-zero after SIGTERM"
SERVER_PID=
grep -q "stopped" "$WORK/server.log" || fail "no graceful stop in the server log"
passed=$((passed + 1))
echo "smoke: ok - graceful stop on SIGTERM"

# Every grpcurl and CLI example of the README, as written, against
# `serve --demo` (a process of its own, on the embedded store).
python3 scripts/readme_examples.py "$BIN" || fail "the README's examples against serve --demo"
passed=$((passed + 1))
echo "smoke: ok - every README example works against serve --demo"

echo "smoke: $passed passed, 0 failed"
