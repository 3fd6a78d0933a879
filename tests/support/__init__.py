"""Harnesses the tests share: real processes and private servers, clients, tenants and
generated data. Nothing here asserts a behaviour of its own; test modules do that."""
