-- pulsegraph 0008: refunds still waiting for their sale.
--
-- A refund names its sale by properties.originalEventId, else by properties.orderId. When it
-- is recorded before that sale, it waits with refund_of NULL until the sale arrives, and the
-- worker then links it in the sale's transaction. Waiting refunds are few, so a small partial
-- index lets every new sale find them without reading the ledger; the named event id is
-- indexed as the refund's metadata stores it.

CREATE INDEX transactions_unlinked_refunds
    ON transactions (organization_id, (metadata ->> 'originalEventId'), order_id)
    WHERE is_refund AND refund_of IS NULL;
