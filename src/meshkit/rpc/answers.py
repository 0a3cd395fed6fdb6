"""How a finished call becomes its answer frame: a RESPONSE for a result, an ERROR for a failure.

Shared by the unary path (dispatch.py) and server streams (streams.py), so a failure is told to
the caller the same way whichever ran it. The eager fast path in ``Dispatcher.dispatch`` answers
plain msgpack results inline and comes here for everything else.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from meshkit.errors import DEADLINE_CANCEL_MESSAGE, AdmissionRefused, RpcError, StatusCode
from meshkit.protocol.frames import Flags
from meshkit.rpc.service import MethodSpec
from meshkit.serde import encode_result
from meshkit.transport.server import ServerConnection

log = logging.getLogger("meshkit.server")
_COMPRESSED = int(Flags.COMPRESSED)
_DEADLINE_MSG = DEADLINE_CANCEL_MESSAGE


def respond(conn: ServerConnection, sid: int, spec: MethodSpec, value: Any, json: bool, req_flags: int) -> None:
    """Answer ``value`` in the request's encoding (compressed if the request was), or the error
    of a value that cannot be encoded or does not have the method's return type."""
    try:
        body = encode_result(value, json)
    except RpcError as exc:
        conn.send_error(sid, exc.code, exc.message)
        return
    wrong = spec.signature.check_result(spec.qualname, value, body, json)
    if wrong is not None:
        answer_wrong_result(conn, sid, wrong)
        return
    conn.send(conn.proto.send_response(sid, body, json, bool(req_flags & _COMPRESSED)))


def fail(conn: ServerConnection, sid: int, spec: MethodSpec, exc: BaseException, requested: str | None) -> None:
    """Answer a failed call. ``requested`` says why meshkit itself cancelled it, if it did."""
    if isinstance(exc, RpcError):
        # Only this server's own refusals say "not processed"; see AdmissionRefused.
        refused = exc.not_processed and isinstance(exc, AdmissionRefused)
        conn.send_error(sid, exc.code, exc.message, exc.details, not_processed=refused)
    elif isinstance(exc, asyncio.CancelledError):
        if requested == _DEADLINE_MSG:
            conn.send_error(sid, StatusCode.DEADLINE_EXCEEDED, f"{spec.qualname} ran past its deadline")
        elif requested is None:
            # Nobody here cancelled it: the handler's own await was cancelled. Say so, or the
            # caller would wait for an answer that never comes.
            conn.send_error(sid, StatusCode.CANCELLED, f"{spec.qualname} was cancelled inside the handler")
        # else: cancelled by the caller or by shutdown; whoever cancelled answers, if anyone
    elif isinstance(exc, ConnectionError) and conn.is_closing:
        pass  # the connection went away under the handler: nobody to answer
    elif isinstance(exc, Exception):
        log.error("%s raised %s", spec.qualname, type(exc).__name__, exc_info=exc)
        conn.send_error(sid, StatusCode.UNKNOWN, f"{spec.qualname} raised {type(exc).__name__}: {exc}")
    else:
        conn.send_error(sid, StatusCode.INTERNAL, f"{spec.qualname} was interrupted")
        raise exc


def answer_wrong_result(conn: ServerConnection, sid: int, wrong: RpcError) -> None:
    """A handler answered with a value its own return type rejects: the server's bug, so the
    caller gets INTERNAL (never an OK it would fail to decode) and the log says which method."""
    log.error("%s", wrong.message)
    conn.send_error(sid, wrong.code, wrong.message)
