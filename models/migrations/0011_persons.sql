-- pulsegraph 0011: persons and cohorts, for product analytics over every event.
--
-- A person is keyed like events.visitor_id: 'u:<user id>', 'a:<anonymous id>', or the
-- cookie-less daily hash. An identify links an anonymous key to a user key in
-- person_aliases; every insight reads an event's person as
--   COALESCE(person_aliases.person_id, events.visitor_id)
-- so a link made today also moves the anonymous history received before it.
--
-- persons holds what is known of a person beyond their events: properties ($set and
-- $set_once) and the first and last time any event of theirs happened.

CREATE TABLE persons (
    organization_id uuid NOT NULL,
    id              text NOT NULL,
    properties      jsonb NOT NULL DEFAULT '{}'::jsonb,
    first_seen_at   timestamptz,
    last_seen_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE person_aliases (
    organization_id uuid NOT NULL,
    alias           text NOT NULL,
    person_id       text NOT NULL,
    linked_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, alias)
);
CREATE INDEX person_aliases_person ON person_aliases (organization_id, person_id);

-- Cohorts: a stored definition (kind + JSON), its members computed by the scheduler.
CREATE TABLE cohorts (
    organization_id uuid NOT NULL,
    id              uuid NOT NULL,
    name            text NOT NULL,
    kind            text NOT NULL,
    definition      jsonb NOT NULL DEFAULT '{}'::jsonb,
    member_count    integer,
    computed_at     timestamptz,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE cohort_members (
    organization_id uuid NOT NULL,
    cohort_id       uuid NOT NULL,
    person_id       text NOT NULL,
    PRIMARY KEY (organization_id, cohort_id, person_id)
);
CREATE INDEX cohort_members_person ON cohort_members (organization_id, person_id);
