#!/usr/bin/env bash
# Benchmarks wardsync (`wardsync bench`, release build) and, side by side on
# the same machine and the same generated rows, PostgreSQL logical
# replication between two clusters on loopback ports (a publication on the
# "ward", a subscription on the "city"); prints both, and the ratio
# wardsync / PostgreSQL per phase (records/s: above 1, wardsync is faster).
# Installs PostgreSQL from Debian if it is missing. Figures are printed, and
# written as JSON to target/bench/.
#
#   scripts/bench.sh [RECORDS] [-- extra wardsync bench flags]
#
# The generator repeats a key now and then (a record written twice): for
# PostgreSQL the second is an update (ON CONFLICT), as it is for wardsync.
#
# PostgreSQL phases, timed until the subscriber has flushed everything
# (the publication slot's confirmed_flush_lsn reaches the publisher's LSN):
#   load    rows already in the publisher's table; CREATE SUBSCRIPTION copies them
#   stream  RECORDS rows inserted by 64 clients, one row per transaction
#   outage  subscription disabled, RECORDS single-row updates, enabled: the drain
#   update  RECORDS single-row updates by 64 clients while subscribed
set -euo pipefail
records=${1:-100000}
shift || true
[[ "${1:-}" == "--" ]] && shift
cd "$(dirname "$0")/.."
out=target/bench
mkdir -p "$out"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing PostgreSQL from Debian..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
pg=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
cargo build --release -q
bin=target/release/wardsync

echo "== wardsync"
"$bin" bench --records "$records" --json "$out/wardsync.json" "$@"

echo "== PostgreSQL ($("$pg/postgres" --version))"
work=$(mktemp -d /tmp/wardsync-pg.XXXXXX)
trap 'as_pg "$pg/pg_ctl" -D "$work/ward" stop -m immediate >/dev/null 2>&1 || true;
      as_pg "$pg/pg_ctl" -D "$work/city" stop -m immediate >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[[ $(id -u) == 0 ]] && chown postgres "$work"
"$bin" bench --records "$records" --export-rows "$work/rows" "$@" >/dev/null
chmod -R a+rX "$work/rows"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ward_port=$(free_port)
city_port=$(free_port)
for node in ward city; do
    as_pg "$pg/initdb" -D "$work/$node" -A trust -U postgres >/dev/null
done
common="-c listen_addresses=127.0.0.1 -c unix_socket_directories=$work -c fsync=on -c synchronous_commit=on"
as_pg "$pg/pg_ctl" -D "$work/ward" -l "$work/ward.log" -w start \
    -o "-p $ward_port $common -c wal_level=logical -c max_wal_senders=10 -c max_replication_slots=10" >/dev/null
as_pg "$pg/pg_ctl" -D "$work/city" -l "$work/city.log" -w start \
    -o "-p $city_port $common -c wal_retrieve_retry_interval=50ms -c max_logical_replication_workers=4" >/dev/null
