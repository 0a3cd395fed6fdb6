"""The caller's side of a server stream: ``async for item in proxy.method(...)``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

from meshkit.rpc.channel import decode_result
from meshkit.rpc.middleware import Call
from meshkit.rpc.options import CallOptions
from meshkit.rpc.service import MethodSpec
from meshkit.transport.client import StreamReceiver

if TYPE_CHECKING:
    from meshkit.rpc.client import Client


class StreamCall:
    """One server stream, opened when first iterated.

    Leaving the loop early (``break``, an exception) cancels the stream on the server.
    """

    def __init__(self, client: Client, spec: MethodSpec, args: Any, opts: CallOptions) -> None:
        self._client = client
        self._spec = spec
        self._args = args
        self._opts = opts
        self._receiver: StreamReceiver | None = None
        self._done = False

    def __aiter__(self) -> AsyncIterator[Any]:
        # An async generator, so that leaving an ``async for`` early (break, return, an exception)
        # closes it promptly and the stream is cancelled on the server.
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        try:
            while True:
                try:
                    item = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            self._cancel()

    def _cancel(self) -> None:
        if not self._done:
            self._done = True
            if self._receiver is not None:
                self._receiver.cancel()

    async def _open(self) -> StreamReceiver:
        """Open the stream through the client's middleware, which sees the opening as the call
        (a span and a traceparent, metrics and the access log of the opening, a policy's breaker
        and retries); without middleware, directly."""
        client = self._client
        if not client._middleware:
            return await self._open_raw(None)
        call = client._new_call(self._spec, self._args, self._opts)
        call.stream = self
        receiver: StreamReceiver = await client._handler(self._spec)(call)
        return receiver

    def _open_raw(self, call: Call | None) -> Awaitable[StreamReceiver]:
        opts = self._opts
        if call is None:
            return self._client.channel.open_stream(self._spec, self._args, opts, opts.metadata, opts.timeout, None)
        return self._client.channel.open_stream(self._spec, self._args, opts, call.metadata, call.timeout, call)

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        receiver = self._receiver
        if receiver is None:
            receiver = self._receiver = await self._open()
        try:
            frame = await receiver.next()
        except BaseException:
            self._done = True
            receiver.cancel()
            raise
        if frame is None:
            self._done = True
            raise StopAsyncIteration
        return decode_result(self._spec, frame)

    async def aclose(self) -> None:
        self._cancel()

    async def __aenter__(self) -> StreamCall:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def open_stream(call: Call) -> Awaitable[StreamReceiver]:
    """The innermost handler of a client chain for a stream: open it."""
    stream: StreamCall = call.stream
    return stream._open_raw(call)
