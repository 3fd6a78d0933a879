"""Cohorts: create, change, delete, read, and their members' CSV download (thin: convert, call, map)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from strawberry.types import Info

from app.auth import Access
from app.database import unavailable_on_database_errors
from app.errors import UserError
from app.services.accounts import audit
from app.services.insights import cohorts as service
from resolvers.common import guarded, to_range_spec, viewer_of
from resolvers.ingestion import error_response, rest_viewer, unexpected_error_response
from resolvers.insight_inputs import to_filters, to_matcher
from resolvers.persons import OrganizationArg
from schema.cohorts import Cohort, CohortDefinitionInput, CohortKind

CohortIdArg = Annotated[strawberry.ID, strawberry.argument(description="The cohort.")]
NameArg = Annotated[str, strawberry.argument(description="Its name (1..200 characters).")]


def members_path(cohort: service.Cohort) -> str:
    return f"/cohorts/{cohort.id}/members.csv?organizationId={cohort.organization_id}"


def to_cohort(c: service.Cohort) -> Cohort:
    return Cohort(
        id=strawberry.ID(str(c.id)), name=c.name, kind=CohortKind(c.kind.value), definition=c.definition,
        member_count=c.member_count, computed_at=c.computed_at, created_by=c.created_by, created_at=c.created_at,
        updated_at=c.updated_at, members_csv_url=members_path(c),
    )  # fmt: skip


def to_definition(value: CohortDefinitionInput, field: str = "definition") -> service.Definition:
    """The input read into the service's definition, each error naming its field."""
    kind = service.CohortKind(value.kind.value)
    given = {"event": value.event, "performed": value.performed, "minCount": value.min_count, "days": value.days,
             "filters": value.filters, "range": value.range_, "personIds": value.person_ids}  # fmt: skip
    service.check_fields(kind, {name for name, v in given.items() if v is not None}, field)
    if kind is service.CohortKind.BEHAVIORAL:
        matcher = to_matcher(value.event, f"{field}.event") if value.event is not None else None
        return service.behavioral(matcher, performed=value.performed, min_count=value.min_count, days=value.days, field=field)
    if kind is service.CohortKind.PERSON_PROPERTY:
        filters = to_filters(value.filters, f"{field}.filters") if value.filters is not None else None
        return service.person_properties(filters, field)
    if kind is service.CohortKind.FIRST_SEEN:
        return service.first_seen(to_range_spec(value.range_) if value.range_ is not None else None, field)
    return service.static(value.person_ids, field)


async def cohorts(info: Info, organization_id: OrganizationArg = None) -> list[Cohort]:
    org = await service.cohort_scope(viewer_of(info), organization_id)
    return [to_cohort(c) for c in await service.list_cohorts(org=org)]


async def cohort(info: Info, id: CohortIdArg, organization_id: OrganizationArg = None) -> Cohort:
    org = await service.cohort_scope(viewer_of(info), organization_id)
    return to_cohort(await service.get_cohort(org=org, cohort_id=id))


async def create_cohort(
    info: Info,
    name: NameArg,
    definition: Annotated[CohortDefinitionInput, strawberry.argument(description="Its kind and that kind's fields.")],
    organization_id: OrganizationArg = None,
) -> Cohort:
    viewer = viewer_of(info)
    org = await service.cohort_scope(viewer, organization_id)  # who may, before what they sent
    created = await service.create_cohort(org=org, actor=viewer.subject, name=name, definition=to_definition(definition))
    return to_cohort(created)


async def update_cohort(
    info: Info,
    id: CohortIdArg,
    organization_id: OrganizationArg = None,
    name: Annotated[str | None, strawberry.argument(description="A new name; omit to keep.")] = None,
    definition: Annotated[
        CohortDefinitionInput | None, strawberry.argument(description="A new definition (computed at once); omit to keep.")
    ] = None,
) -> Cohort:
    org = await service.cohort_scope(viewer_of(info), organization_id)
    new = to_definition(definition) if definition is not None else None
    return to_cohort(await service.update_cohort(org=org, cohort_id=id, name=name, definition=new))


async def delete_cohort(info: Info, id: CohortIdArg, organization_id: OrganizationArg = None) -> strawberry.ID:
    org = await service.cohort_scope(viewer_of(info), organization_id)
    return strawberry.ID(str(await service.delete_cohort(org=org, cohort_id=id)))


# -- the CSV download ---------------------------------------------------------------------


async def members_csv_endpoint(request: Request) -> Response:
    """GET /cohorts/{id}/members.csv[?organizationId=]: the members as CSV, for the same
    credentials as the `cohort` query (a token in the Authorization header, never in the URL)."""
    try:
        viewer = await rest_viewer(request)
        async with unavailable_on_database_errors():
            org = await service.cohort_scope(viewer, request.query_params.get("organizationId"))
            found, chunks = await service.members_csv(org=org, cohort_id=request.path_params["cohort_id"])
    except UserError as exc:
        return error_response(exc)
    except Exception:  # noqa: BLE001 - a bug: logged with a request id
        return unexpected_error_response(request)
    filename = f"cohort-{found.id}.csv"
    headers = {"content-disposition": f'attachment; filename="{filename}"', "cache-control": "no-store"}
    return StreamingResponse(chunks, media_type=service.CSV_TYPE, headers=headers)


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The cohorts domain's reads, merged into the root by schema.root."""

    cohorts: list[Cohort] = guarded(Access.ORG_READERS, cohorts, "An organization's cohorts, by name.")
    cohort: Cohort = guarded(
        Access.ORG_READERS, cohort,
        "One cohort; list its members with persons(cohortId:), download them from membersCsvUrl.",
    )


@strawberry.type
class Mutation:
    """The cohorts domain's writes, merged into the root by schema.root."""

    create_cohort: Cohort = guarded(
        Access.ORG_ADMINS, create_cohort, "Create a cohort; its members are computed at once, then every scheduler round.", audited=audit.COHORT_CREATED
    )
    update_cohort: Cohort = guarded(
        Access.ORG_ADMINS, update_cohort, "Rename or redefine a cohort; a new definition is computed at once.", audited=audit.COHORT_UPDATED
    )
    delete_cohort: strawberry.ID = guarded(Access.ORG_ADMINS, delete_cohort, "Delete a cohort and its members; returns its id.", audited=audit.COHORT_DELETED)