ward() { as_pg "$pg/psql" -X -q -h 127.0.0.1 -p "$ward_port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
city() { as_pg "$pg/psql" -X -q -h 127.0.0.1 -p "$city_port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
schema="CREATE TABLE records (key text PRIMARY KEY, ward text NOT NULL, body jsonb NOT NULL);"
ward -c "$schema" -c "CREATE TABLE staging (id bigserial PRIMARY KEY, key text, ward text, body jsonb);
                      CREATE SEQUENCE pick; CREATE PUBLICATION wardpub FOR TABLE records;"
city -c "$schema"
load_staging() { # FILE: the rows to insert or update, numbered from 1
    ward -c "TRUNCATE staging RESTART IDENTITY; ALTER SEQUENCE pick RESTART;" \
         -c "\\copy staging (key, ward, body) FROM '$work/rows/$1' WITH (FORMAT csv)"
}
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }
caught_up() { # waits until the subscriber has flushed everything the publisher wrote
    local target
    target=$(ward -At -c "SELECT pg_current_wal_lsn()")
    until [[ $(ward -At -c "SELECT coalesce(bool_and(confirmed_flush_lsn >= '$target'), false) FROM pg_replication_slots WHERE slot_name = 'citysub'") == t ]]; do
        sleep 0.02
    done
}
clients() { # SQL: one statement per transaction, by 64 clients, once per staging row
    local n=$(( $(ward -At -c "SELECT count(*) FROM staging") ))
    printf '%s\n' "$1" >"$work/step.sql"
    chmod a+r "$work/step.sql"
    as_pg "$pg/pgbench" -n -h 127.0.0.1 -p "$ward_port" -U postgres -c 64 -j 2 -t $((n / 64)) -f "$work/step.sql" postgres >/dev/null
    ward -c "INSERT INTO records SELECT DISTINCT ON (key) key, ward, body FROM staging WHERE id > $(( (n / 64) * 64 )) ORDER BY key, id DESC
             ON CONFLICT (key) DO UPDATE SET body = excluded.body" >/dev/null
}
declare -A pg_rate
rows() { wc -l <"$work/rows/$1"; }
report() { # PHASE FILE WHAT T0: the time since T0 and the rate of FILE's rows
    local t n
    t=$(calc "$(now) - $4")
    n=$(rows "$2")
    pg_rate[$1]=$(calc "$n / $t")
    printf '  %-10s %-34s %14.2f s\n  %-10s %-34s %14.0f rec/s\n' "$1" "$n $3" "$t" "$1" "rows/s, flushed at the subscriber" "${pg_rate[$1]}"
}

# load: the rows are there before the subscription; it copies them.
load_staging load.csv
ward -c "INSERT INTO records SELECT DISTINCT ON (key) key, ward, body FROM staging ORDER BY key, id DESC"
t0=$(now)
city -c "CREATE SUBSCRIPTION citysub CONNECTION 'host=127.0.0.1 port=$ward_port user=postgres dbname=postgres' PUBLICATION wardpub"
until [[ $(city -At -c "SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate <> 'r'") == t ]]; do sleep 0.02; done
caught_up
report load load.csv "rows, initial sync" "$t0"

# stream: single-row inserts by 64 clients while subscribed.
load_staging stream.csv
t0=$(now)
clients "WITH n AS (SELECT nextval('pick') AS id) INSERT INTO records SELECT s.key, s.ward, s.body FROM staging s, n WHERE s.id = n.id ON CONFLICT (key) DO UPDATE SET body = excluded.body;"
caught_up
report stream stream.csv "rows inserted and replicated" "$t0"

# outage: subscription disabled, single-row updates queued, enabled.
load_staging update1.csv
city -c "ALTER SUBSCRIPTION citysub DISABLE"
clients "WITH n AS (SELECT nextval('pick') AS id) UPDATE records r SET body = s.body FROM staging s, n WHERE s.id = n.id AND r.key = s.key;"
t0=$(now)
city -c "ALTER SUBSCRIPTION citysub ENABLE"
caught_up
report outage update1.csv "queued updates drained" "$t0"

# update: single-row updates by 64 clients while subscribed.
load_staging update2.csv
t0=$(now)
clients "WITH n AS (SELECT nextval('pick') AS id) UPDATE records r SET body = s.body FROM staging s, n WHERE s.id = n.id AND r.key = s.key;"
caught_up
report update update2.csv "updates written and replicated" "$t0"
held=$(city -At -c "SELECT count(*) FROM records")
digest="SELECT md5(string_agg(key || body::text, ',' ORDER BY key)) FROM records"
[[ $(ward -At -c "$digest") == $(city -At -c "$digest") ]] || { echo "the subscriber's rows differ" >&2; exit 1; }
echo "  (the subscriber holds all $held rows, identical to the publisher's)"

echo "== wardsync / PostgreSQL, records per second"
PG_LOAD=${pg_rate[load]} PG_STREAM=${pg_rate[stream]} PG_OUTAGE=${pg_rate[outage]} PG_UPDATE=${pg_rate[update]} \
python3 - "$out/wardsync.json" "$out/comparison.json" <<'PY'
import json, os, sys
ours = {f["phase"]: f["value"] for f in json.load(open(sys.argv[1])) if f["unit"] == "rec/s"}
table = {}
for phase in ["load", "stream", "outage", "update"]:
    pg = float(os.environ["PG_" + phase.upper()])
    if phase not in ours:
        continue
    table[phase] = {"wardsync": ours[phase], "postgresql": pg, "ratio": ours[phase] / pg}
    print(f"  {phase:<8} wardsync {ours[phase]:>10.0f} rec/s   PostgreSQL {pg:>10.0f} rec/s   ratio {ours[phase] / pg:5.2f}")
json.dump(table, open(sys.argv[2], "w"), indent=2)
PY
echo "figures: $out/wardsync.json, $out/comparison.json"
