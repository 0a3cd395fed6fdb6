"""The demo system: ``order`` calls ``inventory``, each in its own process, driven by a client."""
