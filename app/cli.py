"""`pulsegraph`: run the API and the worker, migrate, seed, and manage tenants, accounts and credentials.

Every command reads the same settings as the server (DATABASE_URL, PULSEGRAPH_DATA_DIR,
PULSEGRAPH_JWT_SECRET, ...), so a token printed here is accepted there, and one revoked here
is refused there. `--json` prints one JSON object (a JSON array for `list` commands) for
scripts; errors go to stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib.metadata
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app import logs
from app.errors import UserError
from app.settings import Settings, get_settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from app.services.accounts.members import ListedUser

EXIT_USAGE = 2
EXIT_FAILED = 1  # the command was right but could not be carried out (e.g. a download failed)
REVOKED_BY = "cli"  # recorded with every revocation made here
ACTOR = "cli"  # recorded in the audit log with every account made here

Result = dict[str, Any] | list[dict[str, Any]]


def _print(result: Result, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=str))
        return
    if isinstance(result, list):
        _print_table(result)
        return
    width = max(len(k) for k in result) if result else 0
    for key, value in result.items():
        print(f"{key.ljust(width)}  {value}")


def _print_table(rows: list[dict[str, Any]]) -> None:
    """Rows of a `list` command as aligned columns under a header; `-` for nothing."""
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    cells = [[("-" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    for line in [columns, *cells]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _version() -> str:
    try:
        return importlib.metadata.version("pulsegraph")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


async def _with_database(settings: Settings, action: Callable[[], Awaitable[Result]]) -> Result:
    from app.database import close_database, init_database

    await init_database(settings)
    try:
        return await action()
    finally:
        await close_database()


def _run(settings: Settings, action: Callable[[], Awaitable[Result]], as_json: bool) -> int:
    try:
        result = asyncio.run(_with_database(settings, action))
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    _print(result, as_json)
    return 0


# -- commands -----------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    processes = settings.web_concurrency if args.workers is None else args.workers
    problem = _serve_problem(processes, settings)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        sock = listening_socket(args.host, args.port)
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    options = ServeOptions(
        with_worker=not args.no_worker,
        seed_demo=settings.demo_on_start and not args.no_demo,
        public_url=f"http://{args.host}:{args.port}",
    )
    if processes > 1:
        options = _prepare_once(settings, options)
    os.environ[SERVE_OPTIONS_ENV] = options.to_env()
    # No permessage-deflate: views and snapshots are a few hundred bytes, and each compressed
    # socket keeps zlib state of its own (~100 KB; 1,000 subscribers were +150 MB of RSS) and
    # compresses every frame it sends.
    # Server-Sent Events streams (GET /stream) never end by themselves: a graceful shutdown
    # cancels what is still open after SHUTDOWN_GRACE_SECONDS (an EventSource reconnects).
    config = uvicorn.Config(
        "app.cli:served_app", factory=True, workers=processes, host=args.host, port=args.port,
        log_level=logs.level_name(), lifespan="on", ws_per_message_deflate=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )  # fmt: skip
    server = uvicorn.Server(config)
    if processes > 1:
        Multiprocess(config, sockets=[sock]).run()
        return 0
    server.run(sockets=[sock])
    return 0 if server.started else EXIT_STARTUP_FAILURE


EXIT_STARTUP_FAILURE = 3
SHUTDOWN_GRACE_SECONDS = 10.0


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind the port before anything else happens: a busy port is one clear line, before
    a database is started, migrations run or a token is printed. uvicorn serves on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
        raise UserError(f"port {port} on {host} {reason}; choose another with --port", field="port") from None
    sock.listen(socket.SOMAXCONN)  # connections made while the app starts wait in the backlog
    sock.set_inheritable(True)
    return sock


SERVE_OPTIONS_ENV = "PULSEGRAPH_SERVE_OPTIONS"


@dataclass(frozen=True)
class ServeOptions:
    """What `serve` decided for its API processes. uvicorn starts each of them by importing
    `served_app` in a fresh interpreter (spawned, not forked), so the options travel in the
    environment, like the settings themselves."""

    with_worker: bool
    seed_demo: bool
    public_url: str

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeOptions:
        return cls(**json.loads(os.environ[SERVE_OPTIONS_ENV]))


def served_app() -> Starlette:
    """uvicorn's app factory, called once in every API process `serve` runs."""
    from app.asgi import create_app

    options = ServeOptions.from_env()
    logs.configure(logs.level_name())
    app = create_app(
        get_settings(), with_worker=options.with_worker, seed_demo=options.seed_demo, public_url=options.public_url
    )
    _tune_gc()
    return app


