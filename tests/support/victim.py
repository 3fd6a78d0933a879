"""A tenant whose every report shows values nobody else has: the victim of the tenancy tests.

Its views, inquiries, money, fraud, gov alerts, settings, costs, an identified person, a
cohort, a services marketplace, failed payments (one resolved, one retried), the host platform's
failed webhooks and a notification channel with a delivery go in through the public
API (its own ingestion key, service and admin tokens) and the real worker, with amounts,
counts and names chosen to occur nowhere else, so any of them in another tenant's answer can
only have come from this tenant.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.support.graphql import gql_data
from tests.support.schema_operations import SAMPLES, Side
from tests.support.tenants import Tenant

# What the seed creates, by the kinds of object an ID argument may name (see
# tests/support/schema_operations.py): a field whose ID names another kind is not covered.
SEEDED_KINDS = ("organization", "profile", "cost", "fraud rule", "fraud alert", "person", "cohort", "member", "invitation",
                "service token", "ingestion key", "personal key", "audit entry", "experiment", "notification channel",
                "delivery", "organization note")  # fmt: skip
SUBJECT = {"userId": SAMPLES["userId"], "anonymousId": SAMPLES["anonymousId"]}  # what deleteSubjectData samples name
ARMY_IP = "6.1.2.3"  # 6.0.0.0/8 is on the shipped curated gov list
VIEWS, INQUIRIES = 29, 11
ENGAGEMENT_MS = 47_311

TRACK = """mutation($e: [TrackEventInput!]!) { trackEvents(events: $e) { accepted rejected { index field reason } } }"""
PUBLISH = """mutation($e: [DomainEventInput!]!) {
  publishDomainEvents(events: $e) { accepted rejected { index field reason } } }"""
ALERTS = "query { fraudAlerts { alerts { id kind } } }"
RULE = """mutation($params: JSON!) { createFraudRule(kind: BULK_PURCHASE, name: "Victim bulk buyers", params: $params,
  risk: HIGH) { id } }"""
COST = """mutation($p: ID!, $d: Date!) { createCost(category: TOOLS, amountMinor: 73117, currency: "EUR", date: $d,
  profileId: $p, description: "Victim studio rent", campaign: "victim-spring-drive") { id } }"""
COST_FIX = """mutation($id: ID!) { updateCost(id: $id, amountMinor: 73119, description: "Victim studio rent, corrected") { id } }"""
NOTE_ON_ORGANIZATION = """mutation($org: ID!) { addOrganizationNote(organizationId: $org,
  body: "Victim asked for a call back on 7731") { id } }"""
SETTINGS = [
    "mutation { updateOrganizationSettings(ipRetentionDays: 17, eventRetentionDays: 419) { organizationId } }",
    "mutation { updateGovAlertSettings(threshold: 0.83) { organizationId } }",
    """mutation { updateMoneySettings(reportingCurrency: "CHF", duoSplitPercent: 37,
       rates: [{currency: "EUR", rate: "0.9137"}, {currency: "JPY", rate: "0.0061"}]) { organizationId } }""",
]
NOTE = """mutation($id: ID!) { addFraudAlertNote(id: $id, note: "Victim card tester, seen twice") { alert { id } } }"""
IDENTIFY = """mutation { identify(userId: "victim-regular", anonymousId: "victim-visitor-3",
  properties: {email: "victim-regular@victim.example", tier: "victim-gold"}) { personId } }"""
COHORT = """mutation($d: CohortDefinitionInput!) { createCohort(name: "Victim lapsed patrons", definition: $d) { id } }"""
EXPERIMENT = """mutation($i: ExperimentInput!) { createExperiment(input: $i) { id } }"""
START = """mutation($id: ID!) { setExperimentStatus(id: $id, status: RUNNING) { status } }"""
ASSIGN = """mutation($p: String!) { experimentAssignment(experimentKey: "victim-checkout-test", personId: $p) { variant } }"""
INVITE = """mutation($org: ID!) { inviteMember(organizationId: $org, email: "victim-colleague@victim.example", role: VIEWER) {
  invitation { id } token } }"""
ACCEPT = """mutation($t: String!) { acceptInvitation(token: $t, password: "tangerine orbit 4417", name: "Victim Colleague") {
  user { id } } }"""
SERVICE_TOKEN = """mutation($org: ID!) { createServiceToken(organizationId: $org, name: "Victim billing backend") { key { id } } }"""
INGESTION_KEY = """mutation($org: ID!) { createIngestionKey(organizationId: $org, name: "Victim beacon key") { key { id } } }"""
PERSONAL_KEY = """mutation { createPersonalApiKey(name: "Victim analyst notebook", role: VIEWER) { key { id } } }"""
NEWEST_AUDIT_ENTRY = "query { auditLog(limit: 1) { id } }"
CHANNEL = """mutation { createNotificationChannel(kind: WEBHOOK, name: "Victim night pager", kinds: ["gov_alert", "fraud_alert"],
  url: "https://93.184.215.14/victim-night-pager") { channel { id } } }"""
# Pending deliveries: a count webhookHealth shows for nobody else (not a small number such as
# the organizations a platform answer counts), sent in two operations under the alias limit.
TEST_NOTIFICATIONS = (24, 23)
TEST_NOTIFICATION = "mutation($id: ID!) {{ {} }}"
TEST_ALIAS = "t{}: sendTestNotification(id: $id) {{ id }}"
RESOLVE_PAYMENT = """mutation($org: ID!, $t: String!) { resolveFailedPayment(organizationId: $org, transactionId: $t,
  reason: "Victim vault card replaced") { status } }"""
RETRY_PAYMENT = """mutation($org: ID!, $t: String!) { requestPaymentRetry(organizationId: $org, transactionId: $t,
  reason: "Victim asked for a second charge") { status } }"""
LIFECYCLE = """mutation($org: ID!) {
  suspended: suspendOrganization(organizationId: $org, reason: "Victim suspended for a chargeback audit") { status }
  reinstated: reinstateOrganization(organizationId: $org, reason: "Victim audit closed") { status } }"""


def views(victim: Tenant, now: datetime) -> list[dict[str, Any]]:
    """VIEWS views (one from a gov network, some by the subject), INQUIRIES inquiries and one
    engagement event, over the last two days."""
    events = []
    for n in range(VIEWS):
        context = {"referrer": f"https://victim-blog-{n % 3}.example/post", "ip": ARMY_IP if n == 0 else "198.51.100.23",
                   "utmSource": "victim-newsletter", "utmMedium": "victim-mail", "utmCampaign": "victim-spring-drive"}
        who = SUBJECT if n % 5 == 0 else {"anonymousId": f"victim-visitor-{n}"}
        at = now - timedelta(hours=2 + n)
        events.append({"type": "profile.viewed", "profileId": victim.profile_id, "occurredAt": at.isoformat(), "context": context, **who})
    for n in range(INQUIRIES):
        at = now - timedelta(hours=3 + n)
        events.append({"type": "profile.inquiry", "profileId": victim.profile_id, "occurredAt": at.isoformat(), **SUBJECT})
    events.append({"type": "profile.engaged", "profileId": victim.profile_id, "engagementMs": ENGAGEMENT_MS, **SUBJECT})
    return events


def money(victim: Tenant, partner: str, now: datetime) -> list[dict[str, Any]]:
    """A duo booking with fees and a payout, a gift, a subscription, an order partly refunded,
    an affiliate commission, an invoice overdue, the payout settling, and four failed payments
    by one card with a reason of their own (the default FAILED_PAYMENTS rule raises an alert)."""
    tag = uuid.uuid4().hex[:8]

    def event(kind: str, n: int, amount: int, **fields: Any) -> dict[str, Any]:
        at = (now - timedelta(hours=1, minutes=n)).isoformat()
        return {"eventId": f"victim-{tag}-{n}", "type": kind, "amountMinor": amount, "currency": "EUR", "occurredAt": at, **fields}

    booking = {"partnerProfileId": partner, "splitPercent": 63, "platformFeeMinor": 4_827, "processorFeeMinor": 311,
               "payoutId": "po-victim-1", "orderId": "victim-order-1"}  # fmt: skip
    return [
        event("BOOKING_COMPLETED", 1, 48_271, profileId=victim.profile_id, userId="victim-buyer", properties=booking),
        event("GIFT_PURCHASED", 2, 6_173, profileId=victim.profile_id, userId="victim-donor",
              properties={"category": "victim-orchids", "serviceFeeMinor": 419}),
        event("SUBSCRIPTION_CHARGED", 3, 9_137, profileId=victim.profile_id, userId="victim-fan"),
        event("ORDER_PAID", 4, 15_551, userId="victim-buyer", properties={"orderId": "victim-order-2", "quantity": 3,
                                                                          "listingId": "victim-gig-1",
                                                                          "buyerEmail": SAMPLES["buyerEmail"]}),
        event("ORDER_REFUNDED", 5, 2_203, properties={"orderId": "victim-order-2"}),
        event("AFFILIATE_COMMISSION", 6, 3_119),
        event("INVOICE_ISSUED", 7, 12_347, properties={"invoiceId": "INV-VICTIM-1", "dueDate": (now - timedelta(days=9)).date().isoformat()}),
        event("PAYOUT_SETTLED", 8, 40_001, properties={"payoutId": "po-victim-1"}),
        *(event("PAYMENT_FAILED", 10 + n, 2_917, userId="victim-card-tester", properties={"reason": "victim_vault_declined"})
          for n in range(4)),
    ]  # fmt: skip


def host_webhooks(now: datetime) -> list[dict[str, Any]]:
    """The host platform's webhooks to an endpoint of its own failing with a status and an error nobody else has."""
    tag = uuid.uuid4().hex[:8]
    failed = {"endpoint": "https://93.184.215.14/victim-ledger-sync", "eventType": "victim.invoice_synced", "statusCode": 418,
              "error": "victim teapot refused", "attempt": 3, "maxAttempts": 7}  # fmt: skip
    return [{"eventId": f"victim-w-{tag}-{n}", "type": "WEBHOOK_FAILED", "occurredAt": (now - timedelta(minutes=40 + n)).isoformat(),
             "properties": failed} for n in range(3)]  # fmt: skip


