-- The key the city makes its receipts with (city::receipts): 32 random
-- bytes, set by the first city process to open the database, never sent.
-- Kept with the data, so a restored copy checks the receipts it gave.
ALTER TABLE city_clock ADD COLUMN receipt_secret bytea;

-- Each ward's changes to other wards' records on one day (UTC), counted
-- in the write that takes them: every city process shares the budget.
ALTER TABLE ward_state
    ADD COLUMN budget_day   bigint NOT NULL DEFAULT 0,  -- days since the epoch
    ADD COLUMN budget_spent bigint NOT NULL DEFAULT 0;
