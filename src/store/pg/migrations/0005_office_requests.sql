-- Each office request as the office signed it (correction, settlement,
-- discard), kept beside the changes the city derived from it, by the
-- cursor of the first (see `wardsync audit verify`). `entry` is the
-- encoded request: what was asked, by whom, the caller's key id,
-- certificate and signature, and the cursors it derived. (Citus: a
-- reference table, as small as the office's work.)
CREATE TABLE office_requests (
    cursor     bigint PRIMARY KEY,
    entry      bytea NOT NULL
);
