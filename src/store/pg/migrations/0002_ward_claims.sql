-- Each ward's changes to other wards' records on one day (UTC), counted
-- in the write that takes them: every city process shares the budget.
-- And the last sequence its numbering moved past on its word alone, which
-- the city's receipts never speak for.
ALTER TABLE ward_state
    ADD COLUMN budget_day   bigint NOT NULL DEFAULT 0,  -- days since the epoch
    ADD COLUMN budget_spent bigint NOT NULL DEFAULT 0,
    ADD COLUMN unproven_to  bigint NOT NULL DEFAULT 0;
