"""Long-running consumers: the outbox worker (`workers.outbox`)."""
