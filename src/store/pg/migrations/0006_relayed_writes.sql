-- What each write by another that a ward gave back in a repair (the city
-- having lost it) was taken on: its author's evidence as the city checked
-- it (an office request with the city's statement of what it derived; a
-- registration with its ward's own signature), by the log cursor of the
-- change applied (see `wardsync audit verify`). (Citus: a reference
-- table, as rare as the city's losses.)
CREATE TABLE relayed_writes (
    cursor     bigint PRIMARY KEY,
    evidence   bytea NOT NULL
);