def listings(now: datetime) -> list[dict[str, Any]]:
    """A ticketed event of its own, live now; the order above sold 3 tickets for it."""
    tag = uuid.uuid4().hex[:8]
    gig = {"listingId": "victim-gig-1", "title": "Victim porcelain night", "startsAt": (now - timedelta(hours=2)).isoformat(),
           "endsAt": (now + timedelta(hours=7)).isoformat()}  # fmt: skip
    return [
        {"eventId": f"victim-l-{tag}-1", "type": "LISTING_PUBLISHED", "occurredAt": (now - timedelta(days=3)).isoformat(), "properties": gig},
        {"eventId": f"victim-l-{tag}-2", "type": "LISTING_STARTED", "occurredAt": (now - timedelta(hours=2)).isoformat(),
         "properties": {"listingId": "victim-gig-1"}},
    ]  # fmt: skip


def victim_experiment() -> dict[str, Any]:
    """A running experiment with weights, names and a hypothesis nobody else has."""
    return {"key": "victim-checkout-test", "name": "Victim checkout test", "hypothesis": "Victim green buttons sell",
            "variants": [{"key": "victim-control", "name": "Victim control", "weight": 0.37},
                         {"key": "victim-green", "name": "Victim green", "weight": 0.63}],
            "metrics": [{"key": "victim-paid", "name": "Victim paid", "kind": "CONVERSION", "role": "PRIMARY",
                         "event": {"event": "order.paid"}}],
            "minimumSampleSize": 7919}  # fmt: skip


