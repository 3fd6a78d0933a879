-- pulsegraph 0012: the order person properties were set in.
--
-- persons.property_stamps holds, per key of persons.properties, how and when its value was
-- set: ["set" | "once", "<occurred_at>|<received_at>|<event id>"] (UTC times in fixed-width
-- ISO text, so stamps compare as text). A value is replaced only by a later $set (in event
-- order: occurred_at, then arrival, then event id) or, while no $set ever wrote it, by an
-- earlier $set_once: so a late event never overwrites a newer value.
ALTER TABLE persons ADD COLUMN property_stamps jsonb NOT NULL DEFAULT '{}'::jsonb;
