"""The root Query, Mutation and Subscription: the one place where fields meet resolvers."""

from __future__ import annotations

import strawberry

from resolvers import gov_alerts as gov_alert_resolvers
from resolvers import fraud as fraud_resolvers
from resolvers import gov_detection as gov_detection_resolvers
from resolvers import ingestion as ingestion_resolvers
from resolvers import live as live_resolvers
from resolvers import organizations as organization_resolvers
from resolvers import privacy as privacy_resolvers
from resolvers import profile_analytics as analytics_resolvers
from resolvers import costs as cost_resolvers
from resolvers import financial_reports as financial_report_resolvers
from resolvers import platform as platform_resolvers
from resolvers import pnl as pnl_resolvers
from resolvers import revenue as revenue_resolvers
from schema.costs import Cost, CostAuditEntry, CostSummary
from schema.financial_reports import (
    MonthlySummary,
    OutstandingInvoices,
    PayoutReconciliation,
    ReportFile,
    RevenueByOrganization,
)
from schema.platform import OrganizationLifecycle, PlatformGrowth, PlatformKpis
from schema.pnl import ExportFile, Pnl
from schema.revenue import (
    DuoStats,
    GiftCategory,
    GiftDonor,
    GiftPurchased,
    GiftSummary,
    MoneySettings,
    RevenueCounters,
    RevenueSummary,
    RevenueTimeseries,
)
from schema.gov_alerts import GovAlert, GovAlertList, GovAlertSettings
from schema.fraud import FraudAlert, FraudAlertDetail, FraudAlertPage, FraudRule, OrganizationFraudProfile
from schema.gov_detection import GovIpCheck
from schema.ingestion import TrackResult
from schema.live import EngagementSnapshot
from schema.organizations import Organization, Profile, ViewerInfo
from schema.privacy import PrivacySettings, SubjectData, SubjectDeletion
from schema.profile_analytics import ProfileOverview, ProfileTimeseries, ProfileView