def marketplace(victim: Tenant, now: datetime) -> list[dict[str, Any]]:
    """A services marketplace of its own: executions of a service with a latency and an error
    code nobody else has, a search, views and a purchase of it, a ticket scanned at a gate and refused at another (already
    used), and a yearly subscription by
    a creator's fan (MRR 7,614)."""
    tag = uuid.uuid4().hex[:8]

    def event(kind: str, n: int, **fields: Any) -> dict[str, Any]:
        at = (now - timedelta(minutes=20 + n)).isoformat()
        return {"eventId": f"victim-m-{tag}-{n}", "type": kind, "occurredAt": at, **fields}

    service = {"serviceId": "victim-engraving", "category": "victim-crafts"}
    return [
        event("SERVICE_EXECUTED", 1, properties={**service, "latencyMs": 7_311.5, "success": True}),
        event("SERVICE_EXECUTED", 2, properties={**service, "latencyMs": 7_313.5, "success": False, "errorCode": "VICTIM_KILN_JAM"}),
        event("MARKETPLACE_SEARCHED", 3, userId="victim-shopper", properties={"query": "victim porcelain", "resultsCount": 0,
              "category": "victim-crafts"}),
        event("MARKETPLACE_VIEWED", 4, userId="victim-shopper", properties=service),
        event("TICKET_SCANNED", 7, properties={"ticketId": "victim-ticket-7", "deviceId": "victim-gate-3",
              "orderId": "victim-order-2", "code": "victim-code-7", "listingId": "victim-gig-1"}),
        event("TICKET_SCAN_FAILED", 0, properties={"errorType": "already_used", "ticketId": "victim-ticket-7",
              "code": "victim-code-7", "deviceId": "victim-gate-5", "orderId": "victim-order-2", "listingId": "victim-gig-1",
              "message": "victim door says no"}),
        event("MARKETPLACE_CONVERTED", 5, userId="victim-shopper", amountMinor=27_413, currency="EUR",
              properties={**service, "orderId": "victim-order-3", "creatorId": "victim-creator-9", "takeRateBps": 1_713}),
        event("SUBSCRIPTION_CHARGED", 6, profileId=victim.profile_id, userId="victim-patron", amountMinor=91_373, currency="EUR",
              properties={"interval": "year", "creatorId": "victim-creator-9"}),
    ]  # fmt: skip


