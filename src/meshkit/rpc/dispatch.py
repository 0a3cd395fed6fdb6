"""The REQUEST path: from a frame to the handler's first step, and from its result to the answer.

This is the server's hot path (bench/micro/server_meshkit.py counts its instructions). A call of a
method without middleware that finishes without suspending costs: one metadata-cache lookup, one
decode, the handler's first step in a fresh copy of the context, one encode, one frame; no Task,
no Call, no EagerCall. Everything else (middleware, suspension, streams, errors) branches off it.
Keep the statements of ``Dispatcher.dispatch`` as they are unless the instruction count says so.
"""

from __future__ import annotations

import asyncio
from contextvars import copy_context
from functools import partial
from typing import Any

import msgspec

from meshkit.errors import DEADLINE_CANCEL_MESSAGE, FrameTooLarge, MalformedFrame, ProtocolError, RpcError, StatusCode
from meshkit.protocol.frames import Flags, Frame
from meshkit.protocol.metadata import DEADLINE, METHOD, SERVICE, Metadata, decode_metadata
from meshkit.rpc.answers import answer_wrong_result, fail, respond
from meshkit.rpc.context import Context, _current
from meshkit.rpc.eager import NATIVE_EAGER, EagerCall, TaskCall, end_step, resume
from meshkit.rpc.eager import stepping as _stepping
from meshkit.rpc.hooks import ServerGovernance, Shedder
from meshkit.rpc.middleware import Call
from meshkit.rpc.routes import Route, Routes
from meshkit.rpc.service import MethodSpec
from meshkit.rpc.streams import StreamSink, start_stream
from meshkit.serde import msgpack_encode
from meshkit.transport.deadlines import DeadlineWheel
from meshkit.transport.server import ServerConnection

_msgpack_encode = msgpack_encode
_JSON = int(Flags.JSON)
_STREAM = int(Flags.STREAM)
_DEADLINE_MSG = DEADLINE_CANCEL_MESSAGE
_NATIVE_EAGER = NATIVE_EAGER
#: ``eager_start=`` is 3.12+, which the 3.11 stubs do not know.
_Task: Any = asyncio.Task
#: Distinct metadata byte strings remembered (then forgotten all at once; see Dispatcher.resolve).
MD_CACHE_SIZE = 256

#: The outcome of a REQUEST's metadata: the map, the route, the time budget (see Dispatcher.resolve).
Resolved = tuple[Metadata, Route, Any]


def _expire_call(call: EagerCall | TaskCall | StreamSink) -> None:
    call.cancel(_DEADLINE_MSG)


