"""The asyncio transport: connections, pool, listener, keepalive, backoff."""
