#!/usr/bin/env bash
# Benchmarks wardsync (`wardsync bench`, release build) with both city
# stores (embedded, and on a PostgreSQL cluster of its own) and, side by
# side on the same machine and the same generated rows, PostgreSQL logical
# replication between two clusters on loopback ports (a publication on the
# "ward", a subscription on the "city", which keeps the same secondary
# indexes as the city: by ward, household, owner and folded name); prints
# all three, and the ratio wardsync / PostgreSQL per phase (records/s:
# above 1, wardsync is faster).
# Installs PostgreSQL from Debian if it is missing. Figures are printed, and
# written as JSON to target/bench/.
#
#   scripts/bench.sh [RECORDS] [-- extra wardsync bench flags]
#
# The generator repeats a key now and then (a record written twice): for
# PostgreSQL the second is an update (ON CONFLICT), as it is for wardsync.
#
# The load's floor: the city's own tables for the loaded records (typed
# rows, states, the log), COPYed by PostgreSQL alone into an empty schema,
# in one transaction: no store of this schema can load faster.
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

work=$(mktemp -d /tmp/wardsync-pg.XXXXXX)
trap 'for n in ward city store; do as_pg "$pg/pg_ctl" -D "$work/$n" stop -m immediate >/dev/null 2>&1 || true; done
      rm -rf "$work"' EXIT
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }
[[ $(id -u) == 0 ]] && chown postgres "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ward_port=$(free_port)
city_port=$(free_port)
store_port=$(free_port)
for node in ward city store; do
    as_pg "$pg/initdb" -D "$work/$node" -A trust -U postgres --locale=C.UTF-8 -E UTF8 >/dev/null
done
common="-c listen_addresses=127.0.0.1 -c unix_socket_directories=$work -c fsync=on -c synchronous_commit=on"

echo "== wardsync, embedded city store"
"$bin" bench --records "$records" --json "$out/wardsync.json" "$@"

echo "== wardsync, city store on PostgreSQL ($("$pg/postgres" --version))"
as_pg "$pg/pg_ctl" -D "$work/store" -l "$work/store.log" -w start -o "-p $store_port $common" >/dev/null
as_pg "$pg/createdb" -h 127.0.0.1 -p "$store_port" -U postgres wardsync
"$bin" bench --records "$records" --json "$out/wardsync-pg.json" \
    --database-url "postgres://postgres@127.0.0.1:$store_port/wardsync" "$@"

echo "== PostgreSQL alone storing the city's rows (no city): the load's floor"
# The load phase alone fills a database; its tables (typed rows, states, the
# log) are copied out, then COPYed in one transaction into an empty database
# with the same schema: what PostgreSQL itself spends to store what the city
# stores for those records, before the city does any work.
as_pg "$pg/createdb" -h 127.0.0.1 -p "$store_port" -U postgres floorsrc
as_pg "$pg/createdb" -h 127.0.0.1 -p "$store_port" -U postgres floor
"$bin" bench --records "$records" --phases load \
    --database-url "postgres://postgres@127.0.0.1:$store_port/floorsrc" "$@" >/dev/null
store() { as_pg "$pg/psql" -X -q -h 127.0.0.1 -p "$store_port" -U postgres -v ON_ERROR_STOP=1 "$@"; }
as_pg "$pg/pg_dump" -h 127.0.0.1 -p "$store_port" -U postgres --schema-only floorsrc | store -d floor >/dev/null
tables="citizens businesses land_parcels record_states change_log"
copies=$(for t in $tables; do
    store -d floorsrc -c "\\copy $t TO '$work/floor-$t.bin' WITH (FORMAT binary)"
    echo "\\copy $t FROM '$work/floor-$t.bin' WITH (FORMAT binary)"
done)
changes=$(store -d floorsrc -At -c "SELECT count(*) FROM change_log")
t0=$(now)
printf 'BEGIN;\n%s\nCOMMIT;\n' "$copies" | store -d floor
floor_rate=$(calc "$changes / ($(now) - $t0)")
printf '  %-10s %-34s %14.0f rec/s\n' load "$changes changes' rows, by COPY" "$floor_rate"
as_pg "$pg/pg_ctl" -D "$work/store" stop -m fast >/dev/null

