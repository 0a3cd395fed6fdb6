"""Resilience: pure limiters, breakers and budgets (time is passed in). Both breakers implement
:class:`~meshkit.resilience.breaker_protocol.Breaker`; their middlewares live in ``meshkit.policy``."""
