"""`pulsegraph`: run the API and the worker, migrate, seed, and manage tenants and credentials.

Every command reads the same settings as the server (DATABASE_URL, PULSEGRAPH_DATA_DIR,
PULSEGRAPH_JWT_SECRET, ...), so a token printed here is accepted there. `--json` prints
one JSON object for scripts; errors go to stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app.errors import UserError
from app.settings import Settings, get_settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

EXIT_USAGE = 2


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=str))
        return
    width = max(len(k) for k in result) if result else 0
    for key, value in result.items():
        print(f"{key.ljust(width)}  {value}")


async def _with_database(settings: Settings, action: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    from app.database import close_database, init_database

    await init_database(settings)
    try:
        return await action()
    finally:
        await close_database()


def _run(settings: Settings, action: Callable[[], Awaitable[dict[str, Any]]], as_json: bool) -> int:
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

    processes = settings.web_concurrency if args.workers is None else args.workers
    problem = _serve_problem(processes, settings)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
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
    uvicorn.run(
        "app.cli:served_app", factory=True, workers=processes, host=args.host, port=args.port,
        log_level=args.log_level, lifespan="on", ws_per_message_deflate=False,
    )  # fmt: skip
    return 0


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
        profile = await orgs.create_profile(organization=org, name=args.name)
        return {"id": profile.id, "slug": profile.slug, "name": profile.name, "organization": org.slug}

    return _run(settings, action, args.json)


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from app.auth import Role, issue_token
    from app.services import organizations as orgs

    role = Role(args.role)

    async def action() -> dict[str, Any]:
        org = await orgs.find_organization(args.org) if args.org else None
        if role is not Role.ADMIN and org is None:
            raise UserError(f"--org is required for role {role.value}", field="org")
        if role is Role.PROVIDER and not args.profile:
            raise UserError("--profile is required for role provider", field="profile")
        profile = await orgs.find_profile(org, args.profile) if args.profile and org else None
        token = issue_token(
            role=role,
            organization_id=org.id if org and role is not Role.ADMIN else None,
            profile_id=profile.id if profile else None,
            ttl_seconds=args.ttl_days * 86400 if args.ttl_days else None,
            settings=settings,
        )
        return {"token": token, "role": role.value, "organization": org.slug if org else None, "profile": profile.slug if profile else None}

    return _run(settings, action, args.json)


def cmd_key_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import organizations as orgs

    async def action() -> dict[str, Any]:
        org = await orgs.find_organization(args.org)
        created = await orgs.create_ingestion_key(organization=org, name=args.name)
        return {"key": created.raw, "id": created.key.id, "organization": org.slug, "note": "shown once; only its hash is stored"}

    return _run(settings, action, args.json)


def cmd_rollups_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from app.services import organizations as orgs
    from app.services.profile_analytics import rebuild_rollups

    async def action() -> dict[str, Any]:
        org = await orgs.find_organization(args.org) if args.org else None
        return (await rebuild_rollups(org.id if org else None)).as_dict()

    return _run(settings, action, args.json)


# -- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pulsegraph", description="Self-hosted analytics: GraphQL API, worker and tools.")
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
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
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
    org_create.add_argument("--timezone", default="UTC", help="IANA time zone, e.g. Europe/Berlin")
    org_create.add_argument("--currency", default="USD", help="ISO 4217 code")
    org_create.add_argument("--json", action="store_true")
    org_create.set_defaults(handler=cmd_org_create)

    profile = sub.add_parser("profile", help="profiles").add_subparsers(dest="profile_command", required=True)
    profile_create = profile.add_parser("create", help="create a profile")
    profile_create.add_argument("--org", required=True, help="organization slug or id")
    profile_create.add_argument("name")
    profile_create.add_argument("--json", action="store_true")
    profile_create.set_defaults(handler=cmd_profile_create)

    token = sub.add_parser("token", help="issue a JWT")
    token.add_argument("--org", help="organization slug or id (not needed for admin)")
    token.add_argument("--role", required=True, choices=["admin", "org_admin", "provider", "service"])
    token.add_argument("--profile", help="profile slug or id (provider tokens)")
    token.add_argument("--ttl-days", type=int, default=None)
    token.add_argument("--json", action="store_true")
    token.set_defaults(handler=cmd_token)

    key = sub.add_parser("key", help="ingestion keys").add_subparsers(dest="key_command", required=True)
    key_create = key.add_parser("create", help="create a write-only ingestion key")
    key_create.add_argument("--org", required=True, help="organization slug or id")
    key_create.add_argument("--name", default="")
    key_create.add_argument("--json", action="store_true")
    key_create.set_defaults(handler=cmd_key_create)

    rollups = sub.add_parser("rollups", help="hourly and daily rollups").add_subparsers(dest="rollups_command", required=True)
    rebuild = rollups.add_parser("rebuild", help="recompute rollups from the processed profile events")
    rebuild.add_argument("--org", help="organization slug or id (default: every organization)")
    rebuild.add_argument("--json", action="store_true")
    rebuild.set_defaults(handler=cmd_rollups_rebuild)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.handler(args, get_settings())


if __name__ == "__main__":
    sys.exit(main())
