"""`python -m schema` prints the SDL that `schema.graphql` must match."""

from schema import build_schema

print(build_schema().as_str())
