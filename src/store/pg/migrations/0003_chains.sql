-- Each ward's chain as the city applied it: the link of its last applied
-- change, the key id its content hashes were made with, the newest stamp
-- of its changes, and the forks found (batches that did not link on).
ALTER TABLE ward_state
    ADD COLUMN chain_link   bytea,                       -- 32 bytes; NULL: not known
    ADD COLUMN chain_key    bytea,                       -- 32 bytes
    ADD COLUMN newest_wall  bigint NOT NULL DEFAULT 0,
    ADD COLUMN newest_logical bigint NOT NULL DEFAULT 0,
    ADD COLUMN forks        bigint NOT NULL DEFAULT 0,
    ADD COLUMN fork_seq     bigint NOT NULL DEFAULT 0;
