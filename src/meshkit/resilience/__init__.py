"""Resilience: pure limiters, breakers and budgets (time is passed in), plus their middlewares."""
