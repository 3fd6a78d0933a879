"""The rotating keys that pseudonymize raw IPs. Created by migration 0002; the privacy
service (app/services/privacy.py) creates and deletes them with SQL."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.fields import NOW


class IpHmacKey(Model):
    """One random key per period; deleted once the period is over, so the hashes made with
    it can no longer be recomputed from candidate IPs. Global: one per period for every
    tenant."""

    period_start = fields.DateField(primary_key=True)
    period_end = fields.DateField()
    key = fields.BinaryField()
    created_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "ip_hmac_keys"
