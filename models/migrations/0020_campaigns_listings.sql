-- pulsegraph 0020: ticketed listings and campaign-tagged costs.
--
-- Listings (ticketed events) are read from their own events (listing.published / started /
-- ended, stored in `events` like every event); orders name the listing they sold tickets
-- for in properties.listingId, which the ledger keeps in transactions.metadata.
-- costs.campaign: the UTM campaign a cost was spent on (matched against utm_campaign of
--   sessions by campaignPerformance); NULL for untagged costs.

ALTER TABLE costs ADD COLUMN campaign text;
CREATE INDEX costs_campaign ON costs (organization_id, campaign, incurred_on) WHERE campaign IS NOT NULL;
CREATE INDEX transactions_listing ON transactions (organization_id, (metadata ->> 'listingId'))
    WHERE type = 'order' AND metadata ? 'listingId';
CREATE INDEX sessions_started ON sessions (organization_id, started_at);

-- profiles.kind: what a profile stands for, so platform reports can count creators and
--   brands: provider (the default: a service provider's public profile), creator or brand.
ALTER TABLE profiles ADD COLUMN kind text NOT NULL DEFAULT 'provider' CHECK (kind IN ('provider', 'creator', 'brand'));
