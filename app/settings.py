"""Settings, read once from the environment.

The API, the worker and the CLI all build their settings here, so a token printed by
`pulsegraph token` is accepted by the server and both processes talk to the same database.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DntMode = Literal["anonymize", "drop"]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from exc


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _data_dir() -> Path:
    path = Path(os.environ.get("PULSEGRAPH_DATA_DIR", ".pulsegraph")).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


# `pulsegraph geoip update` installs its databases here, under fixed names, so the server
# finds them whatever source or month they came from.
GEOIP_DIR_NAME = "geoip"
GEOIP_CITY_FILE = "city.mmdb"
GEOIP_ASN_FILE = "asn.mmdb"
DBIP_DOWNLOAD_URL = "https://download.db-ip.com/free"
MAXMIND_DOWNLOAD_URL = "https://download.maxmind.com/geoip/databases"


def geoip_dir(data_dir: Path) -> Path:
    return data_dir / GEOIP_DIR_NAME


def _geoip_db(variable: str, data_dir: Path, filename: str) -> str | None:
    """An explicit path wins; otherwise the downloaded file, when there is one (a server
    started before the first download runs without geo until it is restarted)."""
    explicit = os.environ.get(variable)
    if explicit:
        return explicit
    downloaded = geoip_dir(data_dir) / filename
    return str(downloaded) if downloaded.is_file() else None


def _persistent_secret(data_dir: Path, name: str = "jwt-secret") -> str:
    """A secret kept in the data folder, so demo tokens (and email hashes) survive a restart."""
    path = data_dir / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    broadcast_url: str
    data_dir: Path
    jwt_secret: str
    jwt_issuer: str = "pulsegraph"
    jwt_ttl_seconds: int = 30 * 24 * 3600  # tokens minted on the command line
    # Accounts (app/services/accounts): a sign-in's access tokens are short-lived, its
    # refresh tokens and cookie last as long as the session.
    access_token_ttl_seconds: int = 900
    session_ttl_seconds: int = 30 * 24 * 3600
    invitation_ttl_seconds: int = 7 * 24 * 3600
    password_reset_ttl_seconds: int = 3600
    # Failed sign-ins tolerated per account and per address within the window, then refused.
    sign_in_failures_per_account: int = 5
    sign_in_failures_per_address: int = 30
    sign_in_failure_window_seconds: int = 900
    # The public address of the web console / API, for links in invitations and resets.
    public_url: str = "http://127.0.0.1:8000"
    db_pool_min: int = 2
    db_pool_max: int = 10
    geoip_city_db: str | None = None
    geoip_asn_db: str | None = None
    # Where `pulsegraph geoip update` downloads from (tests point them at a local server).
    geoip_dbip_url: str = DBIP_DOWNLOAD_URL
    geoip_maxmind_url: str = MAXMIND_DOWNLOAD_URL
    # How often a running process looks for replaced GeoIP files (two stat calls); 0 = never.
    geoip_reload_seconds: float = 5.0
    # Curated government ASNs/networks (JSON), merged over app/data/gov_networks.json
    # ("mode": "replace" in the file replaces it instead).
    gov_networks_file: str | None = None
    dnt_mode: DntMode = "anonymize"
    max_batch_size: int = 1000
    max_body_bytes: int = 2 * 1024 * 1024
    max_future_skew_seconds: int = 3600
    max_event_age_days: int = 730
    ingest_rate_per_second: int = 20_000
    ingest_rate_burst: int = 40_000
    query_depth_limit: int = 12
    query_alias_limit: int = 30
    query_token_limit: int = 4000
    # Estimated objects and values an operation may return (list sizes from `limit`
    # arguments and time-series bucket counts, multiplied through nesting).
    query_cost_limit: int = 50_000
    # PostgreSQL statement_timeout for the API's connections; 0 turns it off. Workers,
    # migrations and rollup rebuilds run without it (see app.database.init_database).
    statement_timeout_ms: int = 10_000
    # Privacy and retention jobs (workers/scheduler.py), run by every worker process;
    # an advisory lock makes one run at a time across processes.
    jobs_enabled: bool = True
    jobs_interval_seconds: int = 3600
    jobs_initial_delay_seconds: int = 60
    ip_hmac_key_period_days: int = 30
    # Keys the hash that stands in for buyer emails (app/services/buyer_emails.py); unset, one
    # is derived from jwt_secret. Changing it makes the emails hashed before unfindable.
    email_hash_secret: str | None = None
    # Up to this many outbox rows per worker transaction. A batch rewrites the hour, day and
    # month sketch rows (up to 16 KiB each) of every profile it touches, so under a backlog a
    # bigger batch writes far less per event (B2: +18% events/s, lag p95 5.2 s -> 3.0 s with
    # 2 workers going from 500 to 2,000); without a backlog batches are small anyway.
    worker_batch_size: int = 2000
    worker_poll_seconds: float = 1.0
    subscriber_queue_size: int = 256
    # Websockets: seconds a client has to send connection_init (then close 4408), and the
    # interval of server keep-alives (graphql-transport-ws `ping`, graphql-ws `ka`; 0 = off).
    ws_init_timeout_seconds: float = 10.0
    ws_keepalive_seconds: float = 15.0
    # Server-Sent Events (GET /stream): seconds between heartbeat comments, and the replay
    # window a reconnecting client resumes from (Last-Event-ID): the last this many events,
    # kept this many seconds after the last client of a channel left.
    sse_heartbeat_seconds: float = 15.0
    sse_replay_events: int = 1000
    sse_replay_seconds: float = 300.0
    demo_on_start: bool = True
    result_cache: bool = True  # keep report answers until their data changes (app/result_cache.py)
    # A funnel splits its persons into this many parts, each read on its own pooled connection
    # in one shared snapshot, so its per-person window pass runs on as many cores (1: one part).
    insight_parts: int = 2
    redis_url: str | None = None  # REDIS_URL: the result cache's shared tier (app/shared_answers.py)
    # API processes `pulsegraph serve` runs behind its one port (`--workers` overrides it).
    web_concurrency: int = 1
    # Notifications (app/services/notifications): the installation's SMTP server for email
    # channels, invitations and password resets (no host: no email is sent).
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    smtp_tls: bool = False  # TLS from the first byte (port 465); STARTTLS is then not used
    smtp_from: str = "pulsegraph@localhost"
    # A delivery is tried this many times, waiting base * 2^(n-1) seconds (capped, with up to
    # half of it as random jitter) between tries, then marked dead.
    notification_max_attempts: int = 8
    notification_backoff_base_seconds: float = 30.0
    notification_backoff_max_seconds: float = 3600.0
    notification_timeout_seconds: float = 10.0  # per attempt, connecting and reading included
    notification_batch_size: int = 50  # deliveries a worker claims at once
    # Webhook destinations resolving to loopback, private, link-local or other non-global
    # addresses are refused unless this is on (server-side request forgery).
    notification_allow_private: bool = False
    notification_allow_http: bool = False  # plain http webhook URLs (https only by default)
    # More payment.failed events than this in one organization's window (aligned to the epoch)
    # raise one payment.failed_spike notification for that window.
    payment_failed_spike_threshold: int = 20
    payment_failed_spike_window_minutes: int = 15
    # System health (app/services/system_health): each API process times its GraphQL operations
    # and HTTP requests in memory and writes them every `api_timings_flush_seconds`.
    api_timings: bool = True
    api_timings_flush_seconds: float = 5.0
    # GET /metrics (Prometheus) answers only `Authorization: Bearer <this>`; unset, nobody.
    metrics_token: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = _data_dir()
        dnt = os.environ.get("PULSEGRAPH_DNT_MODE", "anonymize")
        if dnt not in ("anonymize", "drop"):
            raise SystemExit(f"PULSEGRAPH_DNT_MODE must be 'anonymize' or 'drop', got {dnt!r}")
        return cls(
            database_url=os.environ.get("DATABASE_URL") or None,
            broadcast_url=os.environ.get("BROADCAST_URL") or "memory://",
            data_dir=data_dir,
            jwt_secret=os.environ.get("PULSEGRAPH_JWT_SECRET") or _persistent_secret(data_dir),
            db_pool_min=_env_int("PULSEGRAPH_DB_POOL_MIN", 2),
            db_pool_max=_env_int("PULSEGRAPH_DB_POOL_MAX", 10),
            geoip_city_db=_geoip_db("PULSEGRAPH_GEOIP_CITY_DB", data_dir, GEOIP_CITY_FILE),
            geoip_asn_db=_geoip_db("PULSEGRAPH_GEOIP_ASN_DB", data_dir, GEOIP_ASN_FILE),
            geoip_dbip_url=os.environ.get("PULSEGRAPH_GEOIP_DBIP_URL") or DBIP_DOWNLOAD_URL,
            geoip_maxmind_url=os.environ.get("PULSEGRAPH_GEOIP_MAXMIND_URL") or MAXMIND_DOWNLOAD_URL,
            geoip_reload_seconds=_env_float("PULSEGRAPH_GEOIP_RELOAD_SECONDS", 5.0),
            gov_networks_file=os.environ.get("PULSEGRAPH_GOV_NETWORKS_FILE") or None,
            dnt_mode=dnt,  # type: ignore[arg-type]
            max_batch_size=_env_int("PULSEGRAPH_MAX_BATCH_SIZE", 1000),
            max_body_bytes=_env_int("PULSEGRAPH_MAX_BODY_BYTES", 2 * 1024 * 1024),
            ingest_rate_per_second=_env_int("PULSEGRAPH_INGEST_RATE", 20_000),
            ingest_rate_burst=_env_int("PULSEGRAPH_INGEST_BURST", 40_000),
            worker_batch_size=_env_int("PULSEGRAPH_WORKER_BATCH_SIZE", 2000),
            subscriber_queue_size=_env_int("PULSEGRAPH_SUBSCRIBER_QUEUE", 256),
            ws_init_timeout_seconds=_env_float("PULSEGRAPH_WS_INIT_TIMEOUT_SECONDS", 10.0),
            ws_keepalive_seconds=_env_float("PULSEGRAPH_WS_KEEPALIVE_SECONDS", 15.0),
            sse_heartbeat_seconds=_env_float("PULSEGRAPH_SSE_HEARTBEAT_SECONDS", 15.0),
            sse_replay_events=_env_int("PULSEGRAPH_SSE_REPLAY_EVENTS", 1000),
            sse_replay_seconds=_env_float("PULSEGRAPH_SSE_REPLAY_SECONDS", 300.0),
            demo_on_start=_env_bool("PULSEGRAPH_DEMO", True),
            result_cache=_env_bool("PULSEGRAPH_RESULT_CACHE", True),
            insight_parts=max(1, _env_int("PULSEGRAPH_INSIGHT_PARTS", 2)),
            redis_url=os.environ.get("REDIS_URL") or None,
            web_concurrency=_env_int("PULSEGRAPH_WEB_CONCURRENCY", 1),
            api_timings=_env_bool("PULSEGRAPH_API_TIMINGS", True),
            api_timings_flush_seconds=_env_float("PULSEGRAPH_API_TIMINGS_FLUSH_SECONDS", 5.0),
            metrics_token=os.environ.get("PULSEGRAPH_METRICS_TOKEN") or None,
            query_cost_limit=_env_int("PULSEGRAPH_QUERY_COST_LIMIT", 50_000),
            statement_timeout_ms=_env_int("PULSEGRAPH_STATEMENT_TIMEOUT_MS", 10_000),
            jobs_enabled=_env_bool("PULSEGRAPH_JOBS", True),
            jobs_interval_seconds=_env_int("PULSEGRAPH_JOBS_INTERVAL_SECONDS", 3600),
            jobs_initial_delay_seconds=_env_int("PULSEGRAPH_JOBS_INITIAL_DELAY_SECONDS", 60),
            ip_hmac_key_period_days=_env_int("PULSEGRAPH_IP_HMAC_KEY_PERIOD_DAYS", 30),
            email_hash_secret=os.environ.get("PULSEGRAPH_EMAIL_HASH_SECRET")
            or _persistent_secret(data_dir, "email-hash-secret"),
            access_token_ttl_seconds=_env_int("PULSEGRAPH_ACCESS_TOKEN_TTL_SECONDS", 900),
            session_ttl_seconds=_env_int("PULSEGRAPH_SESSION_TTL_SECONDS", 30 * 24 * 3600),
            sign_in_failures_per_account=_env_int("PULSEGRAPH_SIGN_IN_FAILURES_PER_ACCOUNT", 5),
            sign_in_failures_per_address=_env_int("PULSEGRAPH_SIGN_IN_FAILURES_PER_ADDRESS", 30),
            public_url=os.environ.get("PULSEGRAPH_PUBLIC_URL") or "http://127.0.0.1:8000",
            smtp_host=os.environ.get("PULSEGRAPH_SMTP_HOST") or None,
            smtp_port=_env_int("PULSEGRAPH_SMTP_PORT", 587),
            smtp_username=os.environ.get("PULSEGRAPH_SMTP_USERNAME") or None,
            smtp_password=os.environ.get("PULSEGRAPH_SMTP_PASSWORD") or None,
            smtp_starttls=_env_bool("PULSEGRAPH_SMTP_STARTTLS", True),
            smtp_tls=_env_bool("PULSEGRAPH_SMTP_TLS", False),
            smtp_from=os.environ.get("PULSEGRAPH_SMTP_FROM") or "pulsegraph@localhost",
            notification_max_attempts=_env_int("PULSEGRAPH_NOTIFICATION_MAX_ATTEMPTS", 8),
            notification_backoff_base_seconds=_env_float("PULSEGRAPH_NOTIFICATION_BACKOFF_BASE_SECONDS", 30.0),
            notification_backoff_max_seconds=_env_float("PULSEGRAPH_NOTIFICATION_BACKOFF_MAX_SECONDS", 3600.0),
            notification_timeout_seconds=_env_float("PULSEGRAPH_NOTIFICATION_TIMEOUT_SECONDS", 10.0),
            notification_batch_size=_env_int("PULSEGRAPH_NOTIFICATION_BATCH_SIZE", 50),
            notification_allow_private=_env_bool("PULSEGRAPH_NOTIFICATION_ALLOW_PRIVATE", False),
            notification_allow_http=_env_bool("PULSEGRAPH_NOTIFICATION_ALLOW_HTTP", False),
            payment_failed_spike_threshold=_env_int("PULSEGRAPH_PAYMENT_FAILED_SPIKE_THRESHOLD", 20),
            payment_failed_spike_window_minutes=_env_int("PULSEGRAPH_PAYMENT_FAILED_SPIKE_WINDOW_MINUTES", 15),
        )


_settings: Settings | None = None


def get_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def override_settings(settings: Settings) -> None:
    """Used by tests and the CLI to run with explicit settings."""
    global _settings
    _settings = settings