@strawberry.type(description="Read the analytics you may see.")
class Query:
    viewer: ViewerInfo = strawberry.field(resolver=organization_resolvers.viewer, description="Who the current credential is.")
    organizations: list[Organization] = strawberry.field(
        resolver=organization_resolvers.organizations, description="Organizations you may see: all for platform admins, yours otherwise."
    )
    profiles: list[Profile] = strawberry.field(
        resolver=organization_resolvers.profiles, description="Profiles you may see, by name."
    )
    profile_overview: ProfileOverview = strawberry.field(
        resolver=analytics_resolvers.profile_overview,
        description="Views, unique visitors, inquiries, conversion, time on profile and top referrers of a profile over a range.",
    )
    profile_timeseries: ProfileTimeseries = strawberry.field(
        resolver=analytics_resolvers.profile_timeseries,
        description="A zero-filled series of a profile's numbers, bucketed in the organization's time zone.",
    )
    recent_profile_views: list[ProfileView] = strawberry.field(
        resolver=analytics_resolvers.recent_profile_views, description="The latest views of a profile, newest first."
    )
    privacy_settings: PrivacySettings = strawberry.field(
        resolver=privacy_resolvers.privacy_settings,
        description="An organization's IP and event retention (organization admins).",
    )
    subject_data: SubjectData = strawberry.field(
        resolver=privacy_resolvers.subject_data,
        description="Export everything stored about one data subject, by userId and/or anonymousId (organization admins).",
    )
    check_ip: GovIpCheck = strawberry.field(
        resolver=gov_detection_resolvers.check_ip,
        description="Whether an IP address belongs to a government, military or law-enforcement network, with the evidence (any reader).",
    )
    gov_alerts: GovAlertList = strawberry.field(
        resolver=gov_alert_resolvers.gov_alerts,
        description="Views of a profile from government or law-enforcement networks in a range, newest first.",
    )
    gov_alert_settings: GovAlertSettings = strawberry.field(
        resolver=gov_alert_resolvers.gov_alert_settings,
        description="The gov-confidence threshold at which an organization's views raise alerts (organization admins).",
    )
    fraud_rules: list[FraudRule] = strawberry.field(
        resolver=fraud_resolvers.fraud_rules, description="An organization's fraud rules (organization or platform admins)."
    )
    fraud_alerts: FraudAlertPage = strawberry.field(
        resolver=fraud_resolvers.fraud_alerts,
        description="Fraud alerts, newest first, filtered (organization admins: theirs; platform admins: any organization).",
    )
    fraud_alert: FraudAlertDetail = strawberry.field(
        resolver=fraud_resolvers.fraud_alert, description="One fraud alert with its audit trail."
    )
    organization_fraud_profile: OrganizationFraudProfile = strawberry.field(
        resolver=fraud_resolvers.organization_fraud_profile,
        description="Orders, refund rate, failed payment rate, account age and open alerts of an organization over a range.",
    )
    revenue_summary: RevenueSummary = strawberry.field(
        resolver=revenue_resolvers.revenue_summary,
        description="Revenue of a profile or an organization by source, with the change against the previous equal period.",
    )
    revenue_timeseries: RevenueTimeseries = strawberry.field(
        resolver=revenue_resolvers.revenue_timeseries,
        description="Revenue per bucket with its source breakdown, in the organization's time zone.",
    )
    gift_summary: GiftSummary = strawberry.field(
        resolver=revenue_resolvers.gift_summary, description="Gift revenue, gifts bought and distinct donors over a range."
    )
    gift_categories: list[GiftCategory] = strawberry.field(
        resolver=revenue_resolvers.gift_categories, description="Gift revenue by category (most gifts first), with the previous equal period as its trend."
    )
    top_gift_donors: list[GiftDonor] = strawberry.field(
        resolver=revenue_resolvers.top_gift_donors,
        description="Donors ranked by gifts bought in the range (then by id), with their purchases.",
    )
    duo_stats: DuoStats = strawberry.field(
        resolver=revenue_resolvers.duo_stats,
        description="A profile's duo bookings, revenue and each side's share, with its partners ranked.",
    )
    money_settings: MoneySettings = strawberry.field(
        resolver=revenue_resolvers.money_settings,
        description="Reporting currency, exchange rates and default duo split of an organization (organization admins).",
    )
    costs: list[Cost] = strawberry.field(
        resolver=cost_resolvers.costs, description="Cost entries of a range, by date (a profile's: those carrying it)."
    )
    cost_summary: CostSummary = strawberry.field(
        resolver=cost_resolvers.cost_summary, description="Costs over a range by category, per currency."
    )
    cost_audit: list[CostAuditEntry] = strawberry.field(
        resolver=cost_resolvers.cost_audit,
        description="Who created, changed or deleted which cost entries, oldest first (organization admins).",
    )
    pnl: Pnl = strawberry.field(
        resolver=pnl_resolvers.pnl,
        description="Profit and loss per period and currency: revenue by stream, fees, costs by category, gross and net profit, margin.",
    )
    pnl_export: ExportFile = strawberry.field(
        resolver=pnl_resolvers.pnl_export,
        description="The P&L as a CSV or XLSX file with exactly the query's numbers.",
    )
    platform_kpis: PlatformKpis = strawberry.field(
        resolver=platform_resolvers.platform_kpis,
        description="Organizations by lifecycle, GMV, orders, tickets, average order value and fees this month, last month "
        "and all time, in UTC (platform admins).",
    )
    platform_growth: PlatformGrowth = strawberry.field(
        resolver=platform_resolvers.platform_growth,
        description="GMV, new organizations, active profiles and platform revenue per UTC bucket (platform admins).",
    )
    platform_organizations: list[OrganizationLifecycle] = strawberry.field(
        resolver=platform_resolvers.platform_organizations,
        description="Organizations with status, churn, last event received and status history, by name (platform admins).",
    )
    revenue_by_organization: RevenueByOrganization = strawberry.field(
        resolver=financial_report_resolvers.revenue_by_organization,
        description="GMV, service, platform and processor fees, net and last payment per organization and currency over "
        "a UTC range, sortable (platform admins).",
    )
    revenue_by_organization_export: ReportFile = strawberry.field(
        resolver=financial_report_resolvers.revenue_by_organization_export,
        description="Revenue by organization as a CSV or XLSX file with exactly the query's rows (platform admins).",
    )
    monthly_summary: MonthlySummary = strawberry.field(
        resolver=financial_report_resolvers.monthly_summary,
        description="Gross, fees, costs and net profit per UTC month and currency (platform admins).",
    )
    monthly_summary_export: ReportFile = strawberry.field(
        resolver=financial_report_resolvers.monthly_summary_export,
        description="The monthly summary as a CSV or XLSX file with exactly the query's numbers (platform admins).",
    )
    payout_reconciliation: PayoutReconciliation = strawberry.field(
        resolver=financial_report_resolvers.payout_reconciliation,
        description="Settled payouts matched to the ledger entries carrying their payoutId, with discrepancies "
        "(platform admins).",
    )
    outstanding_invoices: OutstandingInvoices = strawberry.field(
        resolver=financial_report_resolvers.outstanding_invoices,
        description="Issued, unpaid invoices grouped by organization and due date, with overdue flags (platform admins).",
    )