async def seed_victim(client: httpx.AsyncClient, worker: Any, victim: Tenant) -> Side:
    """Everything above, processed by the worker; returns the victim's objects by kind."""
    from app.services import organizations

    now = datetime.now(UTC).replace(microsecond=0)
    partner = await organizations.create_profile(organization=victim.organization, name=f"Victim Partner {uuid.uuid4().hex[:6]}")
    tracked = (await gql_data(client, TRACK, {"e": views(victim, now)}, victim.ingestion_key))["trackEvents"]
    assert tracked["rejected"] == [], tracked
    paid = money(victim, str(partner.id), now)
    published = (await gql_data(client, PUBLISH, {"e": paid + marketplace(victim, now) + listings(now) + host_webhooks(now)},
                                victim.service_token))
    assert published["publishDomainEvents"]["rejected"] == [], published
    await worker.drain()
    admin = victim.org_admin_token
    failed = [e["eventId"] for e in paid if e["type"] == "PAYMENT_FAILED"]
    await gql_data(client, RESOLVE_PAYMENT, {"org": victim.org_id, "t": failed[0]}, admin)
    await gql_data(client, RETRY_PAYMENT, {"org": victim.org_id, "t": failed[1]}, admin)
    for mutation in SETTINGS:
        await gql_data(client, mutation, {}, admin)
    rule = (await gql_data(client, RULE, {"params": {"maxQuantity": 37, "windowMinutes": 53}}, admin))["createFraudRule"]
    cost = (await gql_data(client, COST, {"p": victim.profile_id, "d": now.date().isoformat()}, admin))["createCost"]
    await gql_data(client, COST_FIX, {"id": cost["id"]}, admin)
    [alert] = (await gql_data(client, ALERTS, {}, admin))["fraudAlerts"]["alerts"]
    await gql_data(client, NOTE, {"id": alert["id"]}, admin)
    await gql_data(client, IDENTIFY, {}, victim.ingestion_key)
    members = {"kind": "STATIC", "personIds": [f"u:{SUBJECT['userId']}", "u:victim-regular", "a:victim-visitor-7"]}
    cohort = (await gql_data(client, COHORT, {"d": members}, admin))["createCohort"]
    experiment = (await gql_data(client, EXPERIMENT, {"i": victim_experiment()}, admin))["createExperiment"]
    await gql_data(client, START, {"id": experiment["id"]}, admin)
    for n in range(5):
        await gql_data(client, ASSIGN, {"p": f"u:victim-tester-{n}"}, admin)
    await gql_data(client, LIFECYCLE, {"org": victim.org_id}, victim.admin_token)
    note = (await gql_data(client, NOTE_ON_ORGANIZATION, {"org": victim.org_id}, victim.admin_token))["addOrganizationNote"]
    return {"organization": victim.org_id, "profile": victim.profile_id, "cost": cost["id"], "fraud rule": rule["id"],
            "fraud alert": alert["id"], "person": "u:victim-regular", "cohort": cohort["id"], "experiment": experiment["id"],
            "organization note": note["id"], **await seed_accounts(client, victim),
            **await seed_notifications(client, victim)}  # fmt: skip


async def seed_notifications(client: httpx.AsyncClient, victim: Tenant) -> Side:
    """A webhook channel and test deliveries to it (pending: no worker sends in these tests)."""
    admin = victim.org_admin_token
    channel = (await gql_data(client, CHANNEL, {}, admin))["createNotificationChannel"]["channel"]
    for count in TEST_NOTIFICATIONS:
        sends = TEST_NOTIFICATION.format(" ".join(TEST_ALIAS.format(n) for n in range(count)))
        delivery = (await gql_data(client, sends, {"id": channel["id"]}, admin))["t0"]
    return {"notification channel": channel["id"], "delivery": delivery["id"]}


async def seed_accounts(client: httpx.AsyncClient, victim: Tenant) -> Side:
    """A colleague invited who joined, a service token, an ingestion key and a personal key,
    whose making is audited."""
    admin, org = victim.org_admin_token, {"org": victim.org_id}
    invited = (await gql_data(client, INVITE, org, admin))["inviteMember"]
    invitation = invited["invitation"]
    await gql_data(client, ACCEPT, {"t": invited["token"]}, None)
    service = (await gql_data(client, SERVICE_TOKEN, org, admin))["createServiceToken"]["key"]
    ingestion = (await gql_data(client, INGESTION_KEY, org, admin))["createIngestionKey"]["key"]
    personal = (await gql_data(client, PERSONAL_KEY, {}, admin))["createPersonalApiKey"]["key"]
    [entry] = (await gql_data(client, NEWEST_AUDIT_ENTRY, {}, admin))["auditLog"]
    return {"member": str(victim.users["viewer"]), "invitation": invitation["id"], "service token": service["id"],
            "ingestion key": ingestion["id"], "personal key": personal["id"], "audit entry": entry["id"]}  # fmt: skip
