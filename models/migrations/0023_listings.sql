-- Ticketed events (listings) as the worker records them from listing.published / started /
-- ended: the latest publication's details, and the first start and end reported.
CREATE TABLE listings (
    organization_id   uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    listing_id        text NOT NULL,
    title             text,
    starts_at         timestamptz,
    ends_at           timestamptz,
    published_at      timestamptz,
    started_at        timestamptz,
    ended_at          timestamptz,
    PRIMARY KEY (organization_id, listing_id)
);
CREATE INDEX listings_starts ON listings (starts_at);
