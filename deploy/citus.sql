-- Sharding the wardsync city database over a Citus cluster. Run once on
-- the coordinator, after the first city process has created the schema
-- (wardsync migrates it; Citus then keeps the distribution).
--
-- The keys, and why:
-- * A record's tables (its typed row, its replicated state, its conflicts)
--   are distributed by the record's id: every write to a record, and every
--   get by key, goes to one shard; a transfer between wards changes the
--   record's `ward`, which a distribution column could not do.
-- * What is per ward (the change log by writing ward, the downstream notes
--   by receiving ward, the replication state, the quarantine) is
--   distributed by ward and co-located: a ward's stream reads one shard.
-- * city_clock (one row, locked by every write to order the log) and the
--   small tables are reference tables, copied to every node.
-- Every primary and unique key holds its table's distribution column and no
-- foreign key crosses tables: tests/pg_store.rs checks both on the schema
-- itself against this file. Reading the log in cursor order, and joining
-- downstream notes to the log, cross shards: enable repartition joins
-- (`SET citus.enable_repartition_joins = on` for the city's user).
-- Upgrading a cluster already sharded: a migration that adds a table
-- creates it on the coordinator only; run that table's line below once
-- after the first city process of the new version has migrated
-- (migration 0005: office_requests, authored_changes; 0006:
-- relayed_writes).

SELECT create_reference_table('schema_version');
SELECT create_reference_table('city_clock');
SELECT create_reference_table('denied_calls');
SELECT create_reference_table('ward_keys');
SELECT create_reference_table('office_requests');
SELECT create_reference_table('relayed_writes');

SELECT create_distributed_table('citizens', 'personal_id');
SELECT create_distributed_table('businesses', 'enterprise_code');
SELECT create_distributed_table('land_parcels', 'parcel_id');
SELECT create_distributed_table('record_states', 'id');
SELECT create_distributed_table('conflicts', 'id', colocate_with => 'record_states');

SELECT create_distributed_table('change_log', 'ward');
SELECT create_distributed_table('downstream', 'ward', colocate_with => 'change_log');
SELECT create_distributed_table('ward_state', 'ward', colocate_with => 'change_log');
SELECT create_distributed_table('quarantine', 'ward', colocate_with => 'change_log');
SELECT create_distributed_table('signed_batches', 'ward', colocate_with => 'change_log');
SELECT create_distributed_table('authored_changes', 'ward', colocate_with => 'change_log');

ALTER ROLE CURRENT_USER SET citus.enable_repartition_joins = on;
