-- What the city keeps to prove its log (see `wardsync audit verify`):
-- each batch as its ward signed it, the certificate of every key that
-- signed one, and the context a change was sent with where the city
-- applied it cut down. (Citus: signed_batches distributed by ward, like
-- the change log; ward_keys a small reference table.)
CREATE TABLE signed_batches (
    ward       text NOT NULL,
    last_seq   bigint NOT NULL,
    first_seq  bigint NOT NULL,
    previous   bytea NOT NULL,          -- the link before the batch, 32 bytes
    hashes     bytea NOT NULL,          -- each change's content hash, 32 bytes each
    key_id     bytea NOT NULL,          -- 32 bytes
    signature  bytea NOT NULL,          -- of the last link; empty under insecure_dev
    PRIMARY KEY (ward, last_seq)
);

CREATE TABLE ward_keys (
    key_id     bytea PRIMARY KEY,
    ward       text NOT NULL,
    cert       bytea NOT NULL           -- DER
);

ALTER TABLE change_log ADD COLUMN sent_context bytea;  -- NULL: applied as sent

-- The log's running hash at `cursor` (see `wardsync audit verify`), kept
-- in the row every write locks; computed from the log when it is NULL (a
-- database written before it was kept).
ALTER TABLE city_clock ADD COLUMN running bytea;

-- This database's id, 16 random bytes made once: the city's receipts name
-- it, so that one of another deployment never passes for this one's.
ALTER TABLE city_clock ADD COLUMN city_id bytea;