def _serve_problem(processes: int, settings: Settings) -> str | None:
    """Why `serve` cannot run `processes` API processes, if it cannot."""
    if processes < 1:
        return f"--workers (PULSEGRAPH_WEB_CONCURRENCY) must be at least 1, got {processes}"
    if processes > 1 and urlsplit(settings.broadcast_url).scheme == "memory":
        return (
            f"{processes} API processes need a shared BROADCAST_URL (redis://... or postgres://...): with "
            "BROADCAST_URL=memory:// a subscriber would only see the events its own process handled. "
            "Set BROADCAST_URL, or serve with --workers 1."
        )
    return None


def _prepare_once(settings: Settings, options: ServeOptions) -> ServeOptions:
    """Before several API processes start: the database exists and is migrated, and the demo
    is seeded, once, here. The processes then find it ready (their own migration step finds
    nothing to do), and an embedded PostgreSQL is started by this process only, which they
    reach through DATABASE_URL."""
    from app.database import resolve_database_url

    os.environ["DATABASE_URL"] = resolve_database_url(settings)
    ready = replace(settings, database_url=os.environ["DATABASE_URL"])

    async def seed() -> dict[str, Any]:
        if options.seed_demo:
            from app.services.demo import ensure_demo

            await ensure_demo(ready, url=options.public_url)
        return {}

    asyncio.run(_with_database(ready, seed))
    return replace(options, seed_demo=False)


GC_THRESHOLDS = (10_000, 10, 10)
GC_THRESHOLDS_ENV = "PULSEGRAPH_GC_THRESHOLDS"  # "a,b,c", or "default" for Python's own


def _tune_gc() -> None:
    """Per API process, once its app is built: keep the startup heap (modules, the schema)
    out of every collection and collect less often. With 1,000 live subscriptions the
    default thresholds (700, 10, 10) ran full collections of up to ~1 s that stalled every
    socket (B4: 17 gen-2 collections, 5.6 s of a 40 s run; with these 3 and 0.5 s). The
    price is memory: a trackEvents load keeps more cyclic garbage (B1 API RSS 160 MB by
    default, 217-264 MB with these, 268 MB with (50,000, 20, 20), 374 MB with
    (2,000, 10, 100)); PULSEGRAPH_GC_THRESHOLDS sets them."""
    import gc

    raw = os.environ.get(GC_THRESHOLDS_ENV, "").strip()
    if raw == "default":
        return
    thresholds = tuple(int(part) for part in raw.split(",")) if raw else GC_THRESHOLDS
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from workers.outbox import run_worker

    asyncio.run(run_worker(settings))
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from app.database import migration_files

    async def action() -> dict[str, Any]:
        # init_database applies pending migrations; report what the database now has.
        from app.database import connection

        async with connection() as conn:
            versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
        return {"applied": versions, "available": [v for v, _ in migration_files()]}

    return _run(settings, action, args.json)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from app.services.demo import ensure_demo

    async def action() -> dict[str, Any]:
        return (await ensure_demo(settings, drain=True, announce=False)).as_dict()

    return _run(settings, action, args.json)


def cmd_org_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import organizations as orgs

    async def action() -> dict[str, Any]:
        org = await orgs.create_organization(name=args.name, timezone=args.timezone, currency=args.currency)
        return {"id": org.id, "slug": org.slug, "name": org.name, "timezone": org.timezone, "currency": org.currency}

    return _run(settings, action, args.json)