class Dispatcher:
    """Routes REQUEST frames of every connection of one Server to its methods and answers them.

    ``loop`` and ``wheel`` (the deadlines of calls in flight) exist from :meth:`open` on; the
    Server opens it when it starts and closes it when it has stopped.
    """

    __slots__ = ("__weakref__", "loop", "md_cache", "policy", "routes", "shedder", "wheel")

    def __init__(self, routes: Routes, policy: ServerGovernance | None) -> None:
        self.routes = routes
        self.policy = policy
        self.shedder = policy.shedder if policy is not None else None
        self.md_cache: dict[bytes, Resolved] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wheel: DeadlineWheel[EagerCall | TaskCall | StreamSink] | None = None

    def use_shedder(self, shedder: Shedder | None) -> None:
        """The policy turned shedding on or off, live."""
        self.shedder = shedder

    def open(self, loop: asyncio.AbstractEventLoop, deadline_resolution: float) -> None:
        self.loop = loop
        self.wheel = DeadlineWheel(loop.call_at, _expire_call, deadline_resolution)

    def close(self) -> None:
        if self.wheel is not None:
            self.wheel.close()

    def dispatch(self, conn: ServerConnection, frame: Frame) -> None:
        sid = frame.stream_id
        raw = frame.metadata
        flags = frame.flags
        trace = frame.trace  # split off the metadata by the connection (protocol.md, "Flags")
        entry = self.md_cache.get(raw)
        if entry is None:
            entry = self.resolve(conn, sid, raw)
            if entry is None:
                return  # answered already: unknown service or method, or unreadable metadata
        template, route, budget = entry
        md = template.copy()  # a handler or middleware may change its own copy
        shedder = self.shedder
        if shedder is not None and shedder.in_flight >= shedder.limit and route.sheddable and shedder.queue_full():
            # Overloaded: refuse before decoding anything, with a pre-encoded answer. Under 10x
            # load most requests end here, so this path is what keeps goodput up.
            shedder.refuse()
            refusal = self.policy.shed_refusal(route.spec.qualname)  # type: ignore[union-attr]
            conn.send(conn.proto.send_error_body(sid, refusal, not_processed=True))
            return
        json = bool(flags & _JSON)
        spec = route.spec
        try:
            body = frame.body  # inflated by the connection if it came compressed
            if flags:
                args = spec.signature.decode_args(spec.qualname, body, json)
            else:
                try:
                    args = route.decode(body)
                except (msgspec.MsgspecError, UnicodeDecodeError):
                    args = spec.signature.decode_args(spec.qualname, body, False)  # raises, naming the field
            if bool(flags & _STREAM) != route.streaming:
                kind = "a server-streaming" if spec.streaming else "a unary"
                raise RpcError(StatusCode.FAILED_PRECONDITION, f"{spec.qualname} is {kind} method; call it as one")
            loop = self.loop
            assert loop is not None
            deadline = None
            if budget is not None:
                if budget.__class__ is RpcError:
                    raise budget
                deadline = loop.time() + budget
        except RpcError as exc:
            conn.send_error(sid, exc.code, exc.message, exc.details, not_processed=True)
            return
        except (FrameTooLarge, MalformedFrame) as exc:
            conn.send_error(sid, StatusCode.INVALID_ARGUMENT, f"bad request body: {exc}", not_processed=True)
            return
        ctx = Context(spec.service, spec.name, md, deadline, conn.peer, loop.time, trace)
        if route.streaming:
            start_stream(self.wheel, conn, sid, route, args, md, ctx, json)
            return
        handler = route.handler
        try:
            if handler is None:
                coro = route.invoke(args)
            else:
                call_ = Call(spec, args, md, conn.peer, budget)
                call_.trace = trace
                if route.fallback is not None:
                    call_.fallback = route.fallback
                coro = handler(call_)
                ctx.trace = call_.trace  # tracing middleware may have started a trace here
        except Exception as exc:  # noqa: BLE001 - a call that cannot be made fails its own stream only
            fail(conn, sid, spec, exc, None)
            return
        # The eager first step (see rpc/eager.py), in a fresh copy of the context. Everything on
        # this path is a C call but for the handler itself: no Task (3.12+: one made in C) and no
        # EagerCall is made unless the handler suspends or, on 3.11, asks for the current task.
        context = copy_context()
        context.run(_current.set, ctx)
        if _NATIVE_EAGER:
            try:
                task = _Task(coro, loop=loop, context=context, eager_start=True)
            except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt/SystemExit: the step re-raises them
                fail(conn, sid, spec, exc, None)
                return
            if not task.done():
                self.suspended(task, conn, sid, spec, json, flags, deadline)
                return
            try:
                value = task.result()
            except BaseException as exc:  # noqa: BLE001 - a handler's failure is the caller's error
                fail(conn, sid, spec, exc, None)
                return
        else:
            stepping = _stepping
            stepping[0] = (self.make_eager, loop, coro, context, conn, sid, spec, json, flags)
            try:
                yielded = context.run(coro.send, None)
            except StopIteration as stop:
                made = stepping[0]
                stepping[0] = None
                if made.__class__ is EagerCall:
                    made.finished = True
                    end_step(made)
                value = stop.value
            except BaseException as exc:  # noqa: BLE001 - a handler's failure is the caller's error
                made = stepping[0]
                stepping[0] = None
                if made.__class__ is EagerCall:
                    made.finished = True
                    end_step(made)
                fail(conn, sid, spec, exc, None)
                return
            else:
                # Suspended: a Task continues the call (it may exist already, see EagerCall.materialize).
                made = stepping[0]
                stepping[0] = None
                if made.__class__ is EagerCall:
                    call: EagerCall = made
                    end_step(call)
                else:
                    call = self.make_eager(loop, coro, context, conn, sid, spec, json, flags)
                    call.materialize()
                call.yielded = yielded
                conn.attach(sid, call)
                if deadline is not None:
                    self.wheel.add(call, deadline)  # type: ignore[union-attr]
                return
        # Finished in its first step: answer now.
        if flags:
            respond(conn, sid, spec, value, json, flags)
            return
        try:
            out = _msgpack_encode(value)
        except (TypeError, ValueError, OverflowError):
            respond(conn, sid, spec, value, json, flags)  # answers with the encoding error
            return
        exact = spec.result_exact
        if exact is None or (exact and type(value) not in exact):
            wrong = spec.signature.check_result(spec.qualname, value, out, False)
            if wrong is not None:
                answer_wrong_result(conn, sid, wrong)
                return
        conn.send(conn.proto.send_response(sid, out))

    def resolve(self, conn: ServerConnection, sid: int, raw: bytes) -> Resolved | None:
        """What a REQUEST's metadata means: the map, the route and the time budget in seconds
        (None for none, an RpcError for one that is not a number or has passed). Callers with one
        timeout send byte-identical metadata for most calls, so the answer is remembered for a
        few (not for a textual traceparent: it makes every one unique). None: refused here."""
        try:
            md = decode_metadata(raw)
        except ProtocolError as exc:
            conn.protocol_error(exc)
            return None
        service = md.get(SERVICE)
        routes = self.routes.get(service)  # type: ignore[arg-type]
        if routes is None:
            conn.send_error(
                sid,
                StatusCode.UNIMPLEMENTED,
                f"unknown service {service!r}; this server has: {', '.join(sorted(self.routes))}",
                not_processed=True,
            )
            return None
        method = md.get(METHOD)
        route = routes.get(method)  # type: ignore[arg-type]
        if route is None:
            conn.send_error(
                sid,
                StatusCode.UNIMPLEMENTED,
                f"unknown method {service}.{method}; {service} has: {', '.join(sorted(routes))}",
                not_processed=True,
            )
            return None
        budget: Any = None
        remaining = md.get(DEADLINE)
        if remaining is not None:
            if type(remaining) is not int and type(remaining) is not float:
                budget = RpcError(
                    StatusCode.INVALID_ARGUMENT, f"metadata 'deadline' must be a number of ms, got {remaining!r}"
                )
            elif remaining <= 0:
                budget = RpcError(StatusCode.DEADLINE_EXCEEDED, "deadline had passed before the call arrived")
            else:
                budget = remaining / 1000.0
        entry = (md, route, budget)
        if budget.__class__ is not RpcError and b"traceparent" not in raw:
            if len(self.md_cache) >= MD_CACHE_SIZE:
                self.md_cache.clear()
            self.md_cache[raw] = (md.copy(), route, budget)
        return entry

    def make_eager(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Any,
        context: Any,
        conn: ServerConnection,
        sid: int,
        spec: MethodSpec,
        json: bool,
        flags: int,
    ) -> EagerCall:
        """The EagerCall of a call that suspended (or asked for its Task) in its eager step."""
        return EagerCall(loop, coro, context, self.continuation, (conn, sid, spec, json, flags))

    async def continuation(self, call: EagerCall) -> None:
        """The Task of a call that suspended: the rest of the handler, then its answer."""
        call.started = True
        if call.finished:
            return  # the handler finished in its eager step; the Task was made but not needed
        conn, sid, spec, json, flags = call.owner
        throw = None if call.cancel_requested is None else asyncio.CancelledError(call.cancel_requested)
        try:
            result = await resume(call.coro, call.yielded, throw)
        except BaseException as exc:  # noqa: BLE001
            fail(conn, sid, spec, exc, call.cancel_requested)
        else:
            respond(conn, sid, spec, result, json, flags)
        finally:
            conn.call_finished(sid)
            if self.wheel is not None:
                self.wheel.discard(call)

    def suspended(
        self,
        task: asyncio.Task[Any],
        conn: ServerConnection,
        sid: int,
        spec: MethodSpec,
        json: bool,
        flags: int,
        deadline: float | None,
    ) -> None:
        """3.12+: the call's eager Task suspended; answer when it is done."""
        call = TaskCall(task)
        task.add_done_callback(partial(self.task_done, call, conn, sid, spec, json, flags))
        conn.attach(sid, call)
        if deadline is not None:
            self.wheel.add(call, deadline)  # type: ignore[union-attr]

    def task_done(
        self,
        call: TaskCall,
        conn: ServerConnection,
        sid: int,
        spec: MethodSpec,
        json: bool,
        flags: int,
        task: asyncio.Task[Any],
    ) -> None:
        """3.12+: a call that suspended is done: its answer (the done callback of its Task)."""
        try:
            value = task.result()
        except BaseException as exc:  # noqa: BLE001
            fail(conn, sid, spec, exc, call.cancel_requested)
        else:
            respond(conn, sid, spec, value, json, flags)
        finally:
            conn.call_finished(sid)
            if self.wheel is not None:
                self.wheel.discard(call)
