"""Query runners: one class per report, the same steps for every one.

    scope -> validate -> plan -> (cache) -> fetch -> calculate

- `scope` checks the viewer's access and names the tenant (never cached: a cached answer is
  only ever handed to someone who may read it);
- `validate` refuses bad arguments, naming the field;
- `plan` turns the inputs into what to read (resolved ranges, buckets, segments);
- `fetch` reads the database; `calculate` turns what it read into the answer.

The answer is kept in the result cache (`app.result_cache`) under `cache_key()`: the
runner's kind, its tenant and its inputs. It is served again while the tenant's data has
not changed and it is younger than `max_age`. Saved insights, dashboard tiles, exports and
alerts store a runner's `kind` and inputs and run the same class.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

from app.result_cache import result_cache

R = TypeVar("R")
S = TypeVar("S")
P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Tenant:
    """Whose data an answer is made of: one organization (optionally one profile), or None
    for a platform-wide answer."""

    organization_id: Any = None
    profile_id: Any = None

    @property
    def versions_of(self) -> tuple[str, ...]:
        return () if self.organization_id is None else (str(self.organization_id),)


class QueryRunner(Generic[S, P, R]):
    """Subclasses set `kind`, implement `scope`, `fetch` and `calculate`, and may override
    `validate`, `plan` and `tenant`. Inputs are the keyword arguments the runner was made
    with, except the viewer."""

    kind: ClassVar[str]
    max_age: ClassVar[float] = 30.0  # seconds: the drift a moving range may show
    cacheable: ClassVar[bool] = True
    fetches: ClassVar[int] = 0  # database reads done by runners of this kind (a hit does none)

    def __init__(self, *, viewer: Any, **inputs: Any) -> None:
        self.viewer = viewer
        self.inputs = inputs

    # -- the steps a report defines --------------------------------------------------------

    async def scope(self) -> S:
        raise NotImplementedError

    def validate(self, scope: S) -> None:
        """Report-specific argument checks; raise BadInput naming the field."""

    def plan(self, scope: S) -> P:
        return None  # type: ignore[return-value]

    async def fetch(self, scope: S, plan: P) -> Any:
        raise NotImplementedError

    def calculate(self, scope: S, plan: P, fetched: Any) -> R:
        return fetched

    def tenant(self, scope: S) -> Tenant:
        """Whose data the answer reads, from the scope: `organization_id` / `profile_id` attributes."""
        return Tenant(getattr(scope, "organization_id", None), getattr(scope, "profile_id", None))

    # -- the one way every report runs -----------------------------------------------------

    async def run(self) -> R:
        scope = await self.scope()
        self.validate(scope)
        plan = self.plan(scope)
        if not self.cacheable:
            return await self._compute(scope, plan)
        cache = result_cache()
        tenant = self.tenant(scope)
        key = self.cache_key(tenant)
        found, answer, stamp = await cache.lookup(key, tenant.versions_of, self.max_age)
        if found:
            return answer
        answer = await self._compute(scope, plan)
        if stamp is not None:  # read before the data: a change meanwhile makes the answer stale
            await cache.store(key, answer, stamp, self.max_age)
        return answer

    async def _compute(self, scope: S, plan: P) -> R:
        type(self).fetches += 1
        return self.calculate(scope, plan, await self.fetch(scope, plan))

    def cache_key(self, tenant: Tenant) -> Hashable:
        return (self.kind, tenant, frozen(self.inputs))


def frozen(value: Any) -> Hashable:
    """Inputs as a hashable key: mappings and sequences recursively, enums by value."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        items = [frozen(v) for v in value]
        return tuple(sorted(items, key=repr)) if isinstance(value, set | frozenset) else tuple(items)
    if isinstance(value, Enum):
        return (type(value).__name__, value.value)
    if isinstance(value, datetime | date) or value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "__dataclass_fields__"):
        return (type(value).__name__, frozen({n: getattr(value, n) for n in value.__dataclass_fields__}))
    return str(value)
