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

-- A ward's own signature of each of its changes to another ward's record
-- (a registration), apart from its batch's: whoever holds the change can
-- prove who made it. (Citus: distributed by ward, like the change log.)
CREATE TABLE authored_changes (
    ward       text NOT NULL,
    seq        bigint NOT NULL,
    signature  bytea NOT NULL,
    PRIMARY KEY (ward, seq)
);
