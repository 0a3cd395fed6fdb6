"""mysql:// and postgresql:// between real processes: racers, a SIGKILLed and a SIGSTOPped holder
(tests/coord/process_contract.py). The children open ``Locks(url)``, so the schemes must be declared
in meshkit.coord.locks' table (``mysql``, ``postgresql``, ``postgres``)."""

from __future__ import annotations

from tests.coord.process_contract import ProcessContract


class TestMariaDBRowLockProcesses(ProcessContract):
    url = "mysql://root@127.0.0.1:3306/test"
    ttl = 2.0  # wait_timeout counts whole seconds


class TestMariaDBGetLockProcesses(ProcessContract):
    url = "mysql://root@127.0.0.1:3306/test?mode=get_lock"
    ttl = 2.0


class TestPostgresLockProcesses(ProcessContract):
    url = "postgresql://127.0.0.1:5432/test"
    ttl = 1.0