def cmd_profile_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import organizations as orgs

    async def action() -> dict[str, Any]:
        org = await orgs.find_organization(args.org)
        profile = await orgs.create_profile(organization=org, name=args.name, kind=args.kind)
        return {"id": profile.id, "slug": profile.slug, "name": profile.name, "kind": profile.kind, "organization": org.slug}

    return _run(settings, action, args.json)


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from app.auth import Role, mint_token
    from app.services import organizations as orgs

    async def action() -> dict[str, Any]:
        if args.role is None:
            raise UserError("--role is required (admin, org_admin, provider or service)", field="role")
        role = Role(args.role)
        org = await orgs.find_organization(args.org) if args.org else None
        if role is not Role.ADMIN and org is None:
            raise UserError(f"--org is required for role {role.value}", field="org")
        if role is Role.PROVIDER and not args.profile:
            raise UserError("--profile is required for role provider", field="profile")
        profile = await orgs.find_profile(org, args.profile) if args.profile and org else None
        issued = mint_token(
            role=role,
            organization_id=org.id if org and role is not Role.ADMIN else None,
            profile_id=profile.id if profile else None,
            ttl_seconds=args.ttl_days * 86400 if args.ttl_days else None,
            settings=settings,
        )
        return {
            "token": issued.token, "jti": issued.token_id, "expires_at": _iso(datetime.fromtimestamp(issued.expires_at, UTC)),
            "role": role.value, "organization": org.slug if org else None, "profile": profile.slug if profile else None,
        }  # fmt: skip

    return _run(settings, action, args.json)


def cmd_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from app.revocation import revoke_token

    async def action() -> dict[str, Any]:
        revoked = await revoke_token(token=args.token, token_id=args.jti, settings=settings, revoked_by=REVOKED_BY)
        return {
            "jti": revoked.token_id, "revoked": True, "already_revoked": revoked.already_revoked,
            "expires_at": _iso(revoked.expires_at), "expired": revoked.expired,
            "note": "refused by every API process within a second, open websockets included",
        }  # fmt: skip

    return _run(settings, action, args.json)


