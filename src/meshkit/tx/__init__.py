"""Distributed transactions over RPC (issue 17): Saga, TCC, 2PC/XA and 3PC driven by a
coordinator with a durable log. What exists so far: the pure decisions (:mod:`meshkit.tx.machine`)
and the participants' barrier (:mod:`meshkit.tx.barrier`)."""

from meshkit.tx.barrier import BranchCall, barrier, create_barrier_table, create_table_sql

__all__ = ["BranchCall", "barrier", "create_barrier_table", "create_table_sql"]
