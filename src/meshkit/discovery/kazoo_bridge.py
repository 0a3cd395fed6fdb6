"""kazoo's asynchronous calls as asyncio futures: one bridge for every ZooKeeper user here (the
registry's locks and elections in meshkit.coord, the configuration store in meshkit.config).

kazoo answers in its own thread. The answer is handed to the loop with ``call_soon_threadsafe``,
unless the loop is closed: the check and the call can race a loop closing, and an exception
raised in kazoo's thread would stop it from handing out the answers after this one, so a
``RuntimeError`` there is swallowed (nobody is left to take the answer anyway). kazoo is not
imported here: its async results are used through ``rawlink``, ``successful``, ``value`` and
``exception``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any


def call_soon(loop: asyncio.AbstractEventLoop | None, callback: Callable[..., Any], *args: Any) -> None:
    """``callback(*args)`` on ``loop``, from kazoo's thread, unless the loop is gone."""
    if loop is not None and not loop.is_closed():
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, *args)


def kazoo_future(start: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
    """Send kazoo's ``start(*args)`` (an ``*_async`` method) now; its result, as a future of the
    running loop. Requests sent one after another are answered in that order (one session, one
    pipeline). Cancelling the future does not undo the request: callers that create clean up."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    # A future nobody awaits (an earlier one in its batch failed) must not log its exception.
    future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def settle(ok: bool, outcome: Any) -> None:
        if not future.done():
            if ok:
                future.set_result(outcome)
            else:
                future.set_exception(outcome)

    def done(result: Any) -> None:  # kazoo's thread
        ok = result.successful()
        call_soon(loop, settle, ok, result.value if ok else result.exception)

    start(*args, **kwargs).rawlink(done)
    return future
