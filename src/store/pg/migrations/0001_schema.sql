-- wardsync city database, schema version 1: one table per record kind with
-- typed columns for the data office, the change log, per-ward replication
-- state, conflicts, quarantine and the audit trail.
--
-- Distribution (Citus): records, their states and conflicts are
-- distributed by the record's id (a transfer changes a record's ward, and a
-- distribution column cannot change); the change log, downstream notes,
-- replication state and quarantine by ward; denied_calls and city_clock are
-- small reference tables. Every primary and unique key includes its table's
-- distribution column, and no foreign key crosses tables.

CREATE EXTENSION IF NOT EXISTS unaccent;

-- Folding for name search without diacritics, as wardsync's own `fold`:
-- lower case, no diacritics, đ as d. IMMUTABLE so that it can be indexed.
CREATE FUNCTION wardsync_fold(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT lower(translate(public.unaccent('public.unaccent', $1), 'ĐđÐðƉɖ', 'dddddd')) $$;

CREATE TABLE citizens (
    personal_id          text PRIMARY KEY,
    ward                 text NOT NULL,
    full_name            text NOT NULL,
    folded_name          text COLLATE "C" NOT NULL GENERATED ALWAYS AS (wardsync_fold(full_name)) STORED,
    date_of_birth        date NOT NULL,
    sex                  text NOT NULL,
    ethnicity            text NOT NULL,
    nationality          text NOT NULL,
    household_id         text NOT NULL,
    relationship_to_head text NOT NULL,
    permanent_address    text NOT NULL,
    permanent_commune    text NOT NULL,
    temporary_address    text,
    temporary_commune    text,
    marital_status       text NOT NULL,
    phone                text NOT NULL,
    events               jsonb NOT NULL,
    disputed             boolean NOT NULL DEFAULT false,
    last_cursor          bigint NOT NULL,
    last_changed_at      timestamptz NOT NULL
);
CREATE INDEX citizens_ward ON citizens (ward);
CREATE INDEX citizens_household ON citizens (household_id, personal_id) WHERE household_id <> '';
CREATE INDEX citizens_name ON citizens (folded_name, personal_id);

CREATE TABLE businesses (
    enterprise_code   text PRIMARY KEY,
    ward              text NOT NULL,
    form              text NOT NULL,
    name              text NOT NULL,
    folded_name       text COLLATE "C" NOT NULL GENERATED ALWAYS AS (wardsync_fold(name)) STORED,
    owner_personal_id text NOT NULL,
    address           text NOT NULL,
    sector_code       text NOT NULL,
    status            text NOT NULL,
    registration_date date NOT NULL,
    disputed          boolean NOT NULL DEFAULT false,
    last_cursor       bigint NOT NULL,
    last_changed_at   timestamptz NOT NULL
);
CREATE INDEX businesses_ward ON businesses (ward);
CREATE INDEX businesses_owner ON businesses (owner_personal_id);
CREATE INDEX businesses_name ON businesses (folded_name, enterprise_code);

CREATE TABLE land_parcels (
    parcel_id          text PRIMARY KEY,   -- commune:sheet:parcel
    ward               text NOT NULL,
    commune_code       text NOT NULL,
    map_sheet          text NOT NULL,
    parcel_number      text NOT NULL,
    aliases            text[] NOT NULL,
    area_m2            double precision NOT NULL,
    land_use_type      text NOT NULL,
    owners             text[] NOT NULL,
    certificate_serial text NOT NULL,
    address            text NOT NULL,
    registrations      jsonb NOT NULL,
    disputed           boolean NOT NULL DEFAULT false,
    last_cursor        bigint NOT NULL,
    last_changed_at    timestamptz NOT NULL
);
CREATE INDEX land_parcels_ward ON land_parcels (ward);
CREATE INDEX land_parcels_owners ON land_parcels USING gin (owners);

-- Every record's replicated state (every unsuperseded write, in
-- wardsync's compact binary encoding), deleted records included, so that a
-- late change never resurrects one; and the record it shows, encoded.
CREATE TABLE record_states (
    kind        text NOT NULL,
    id          text NOT NULL,
    state       bytea NOT NULL,
    shown       bytea,                  -- NULL: deleted
    ward        text,                   -- the owning ward; NULL: deleted
    last_cursor bigint NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX record_states_ward ON record_states (kind, ward, id) WHERE shown IS NOT NULL;

-- The change log: every applied change, with who wrote it and who sent it.
CREATE TABLE change_log (
    cursor      bigint NOT NULL,
    ward        text NOT NULL,          -- the writing ward, or 'city'
    identity    text NOT NULL,          -- the authenticated identity that submitted it
    applied_at  timestamptz NOT NULL,
    kind        text NOT NULL,
    id          text NOT NULL,
    seq         bigint NOT NULL,
    fields      text[] NOT NULL,
    field_values jsonb NOT NULL,        -- the fields' new values (old ones: the previous entry of the record)
    deleted     boolean NOT NULL,
    entry       bytea NOT NULL,         -- the logged change, encoded
    PRIMARY KEY (ward, cursor)
);
CREATE INDEX change_log_cursor ON change_log (cursor);
CREATE INDEX change_log_record ON change_log (kind, id, cursor);
-- Time only grows with the cursor: a block range index, cheap to keep.
CREATE INDEX change_log_time ON change_log USING brin (applied_at);

CREATE TABLE ward_state (
    ward              text PRIMARY KEY,
    last_applied_seq  bigint NOT NULL,
    last_contact      timestamptz,      -- NULL: never
    records           bigint NOT NULL,
    quarantined       bigint NOT NULL,
    lost_changes      bigint NOT NULL DEFAULT 0,
    lost_first_seq    bigint,
    lost_last_seq     bigint,
    lost_found_at     timestamptz
);

CREATE TABLE downstream (
    ward    text NOT NULL,
    cursor  bigint NOT NULL,
    whole   boolean NOT NULL,
    PRIMARY KEY (ward, cursor)
);

CREATE TABLE conflicts (
    kind       text NOT NULL,
    id         text NOT NULL,
    field      text NOT NULL,
    owner      text NOT NULL,
    policy     text NOT NULL,
    contenders jsonb NOT NULL,
    opened_at  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    entry      bytea NOT NULL,          -- the conflict, encoded
    PRIMARY KEY (kind, id, field)
);
CREATE INDEX conflicts_owner ON conflicts (owner);

-- Changes the city would not apply; discarded ones stay, marked.
CREATE TABLE quarantine (
    ward      text NOT NULL,
    seq       bigint NOT NULL,
    reason    text NOT NULL,
    at        timestamptz NOT NULL,
    discarded_by     text,              -- NULL: still in quarantine
    discarded_reason text,
    discarded_at     timestamptz,
    entry     bytea NOT NULL,           -- the quarantined change, encoded
    PRIMARY KEY (ward, seq)
);

CREATE TABLE denied_calls (
    at       timestamptz NOT NULL,
    n        bigserial NOT NULL,
    identity text NOT NULL,
    rpc      text NOT NULL,
    reason   text NOT NULL,
    PRIMARY KEY (at, n)
);

-- The city's log cursor and clock: one row, which every write locks
-- until it commits, so that cursors become visible in their order.
CREATE TABLE city_clock (
    id          integer PRIMARY KEY CHECK (id = 1),
    cursor      bigint NOT NULL,
    hlc_wall_ms bigint NOT NULL,
    hlc_logical bigint NOT NULL,
    policies    bytea,                  -- the merge policies records are shown under
    records     bigint[] NOT NULL,      -- records held: citizens, businesses, land parcels
    writes      bigint NOT NULL         -- writes committed, each numbered
);
INSERT INTO city_clock VALUES (1, 0, 0, 0, NULL, '{0,0,0}', 0);

-- The data office reads with a role of its own: members of
-- wardsync_office may read the office's tables, and write nothing.
-- (Creating it needs CREATEROLE; a DBA can create it beforehand.)
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wardsync_office') THEN
        CREATE ROLE wardsync_office NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO wardsync_office;
GRANT SELECT ON citizens, businesses, land_parcels, change_log, ward_state, conflicts, quarantine,
    denied_calls TO wardsync_office;