def cmd_org_list(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import organizations as orgs

    async def action() -> list[dict[str, Any]]:
        return [
            {"id": str(org.id), "slug": org.slug, "name": org.name, "timezone": org.timezone, "currency": org.currency,
             "created_at": _iso(org.created_at)}
            for org in await orgs.list_organizations()
        ]  # fmt: skip

    return _run(settings, action, args.json)


def cmd_profile_list(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import organizations as orgs

    async def action() -> list[dict[str, Any]]:
        org = await orgs.find_organization(args.org) if args.org else None
        return [
            {"id": str(p.id), "slug": p.slug, "name": p.name, "organization": p.organization.slug,
             "created_at": _iso(p.created_at)}
            for p in await orgs.list_profiles(org)
        ]  # fmt: skip

    return _run(settings, action, args.json)


def cmd_key_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import organizations as orgs

    async def action() -> dict[str, Any]:
        org = await orgs.find_organization(args.org)
        created = await orgs.create_ingestion_key(organization=org, name=args.name)
        return {"key": created.raw, "id": created.key.id, "organization": org.slug, "note": "shown once; only its hash is stored"}

    return _run(settings, action, args.json)


def _key_row(key: Any, organization: str) -> dict[str, Any]:
    from app.services.organizations import key_hint

    return {
        "id": str(key.id), "name": key.name, "organization": organization, "starts_with": key_hint(key),
        "created_at": _iso(key.created_at), "last_used_at": _iso(key.last_used_at), "revoked_at": _iso(key.revoked_at),
    }  # fmt: skip


def cmd_key_list(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import organizations as orgs

    async def action() -> list[dict[str, Any]]:
        org = await orgs.find_organization(args.org)
        return [_key_row(key, org.slug) for key in await orgs.list_ingestion_keys(org)]

    return _run(settings, action, args.json)


def cmd_key_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import organizations as orgs

    async def action() -> dict[str, Any]:
        revoked = await orgs.revoke_ingestion_key(args.key, revoked_by=REVOKED_BY)
        org = await orgs.find_organization(str(revoked.key.organization_id))
        return {**_key_row(revoked.key, org.slug), "already_revoked": revoked.already_revoked}

    return _run(settings, action, args.json)


def cmd_user_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.auth import Role
    from app.services import organizations as orgs
    from app.services.accounts.audit import Actor
    from app.services.accounts.members import create_user
    from app.services.accounts.passwords import random_password
    from app.services.accounts.sessions import normalized_email

    async def action() -> dict[str, Any]:
        _check_user_options(args)
        org = await orgs.find_organization(args.org) if args.org else None
        profile = await orgs.find_profile(org, args.profile) if org and args.profile else None
        given = _password_from_stdin() if args.password_stdin else None
        password = given or random_password(email=args.email, name=args.name)
        user_id = await create_user(
            email=args.email, name=args.name, password=password, platform_admin=args.admin,
            organization_id=org.id if org else None, role=Role(args.role) if org else None,
            profile_id=profile.id if profile else None, actor=Actor(subject=ACTOR),
        )  # fmt: skip
        created = {
            "id": str(user_id), "email": normalized_email(args.email), "name": args.name.strip() or None,
            "platform_admin": args.admin, "organization": org.slug if org else None, "role": args.role if org else None,
            "profile": profile.slug if profile else None,
        }  # fmt: skip
        if given is not None:
            return created
        return {**created, "password": password, "note": "shown once; only its hash is stored"}

    return _run(settings, action, args.json)


def _check_user_options(args: argparse.Namespace) -> None:
    """What `user create` needs besides the email, each refusal naming its option, before the database is asked."""
    if not args.admin and not args.org:
        raise UserError("give --admin (a platform admin), --org with --role (a member), or both", field="org")
    if args.org and not args.role:
        raise UserError("--role is required with --org (org_admin, provider or viewer)", field="role")
    if not args.org and (args.role or args.profile):
        raise UserError("--role and --profile need --org", field="org")
    if args.role == "provider" and not args.profile:
        raise UserError("--profile is required for role provider", field="profile")
    if args.profile and args.role != "provider":
        raise UserError("--profile is only for role provider", field="profile")


def _password_from_stdin() -> str:
    """The first line of standard input, without its line break (what `echo` or a password
    manager's pipe adds is not part of the password)."""
    password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise UserError("--password-stdin: no password on standard input", field="password")
    return password


def cmd_user_list(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import organizations as orgs
    from app.services.accounts.members import list_users

    async def action() -> list[dict[str, Any]]:
        org = await orgs.find_organization(args.org) if args.org else None
        return [_user_row(user, args.json) for user in await list_users(org.id if org else None)]

    return _run(settings, action, args.json)


def _user_row(user: ListedUser, as_json: bool) -> dict[str, Any]:
    """Memberships as objects for scripts, as one cell (`demo:org_admin,acme:provider/jane`) in the table."""
    held = [{"organization": m.organization, "role": m.role.value, "profile": m.profile} for m in user.memberships]
    cell = ",".join(f"{m['organization']}:{m['role']}" + (f"/{m['profile']}" if m["profile"] else "") for m in held)
    return {
        "id": str(user.user_id), "email": user.email, "name": user.name or None,
        "platform_admin": user.is_platform_admin, "memberships": held if as_json else cell or None,
        "last_sign_in_at": _iso(user.last_sign_in_at),
    }  # fmt: skip


def cmd_rollups_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import organizations as orgs
    from app.services.profile_analytics.rebuild import rebuild_rollups

    async def action() -> dict[str, Any]:
        org = await orgs.find_organization(args.org) if args.org else None
        return (await rebuild_rollups(org.id if org else None)).as_dict()

    return _run(settings, action, args.json)


def cmd_geoip_update(args: argparse.Namespace, settings: Settings) -> int:
    from app.services.geoip_update import GeoipUpdateError, maxmind_account, update_geoip

    try:
        account = maxmind_account(
            args.license_key or os.environ.get("MAXMIND_LICENSE_KEY"), args.account_id or os.environ.get("MAXMIND_ACCOUNT_ID")
        )
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    logging.getLogger("httpx").setLevel(logging.WARNING)  # our own log names each download
    try:
        report = update_geoip(settings, maxmind=account)
    except GeoipUpdateError as exc:
        print(f"error: geoip update failed, the installed databases were left in place: {exc}", file=sys.stderr)
        return EXIT_FAILED
    _print(report.as_dict(), args.json)
    for variable in ("PULSEGRAPH_GEOIP_CITY_DB", "PULSEGRAPH_GEOIP_ASN_DB"):
        if os.environ.get(variable):
            print(f"note: {variable} is set, so the server reads {os.environ[variable]} instead", file=sys.stderr)
    return 0


# -- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pulsegraph", description="Self-hosted analytics: GraphQL API, worker and tools.")
    parser.add_argument("--version", action="version", version=f"pulsegraph {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the GraphQL API (with the worker in-process unless --no-worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="API processes behind the one port (default PULSEGRAPH_WEB_CONCURRENCY, else 1); "
        "more than 1 needs a shared BROADCAST_URL",
    )  # fmt: skip
    serve.add_argument("--no-worker", action="store_true", help="do not run the outbox worker in each API process")
    serve.add_argument("--no-demo", action="store_true", help="do not seed the demo dataset on first start")
    serve.add_argument(
        "--log-level", default=None, choices=logs.LEVELS,
        help=f"default {logs.LEVEL_ENV}, else {logs.DEFAULT_LEVEL} (--verbose: info)",
    )  # fmt: skip
    serve.set_defaults(handler=cmd_serve)

    sub.add_parser("worker", help="run the outbox worker (start several for more throughput)").set_defaults(handler=cmd_worker)

    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    migrate.add_argument("--json", action="store_true")
    migrate.set_defaults(handler=cmd_migrate)

    demo = sub.add_parser("demo", help="seed the demo organizations, their profiles and 13 months of history")
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(handler=cmd_demo)

    org = sub.add_parser("org", help="organizations").add_subparsers(dest="org_command", required=True)
    org_create = org.add_parser("create", help="create an organization")
    org_create.add_argument("name")
    org_create.add_argument("--timezone", default="UTC", help="IANA time zone, e.g. Europe/Berlin (default UTC)")
    org_create.add_argument("--currency", default="USD", help="ISO 4217 code (default USD)")
    org_create.add_argument("--json", action="store_true")
    org_create.set_defaults(handler=cmd_org_create)
    org_list = org.add_parser("list", help="list every organization")
    org_list.add_argument("--json", action="store_true")
    org_list.set_defaults(handler=cmd_org_list)

    profile = sub.add_parser("profile", help="profiles").add_subparsers(dest="profile_command", required=True)
    profile_create = profile.add_parser("create", help="create a profile")
    profile_create.add_argument("--org", required=True, help="organization slug or id")
    profile_create.add_argument("name")
    profile_create.add_argument("--kind", default="provider", help="provider (default), creator or brand")
    profile_create.add_argument("--json", action="store_true")
    profile_create.set_defaults(handler=cmd_profile_create)
    profile_list = profile.add_parser("list", help="list the profiles of one organization, or of all")
    profile_list.add_argument("--org", help="organization slug or id (default: every organization)")
    profile_list.add_argument("--json", action="store_true")
    profile_list.set_defaults(handler=cmd_profile_list)

    token = sub.add_parser("token", help="issue a JWT (`token revoke` revokes one)")
    token.add_argument("--org", help="organization slug or id (not needed for admin)")
    token.add_argument("--role", choices=["admin", "org_admin", "provider", "service"], help="required to issue")
    token.add_argument("--profile", help="profile slug or id (provider tokens)")
    token.add_argument("--ttl-days", type=int, default=None)
    token.add_argument("--json", action="store_true")
    token.set_defaults(handler=cmd_token)
    token_revoke = token.add_subparsers(dest="token_command").add_parser(
        "revoke", help="refuse a token from now on, on every API process within a second"
    )
    token_revoke.add_argument("token", nargs="?", help="the token itself (its id and expiry are read from it)")
    token_revoke.add_argument("--jti", help="the token's id instead (shown when it was issued)")
    token_revoke.add_argument("--json", action="store_true")
    token_revoke.set_defaults(handler=cmd_token_revoke)

    key = sub.add_parser("key", help="ingestion keys").add_subparsers(dest="key_command", required=True)
    key_create = key.add_parser("create", help="create a write-only ingestion key")
    key_create.add_argument("--org", required=True, help="organization slug or id")
    key_create.add_argument("--name", default="")
    key_create.add_argument("--json", action="store_true")
    key_create.set_defaults(handler=cmd_key_create)
    key_list = key.add_parser("list", help="list an organization's ingestion keys (never the keys themselves)")
    key_list.add_argument("--org", required=True, help="organization slug or id")
    key_list.add_argument("--json", action="store_true")
    key_list.set_defaults(handler=cmd_key_list)
    key_revoke = key.add_parser("revoke", help="refuse a key from now on, on every API process within a second")
    key_revoke.add_argument("key", metavar="KEY_ID", help="the key's id (see `key list`), or the pgk_... key itself")
    key_revoke.add_argument("--json", action="store_true")
    key_revoke.set_defaults(handler=cmd_key_revoke)

    user = sub.add_parser("user", help="people who sign in").add_subparsers(dest="user_command", required=True)
    user_create = user.add_parser(
        "create", help="create an account that signs in with a password: a platform admin, a member of an "
        "organization, or both; the password is generated and printed once unless --password-stdin",
    )  # fmt: skip
    user_create.add_argument("--email", required=True)
    user_create.add_argument("--name", default="")
    user_create.add_argument("--admin", action="store_true", help="a platform admin (every organization)")
    user_create.add_argument("--org", help="organization slug or id: a member of it, with --role")
    user_create.add_argument("--role", choices=["org_admin", "provider", "viewer"], help="the member's role")
    user_create.add_argument("--profile", help="profile slug or id (role provider)")
    user_create.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    user_create.add_argument("--json", action="store_true")
    user_create.set_defaults(handler=cmd_user_create)
    user_list = user.add_parser("list", help="list the accounts (never a password), with their memberships")
    user_list.add_argument("--org", help="organization slug or id: its members only (default: every account)")
    user_list.add_argument("--json", action="store_true")
    user_list.set_defaults(handler=cmd_user_list)

    rollups = sub.add_parser("rollups", help="hourly and daily rollups").add_subparsers(dest="rollups_command", required=True)
    rebuild = rollups.add_parser("rebuild", help="recompute rollups from the processed profile events")
    rebuild.add_argument("--org", help="organization slug or id (default: every organization)")
    rebuild.add_argument("--json", action="store_true")
    rebuild.set_defaults(handler=cmd_rollups_rebuild)

    geoip = sub.add_parser("geoip", help="GeoIP databases (visitors' country, city and network)")
    geoip_sub = geoip.add_subparsers(dest="geoip_command", required=True)
    geoip_update = geoip_sub.add_parser(
        "update", help="download, verify and install DB-IP Lite City + ASN (or MaxMind GeoLite2 with a license key) "
        "into the data dir; running servers pick them up by themselves",
    )  # fmt: skip
    geoip_update.add_argument("--license-key", help="MaxMind license key: GeoLite2 instead of DB-IP (prefer MAXMIND_LICENSE_KEY)")
    geoip_update.add_argument("--account-id", help="MaxMind account ID, needed with the key (default MAXMIND_ACCOUNT_ID)")
    geoip_update.add_argument("--json", action="store_true")
    geoip_update.set_defaults(handler=cmd_geoip_update)
    for command in commands(parser):
        command.add_argument("-v", "--verbose", action="store_true", help=f"say more (as {logs.LEVEL_ENV}=info)")
    return parser


def commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command below `parser` (`org`, `org create`, `token`, `token revoke`, ...), for
    the options they all take."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001 - argparse has no public walk
    children = [child for group in groups for child in group.choices.values()]
    return [found for child in children for found in (child, *commands(child))]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(getattr(args, "log_level", None) or logs.level_name(verbose=getattr(args, "verbose", False)))
    stop_on_signals()
    return args.handler(args, get_settings())


def stop_on_signals() -> None:
    """SIGTERM (systemd, Docker, kill) and SIGINT end every command as a normal exit, so
    its clean-up runs: above all the embedded PostgreSQL is stopped, not left orphaned.
    uvicorn handles both while it serves and raises them again once it has shut down
    gracefully; they then arrive here. Exit status 128 + the signal, as a shell reports it."""

    def exit_on(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_on)
    signal.signal(signal.SIGINT, exit_on)


if __name__ == "__main__":
    sys.exit(main())
