"""Server streams: a method that yields many messages, each sent only when the caller has credit.

A stream always runs in its own Task (it is long-lived by nature, so the eager step that saves a
Task per unary call would save nothing here) and always through a chain: the innermost step pumps
the method's async generator into the call's :class:`StreamSink` (see routes.build_handler).
"""

from __future__ import annotations

import asyncio
from contextvars import copy_context
from typing import Any

from meshkit.rpc.answers import fail, log
from meshkit.rpc.context import Context, _current
from meshkit.rpc.middleware import Call
from meshkit.rpc.routes import Route
from meshkit.rpc.service import MethodSpec
from meshkit.serde import encode_result
from meshkit.transport.deadlines import DeadlineWheel
from meshkit.transport.server import ServerConnection

#: Messages a caller may be sent before it grants more, when its metadata does not say.
DEFAULT_CREDIT = 16


class StreamSink:
    """Server side of one server stream: waits for credit (and socket drain) before each message.
    The credit itself is the connection's (it counts CREDIT frames); this only waits for it."""

    __slots__ = ("_conn", "_json", "_spec", "_waiter", "cancel_requested", "stream_id", "task")

    def __init__(self, conn: ServerConnection, stream_id: int, json: bool, spec: MethodSpec) -> None:
        self._conn = conn
        self._spec = spec
        self.stream_id = stream_id
        self._json = json
        self._waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancel_requested: str | None = None

    def add_credit(self) -> None:
        """The caller granted more messages (the connection counted them): wake the sender."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def cancel(self, msg: Any = None) -> Any:
        self.cancel_requested = str(msg) if msg is not None else "cancelled"
        if self.task is not None:
            self.task.cancel(msg)

    async def send(self, item: Any) -> None:
        proto = self._conn.proto
        while proto.credit(self.stream_id) <= 0:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        body = encode_result(item, self._json)
        spec = self._spec
        wrong = spec.signature.check_result(spec.qualname, item, body, self._json)
        if wrong is not None:
            log.error("%s", wrong.message)
            raise wrong  # ends the stream with this error (see answers.fail)
        self._conn.send(proto.send_stream_data(self.stream_id, body, self._json))
        await self._conn.drain()


def start_stream(
    wheel: DeadlineWheel[Any] | None,
    conn: ServerConnection,
    sid: int,
    route: Route,
    args: Any,
    md: Any,
    ctx: Context,
    json: bool,
) -> None:
    """Open the stream's credit, start its Task in a fresh copy of the context, and put it on
    the deadline ``wheel`` if it has a deadline."""
    credit = md.get("credit", DEFAULT_CREDIT)
    if type(credit) is not int or credit < 1:
        credit = DEFAULT_CREDIT
    sink = StreamSink(conn, sid, json, route.spec)
    call = Call(route.spec, args, md, conn.peer, ctx.time_remaining())
    call.trace = ctx.trace
    call.stream = sink
    call.fallback = route.fallback
    context = copy_context()
    context.run(_current.set, ctx)
    task = asyncio.get_running_loop().create_task(run_stream(wheel, conn, sid, route, call, sink, ctx), context=context)
    sink.task = task
    conn.proto.open_credit(sid, credit)
    conn.attach(sid, sink)
    if ctx.deadline is not None:
        assert wheel is not None
        wheel.add(sink, ctx.deadline)


async def run_stream(
    wheel: DeadlineWheel[Any] | None,
    conn: ServerConnection,
    sid: int,
    route: Route,
    call: Call,
    sink: StreamSink,
    ctx: Context,
) -> None:
    """The stream's Task: run the chain, then end the stream (STREAM_END, or the error)."""
    try:
        handler = route.handler
        assert handler is not None
        running = handler(call)
        ctx.trace = call.trace  # tracing middleware may have started a trace here
        await running
    except BaseException as exc:  # noqa: BLE001
        fail(conn, sid, route.spec, exc, sink.cancel_requested)
    else:
        conn.send(conn.proto.send_stream_end(sid))
    finally:
        conn.call_finished(sid)
        if wheel is not None:
            wheel.discard(sink)
