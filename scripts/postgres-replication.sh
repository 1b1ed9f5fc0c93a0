#!/usr/bin/env bash
# Sets up real PostgreSQL logical replication to control, on a machine with
# PostgreSQL installed: a cluster of its own in a temporary directory
# (wal_level = logical, a free port), a source and a destination database,
# a table, a publication and a disabled subscription, and the connectors file
# of `agent --driver postgres`. Nothing outside that directory is touched.
# Then it prints what to run and what to try. `--stop DIR` stops the cluster
# and removes the directory.
set -euo pipefail

if [ "${1:-}" = "--stop" ]; then
  dir=${2:?usage: $0 --stop DIR}
  [ -f "$dir/bin" ] || { echo "$dir was not made by $0" >&2; exit 2; }
  bin=$(cat "$dir/bin")
  if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); else as=(); fi
  (cd /tmp && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null) || true
  rm -rf "$dir"
  echo "stopped and removed $dir"
  exit 0
fi

bin=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$bin/initdb" ] || { echo "no PostgreSQL server binaries (initdb) found: install postgresql, or set PG_BINDIR" >&2; exit 1; }
dir=$(mktemp -d /tmp/connector-control-pg.XXXXXX)
echo "$bin" > "$dir/bin"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# PostgreSQL refuses to run as root: then the cluster is the postgres user's.
if [ "$(id -u)" = 0 ]; then
  chown -R postgres "$dir"
  as=(runuser -u postgres --)
else
  as=()
fi
cd /tmp
"${as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c wal_level=logical" start >/dev/null

psql=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres)
"${psql[@]}" -d postgres -c "CREATE DATABASE source" -c "CREATE DATABASE destination"
"${psql[@]}" -d source >/dev/null <<'SQL'
CREATE TABLE orders (id int PRIMARY KEY, item text, placed timestamptz DEFAULT now());
CREATE PUBLICATION orders_pub FOR TABLE orders;
-- Made here: in one cluster, CREATE SUBSCRIPTION cannot make its own slot.
SELECT pg_create_logical_replication_slot('orders_sub', 'pgoutput');
SQL
"${psql[@]}" -d destination <<SQL
CREATE TABLE orders (id int PRIMARY KEY, item text, placed timestamptz);
CREATE SUBSCRIPTION orders_sub
  CONNECTION 'host=127.0.0.1 port=$port user=postgres dbname=source'
  PUBLICATION orders_pub
  WITH (enabled = false, create_slot = false, slot_name = 'orders_sub', copy_data = false,
        disable_on_error = true);
SQL
cat > "$dir/connectors.toml" <<TOML
[connectors.orders-pg]
destination = "postgres://postgres@127.0.0.1:$port/destination"
subscription = "orders_sub"
TOML

source="psql -h 127.0.0.1 -p $port -U postgres -d source"
destination="psql -h 127.0.0.1 -p $port -U postgres -d destination"
cat <<EOF
PostgreSQL $("$bin/postgres" --version | awk '{print $3}') runs in $dir on port $port:
source.orders is published; destination.orders subscribes (orders_sub, disabled).

1. The control plane (embedded store):
     connector-control serve --data-file $dir/control.db
2. The connector it controls:
     grpcurl -plaintext -d '{"connector": {"id": "orders-pg", "name": "orders into PostgreSQL",
       "project_id": "pg-lab", "project_name": "PostgreSQL lab", "kind": "CONNECTOR_KIND_INCREMENTAL_SYNC",
       "source": {"type": "POSTGRESQL", "region": "local", "address": "127.0.0.1:$port"},
       "destination": {"type": "POSTGRESQL", "region": "local", "address": "127.0.0.1:$port"}}}' \\
       127.0.0.1:50051 connector.v1.ConnectorService/CreateConnector
3. The agent, with the postgres driver:
     connector-control agent --region local --server-ip 127.0.0.1 --agent-id pg-local \\
       --driver postgres --connectors-file $dir/connectors.toml
4. Try it:
     connector-control connectors start orders-pg --wait
     $source -c "INSERT INTO orders (id, item) SELECT g, 'item ' || g FROM generate_series(1, 100) g"
     $destination -c "SELECT count(*) FROM orders"      # 100
     connector-control connectors pause orders-pg --reason "try a pause" --wait
     $source -c "INSERT INTO orders (id, item) SELECT g, 'item ' || g FROM generate_series(101, 200) g"
     connector-control connectors list                     # orders-pg STOPPED, its latency growing
     connector-control connectors start orders-pg --wait   # the other 100 arrive, once
   A conflict: a row in the way at the destination fails the connector; remove it and the
   restart policy starts it again:
     $destination -c "INSERT INTO orders (id, item) VALUES (201, 'in the way')"
     $source -c "INSERT INTO orders (id, item) VALUES (201, 'from the source')"
     connector-control connectors get orders-pg            # FAILED: PostgreSQL disabled orders_sub
     $destination -c "DELETE FROM orders WHERE id = 201"
5. Afterwards: $0 --stop $dir
EOF