@strawberry.type(description="Send events and manage an organization's data.")
class Mutation:
    track_event: TrackResult = strawberry.field(
        resolver=ingestion_resolvers.track_event, description="Record one event (ingestion key or token)."
    )
    track_events: TrackResult = strawberry.field(
        resolver=ingestion_resolvers.track_events,
        description="Record up to 1,000 events at once; valid ones are stored even when others are rejected.",
    )
    publish_domain_events: TrackResult = strawberry.field(
        resolver=ingestion_resolvers.publish_domain_events,
        description="Publish domain events from a backend service (service or org admin token); idempotent by eventId.",
    )
    update_organization_settings: PrivacySettings = strawberry.field(
        resolver=privacy_resolvers.update_organization_settings,
        description="Change an organization's IP and event retention (organization admins).",
    )
    delete_subject_data: SubjectDeletion = strawberry.field(
        resolver=privacy_resolvers.delete_subject_data,
        description="Delete one data subject's events, sessions and profile events; rollups stay as aggregates (organization admins).",
    )
    update_gov_alert_settings: GovAlertSettings = strawberry.field(
        resolver=gov_alert_resolvers.update_gov_alert_settings,
        description="Change the gov-confidence threshold for alerts; views processed from then on use it (organization admins).",
    )
    create_fraud_rule: FraudRule = strawberry.field(
        resolver=fraud_resolvers.create_fraud_rule, description="Add a fraud rule with validated params (organization or platform admins)."
    )
    update_fraud_rule: FraudRule = strawberry.field(
        resolver=fraud_resolvers.update_fraud_rule,
        description="Change a fraud rule's name, params, risk, or enable/disable it; applies to the next processed event.",
    )
    delete_fraud_rule: strawberry.ID = strawberry.field(
        resolver=fraud_resolvers.delete_fraud_rule, description="Delete a fraud rule (its alerts stay); returns its id."
    )
    update_fraud_alert: FraudAlertDetail = strawberry.field(
        resolver=fraud_resolvers.update_fraud_alert,
        description="Move an alert: open -> investigating -> dismissed | resolved, with an optional note (audited).",
    )
    add_fraud_alert_note: FraudAlertDetail = strawberry.field(
        resolver=fraud_resolvers.add_fraud_alert_note, description="Add a note to an alert's audit trail."
    )
    update_money_settings: MoneySettings = strawberry.field(
        resolver=revenue_resolvers.update_money_settings,
        description="Set the reporting currency, its exchange rates and the default duo split (organization admins).",
    )
    create_cost: Cost = strawberry.field(
        resolver=cost_resolvers.create_cost, description="Record a cost entry (organization admins; audited)."
    )
    update_cost: Cost = strawberry.field(
        resolver=cost_resolvers.update_cost, description="Change a cost entry (organization admins; audited with before and after)."
    )
    delete_cost: strawberry.ID = strawberry.field(
        resolver=cost_resolvers.delete_cost, description="Delete a cost entry; the audit trail keeps it. Returns its id."
    )
    suspend_organization: OrganizationLifecycle = strawberry.field(
        resolver=platform_resolvers.suspend_organization,
        description="Suspend an organization, with a reason (platform admins; audited with who and when).",
    )
    reinstate_organization: OrganizationLifecycle = strawberry.field(
        resolver=platform_resolvers.reinstate_organization,
        description="Reinstate a suspended organization, with a reason (platform admins; audited with who and when).",
    )


@strawberry.type(description="Live updates over websocket (graphql-transport-ws or graphql-ws).")
class Subscription:
    profile_views: ProfileView = strawberry.subscription(
        resolver=live_resolvers.profile_views, description="Each view of a profile, as the worker processes it."
    )
    engagement_updates: EngagementSnapshot = strawberry.subscription(
        resolver=live_resolvers.engagement_updates, description="Running totals of a profile for today, after each processed batch."
    )
    gov_alerts: GovAlert = strawberry.subscription(
        resolver=gov_alert_resolvers.follow_gov_alerts,
        description="Each view of a profile from a government or law-enforcement network, as the worker flags it.",
    )
    fraud_alerts: FraudAlert = strawberry.subscription(
        resolver=fraud_resolvers.fraud_alerts_live,
        description="Each fraud alert the worker raises or extends (platform admins: every organization or one; organization admins: theirs).",
    )
    gift_purchased: GiftPurchased = strawberry.subscription(
        resolver=revenue_resolvers.gift_purchased, description="Each gift bought for a profile, as the worker records it."
    )
    revenue_counters: RevenueCounters = strawberry.subscription(
        resolver=revenue_resolvers.revenue_counters,
        description="Today's running revenue and transaction count: now, then after each batch that records money "
        "(organization admins: theirs; platform admins: one organization or the platform).",
    )