echo "== PostgreSQL logical replication"
"$bin" bench --records "$records" --export-rows "$work/rows" "$@" >/dev/null
chmod -R a+rX "$work/rows"
as_pg "$pg/pg_ctl" -D "$work/ward" -l "$work/ward.log" -w start \
    -o "-p $ward_port $common -c wal_level=logical -c max_wal_senders=10 -c max_replication_slots=10" >/dev/null
as_pg "$pg/pg_ctl" -D "$work/city" -l "$work/city.log" -w start \
    -o "-p $city_port $common -c wal_retrieve_retry_interval=50ms -c max_logical_replication_workers=4" >/dev/null
ward() { as_pg "$pg/psql" -X -q -h 127.0.0.1 -p "$ward_port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
city() { as_pg "$pg/psql" -X -q -h 127.0.0.1 -p "$city_port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
schema="CREATE TABLE records (key text PRIMARY KEY, ward text NOT NULL, body jsonb NOT NULL);"
ward -c "$schema" -c "CREATE TABLE staging (id bigserial PRIMARY KEY, key text, ward text, body jsonb);
                      CREATE SEQUENCE pick; CREATE PUBLICATION wardpub FOR TABLE records;"
# The subscriber keeps the secondary indexes the city keeps: by ward,
# household, owner (of businesses and parcels) and folded name.
city -c "$schema" -c "CREATE EXTENSION unaccent;
    CREATE FUNCTION fold(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT
        AS \$\$ SELECT lower(translate(public.unaccent('public.unaccent', \$1), 'ĐđÐðƉɖ', 'dddddd')) \$\$;
    CREATE INDEX ON records (ward);
    CREATE INDEX ON records ((body->'body'->'citizen'->>'household_id'));
    CREATE INDEX ON records ((body->'body'->'business'->>'owner_personal_id'));
    CREATE INDEX ON records USING gin ((body->'body'->'land'->'owners'));
    CREATE INDEX ON records ((fold(coalesce(body->'body'->'citizen'->>'full_name',
                                              body->'body'->'business'->>'name'))) COLLATE \"C\");"
load_staging() { # FILE: the rows to insert or update, numbered from 1
    ward -c "TRUNCATE staging RESTART IDENTITY; ALTER SEQUENCE pick RESTART;" \
         -c "\\copy staging (key, ward, body) FROM '$work/rows/$1' WITH (FORMAT csv)"
}
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

echo "== wardsync / PostgreSQL logical replication, records per second"
FLOOR_LOAD=$floor_rate PG_LOAD=${pg_rate[load]} PG_STREAM=${pg_rate[stream]} PG_OUTAGE=${pg_rate[outage]} PG_UPDATE=${pg_rate[update]} \
python3 - "$out/wardsync.json" "$out/wardsync-pg.json" "$out/comparison.json" <<'PY'
import json, os, sys
def rates(path):
    return {f["phase"]: f["value"] for f in json.load(open(path)) if f["unit"] == "rec/s"}
embedded, on_pg = rates(sys.argv[1]), rates(sys.argv[2])
table = {}
print(f"  {'phase':<8} {'embedded':>10} {'on PG':>10} {'logical':>10}   ratios (embedded, on PG)")
for phase in ["load", "stream", "outage", "update"]:
    pg = float(os.environ["PG_" + phase.upper()])
    if phase not in embedded or phase not in on_pg:
        continue
    table[phase] = {"embedded": embedded[phase], "postgresql_store": on_pg[phase], "logical_replication": pg,
                    "ratio_embedded": embedded[phase] / pg, "ratio_postgresql_store": on_pg[phase] / pg}
    print(f"  {phase:<8} {embedded[phase]:>10.0f} {on_pg[phase]:>10.0f} {pg:>10.0f}   "
          f"{embedded[phase] / pg:5.2f}  {on_pg[phase] / pg:5.2f}")
floor, pg_load = float(os.environ["FLOOR_LOAD"]), float(os.environ["PG_LOAD"])
table["load_floor"] = {"postgresql_alone": floor, "ratio": floor / pg_load}
print(f"  PostgreSQL alone storing the city's rows of the load: {floor:.0f} rec/s, "
      f"{floor / pg_load:.2f} of logical replication's initial sync")
json.dump(table, open(sys.argv[3], "w"), indent=2)
PY
echo "figures: $out/wardsync.json, $out/wardsync-pg.json, $out/comparison.json"
