"""Clients announce themselves here as they open and close; observers (Prometheus metrics, in
``observe``) subscribe to learn which pools to report, instead of reading a module global.

rpc cannot import observe (observe sits above it), so this is the seam: rpc emits typed events,
observe subscribes. The roster holds clients weakly; a closed client is announced once and
then forgotten, so it is neither kept alive nor reported any more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshkit.policy.events import Roster

if TYPE_CHECKING:
    from meshkit.rpc.client import Client


@dataclass(frozen=True, slots=True)
class ClientOpened:
    """A client was made (it connects lazily; its pools are what a scrape reads)."""

    client: Client


@dataclass(frozen=True, slots=True)
class ClientClosed:
    """A client's ``close()`` began: its pools are going away and should not be reported."""

    client: Client


ClientEvent = ClientOpened | ClientClosed

#: The clients of this process that are open.
CLIENTS: Roster[Client, ClientEvent] = Roster(ClientOpened, ClientClosed)
