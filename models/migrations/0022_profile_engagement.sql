-- Engagement beyond views on every profile rollup row: favorites (net of unfavorites, so a
-- bucket can be negative), shares and clicks.
ALTER TABLE profile_rollups
    ADD COLUMN favorites bigint NOT NULL DEFAULT 0,
    ADD COLUMN shares    bigint NOT NULL DEFAULT 0,
    ADD COLUMN clicks    bigint NOT NULL DEFAULT 0;
