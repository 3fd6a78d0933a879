"""The notification kinds, listed in one place: a channel subscribes to some of them, and
every caller of `enqueue_notification` names one."""

from __future__ import annotations

GOV_ALERT = "gov_alert"  # a profile view from a government network reached the threshold
FRAUD_ALERT = "fraud_alert"  # a fraud rule raised an alert
PAYMENT_FAILED_SPIKE = "payment.failed_spike"  # payment.failed events of one organization exceeded the threshold in a window
INVITATION = "invitation"  # someone was invited to the organization
PASSWORD_RESET = "password_reset"  # an admin made a password reset for a member
PAYMENT_RETRY_REQUESTED = "payment.retry_requested"  # an admin asks the host platform to retry a payment
REFUND_REQUESTED = "refund.requested"  # an admin asks the host platform to execute a refund
INVOICE_REMINDER = "invoice.reminder"  # a platform admin reminds the organization of an unpaid invoice
TEST = "test"  # sendTestNotification: always sent to the one channel named, whatever its kinds

KINDS: dict[str, str] = {
    GOV_ALERT: "A profile view from a government network reached the organization's threshold.",
    FRAUD_ALERT: "A fraud rule raised a new alert.",
    PAYMENT_FAILED_SPIKE: "More payment.failed events than the installation's threshold in one window (once per window).",
    INVITATION: "Someone was invited to join the organization (the token is never included).",
    PASSWORD_RESET: "An admin made a password reset for a member (the token is never included).",
    PAYMENT_RETRY_REQUESTED: "An admin asked the host platform to retry a failed payment.",
    REFUND_REQUESTED: "An admin asked the host platform to execute a refund.",
    INVOICE_REMINDER: "A platform admin reminded the organization of an unpaid invoice (id, amount, due date, days overdue).",
    TEST: "A test sent with sendTestNotification.",
}
