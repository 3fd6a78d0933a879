"""GraphQL over the in-process ASGI client: what a test sends and how it reads refusals."""

from __future__ import annotations

from typing import Any

import httpx


async def gql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
) -> dict[str, Any]:
    """POST a GraphQL operation and return the decoded body (data and errors)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.json()


async def gql_data(client: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    """The `data` of an operation that must succeed: any error fails the test with the body."""
    body = await gql(client, query, variables, token=token)
    assert body.get("errors") is None, body
    return body["data"]


def error_codes(body: dict[str, Any]) -> list[str]:
    """The `extensions.code` of every error in a response body, in order."""
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
