-- pulsegraph 0025: buyer emails, as keyed hashes only.
-- A sale event's properties.buyerEmail never reaches the database: ingestion replaces it with
-- properties.buyerEmailHash (HMAC-SHA256 under the installation's email secret, see
-- app/services/buyer_emails.py), and the worker copies that hash into the ledger row. The
-- support search finds the orders of an exact address through this index, across
-- organizations for platform admins (so the organization is not in front). A data-subject
-- deletion sets it back to NULL.
ALTER TABLE transactions ADD COLUMN buyer_email_hash text;
CREATE INDEX transactions_buyer_email ON transactions (buyer_email_hash, occurred_at DESC)
    WHERE buyer_email_hash IS NOT NULL;
