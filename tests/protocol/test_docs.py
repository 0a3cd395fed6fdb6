"""docs/protocol.md agrees with the code: diagram, worked example, numbers and names."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from msgspec.structs import replace

from meshkit import Client, Server
from meshkit.errors import StatusCode
from meshkit.protocol import limits as limits_module
from meshkit.protocol import metadata as metadata_module
from meshkit.protocol.compression import MIN_COMPRESS_SIZE
from meshkit.protocol.decoder import FrameDecoder
from meshkit.protocol.frames import HEADER, HEADER_SIZE, MAGIC, VERSION, Flags, Frame, FrameType
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.protocol.messages import GoAwayBody, decode_goaway, encode_credit, encode_error
from meshkit.protocol.metadata import decode_metadata
from meshkit.protocol.states import TRANSITIONS, StreamEvent, StreamState
from meshkit.rpc.client import MAX_TRANSPARENT_RETRIES
from meshkit.rpc.server import SERVER_KEEPALIVE
from meshkit.transport.client import DEFAULT_STREAM_WINDOW, OPENING_PING

ROOT = Path(__file__).resolve().parents[2]
DOC_PATH = ROOT / "docs" / "protocol.md"
DOC = DOC_PATH.read_text()
FLAT = " ".join(DOC.split())  # for phrases that may wrap across lines


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen_states() -> ModuleType:
    return _load(ROOT / "docs" / "gen_states.py", "gen_states")


# -- the state diagram ------------------------------------------------------------------------


def test_doc_contains_the_current_generated_diagram(gen_states: ModuleType) -> None:
    assert gen_states.block() in DOC, "docs/protocol.md is stale: run `python docs/gen_states.py --write`"
    assert DOC.count(gen_states.BEGIN) == 1


def test_generated_diagram_has_exactly_the_table(gen_states: ModuleType) -> None:
    edges = set()
    for line in gen_states.mermaid().splitlines():
        match = re.fullmatch(r"    (\w+) --> (\w+): (.+)", line)
        if match:
            src, dst, events = match.groups()
            for event in events.split(" / "):
                edges.add((StreamState(src), StreamEvent(event.lower()), StreamState(dst)))
    assert edges == {(src, event, dst) for (src, event), dst in TRANSITIONS.items()}
    assert "[*] --> idle" in gen_states.mermaid()
    assert "closed --> [*]" in gen_states.mermaid()


def test_write_refreshes_a_stale_diagram_and_leaves_a_fresh_one(gen_states: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "protocol.md"
    stale.write_text(DOC.replace("open --> streaming: STREAM_DATA", "open --> nowhere: NOTHING"))
    assert gen_states.write(stale) is True
    assert stale.read_text() == DOC
    assert gen_states.write(stale) is False


# -- the worked example -------------------------------------------------------------------------


def _between(begin: str, end: str) -> str:
    return DOC[DOC.index(begin) + len(begin) : DOC.index(end)]


def _example() -> tuple[dict[str, Any], str]:
    block = _between("<!-- BEGIN example -->", "<!-- END example -->")
    code = re.fullmatch(r"\s*```python\n(.*)```\s*", block, re.S)
    assert code is not None
    namespace: dict[str, Any] = {"__name__": "protocol_doc_example"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), "docs/protocol.md", "exec"), namespace)
    return namespace, out.getvalue()


def test_example_output_in_the_doc_is_what_the_snippet_prints() -> None:
    _, printed = _example()
    after = DOC[DOC.index("<!-- END example -->") :]
    shown = re.search(r"Its output:\s*```\n(.*?)```", after, re.S)
    assert shown is not None
    assert shown.group(1) == printed


@pytest.mark.parametrize("which", ["request", "response"])
def test_example_annotation_matches_the_bytes(which: str) -> None:
    ns, _ = _example()
    data = ns[which]
    heading = f"The {which.upper()}, {len(data)} bytes:"
    assert heading in DOC
    fenced = re.match(r"\s*```\n(.*?)```", DOC[DOC.index(heading) + len(heading) :], re.S)
    assert fenced is not None
    # Each annotated line starts with the bytes it explains, in order.
    hex_runs = re.findall(r"^ *((?:[0-9a-f]{2} )*[0-9a-f]{2})(?: |$)", fenced.group(1), re.M)
    assert bytes.fromhex("".join(hex_runs)) == data


async def test_a_real_server_answers_the_example_request_with_the_example_response() -> None:
    ns, _ = _example()
    async with Server([ns["Greeter"]()], middleware=[]) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(ns["request"])
            answer = await asyncio.wait_for(reader.readexactly(len(ns["response"])), 10)
        finally:
            writer.close()
    assert answer == ns["response"]


async def _goaway_after_a_bad_frame(server: Server, requests: list[Frame]) -> GoAwayBody:
    """Send ``requests`` one by one (each answered before the next), then garbage; the GOAWAY."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    decoder = FrameDecoder()
    try:
        for request in requests:
            writer.write(request.encode())
            frames: list[Frame] = []
            while not frames:
                frames = decoder.feed(await asyncio.wait_for(reader.read(65536), 10))
            assert [(f.type, f.stream_id) for f in frames] == [(FrameType.RESPONSE, request.stream_id)]
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        rest = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    finally:
        writer.close()
    [goaway] = decoder.feed(rest)
    assert goaway.type == FrameType.GOAWAY and goaway.stream_id == 0
    return decode_goaway(goaway.body)


async def test_a_protocol_error_goaway_carries_the_highest_dispatched_stream_id() -> None:
    assert "The GOAWAY a server sends on a protocol error has the same `last_stream_id` as a drain's" in FLAT
    assert "the highest stream id it has dispatched on that connection (0 if none)" in FLAT
    ns, _ = _example()
    [request] = FrameDecoder().feed(ns["request"])
    async with Server([ns["Greeter"]()], middleware=[]) as server:
        fresh = await _goaway_after_a_bad_frame(server, [])
        used = await _goaway_after_a_bad_frame(server, [replace(request, stream_id=sid) for sid in (3, 9, 5)])
    assert (fresh.last_stream_id, fresh.code) == (0, StatusCode.INTERNAL)
    assert (used.last_stream_id, used.code) == (9, StatusCode.INTERNAL)
    assert used.message.startswith("protocol error: ")


async def test_a_real_client_sends_the_example_request_up_to_the_deadline_value() -> None:
    ns, _ = _example()
    received = bytearray()
    got_request: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    opening = bytearray()

    async def fake_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opening.extend(await reader.readexactly(len(OPENING_PING)))  # see "The opening PING"
        received.extend(await reader.readexactly(len(ns["request"])))
        got_request.set_result(None)
        writer.write(ns["response"])
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    listener = await asyncio.start_server(fake_server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = Client(f"127.0.0.1:{port}", timeout=10.0, middleware=[], keepalive=None)
    try:
        result = await asyncio.wait_for(client.proxy(ns["Greeter"]).hello("ann"), 10)
        await got_request
    finally:
        await client.close()
        listener.close()
    assert result == "hello ann"
    assert bytes(opening) == OPENING_PING
    shown = re.search(r"24 bytes with its header:\s*`([0-9a-f ]+)`", DOC)
    assert shown is not None and shown.group(1).replace(" ", "") == OPENING_PING.hex()
    [sent] = FrameDecoder().feed(bytes(received))
    [expected] = FrameDecoder().feed(ns["request"])
    assert (sent.type, sent.flags, sent.stream_id, sent.body) == (
        expected.type,
        expected.flags,
        expected.stream_id,
        expected.body,
    )
    metadata = decode_metadata(sent.metadata)
    assert list(metadata) == ["service", "method", "deadline"]
    assert {k: metadata[k] for k in ("service", "method")} == {"service": "greeter", "method": "hello"}
    assert 9_000 < metadata["deadline"] <= 10_000  # type: ignore[operator]


# -- names and numbers ----------------------------------------------------------------------------


def test_header_facts() -> None:
    assert f'`struct.Struct("{HEADER.format}")`' in DOC
    assert f"{HEADER_SIZE} bytes (`HEADER_SIZE`)" in DOC
    assert f"`{MAGIC.hex(' ')}`, ASCII `{MAGIC.decode()}`" in DOC
    assert f"| 2 | 1 | version | u8 | `{VERSION:02x}`" in DOC


@pytest.mark.parametrize("frame_type", list(FrameType), ids=lambda t: t.name)
def test_every_frame_type_is_in_the_table_with_its_number(frame_type: FrameType) -> None:
    assert f"\n| {frame_type.value} | {frame_type.name} |" in DOC


@pytest.mark.parametrize("flag", [f for f in Flags if f], ids=lambda f: f.name)
def test_every_flag_is_in_the_table_with_its_bit(flag: Flags) -> None:
    assert f"| {flag.bit_length() - 1} | `{flag.value:#04x}` | {flag.name} |" in DOC


def test_every_well_known_metadata_key_is_documented() -> None:
    keys = [v for k, v in vars(metadata_module).items() if k.isupper() and isinstance(v, str)]
    assert len(keys) >= 8
    for key in [*keys, "credit"]:
        assert f"\n| `{key}` |" in DOC, key


def test_limit_defaults_are_documented() -> None:
    defaults = {
        k.removeprefix("DEFAULT_").lower(): v for k, v in vars(limits_module).items() if k.startswith("DEFAULT_")
    }
    assert set(defaults) == {"max_frame_size", "max_metadata_size", "max_concurrent_streams", "max_decompressed_size"}
    for name, value in defaults.items():
        row = next(line for line in DOC.splitlines() if line.startswith(f"| `{name}` |"))
        assert str(value) in row, name


def test_status_codes_are_listed() -> None:
    for code in StatusCode:
        assert f"{code.value} {code.name}" in DOC


def test_control_body_examples() -> None:
    assert encode_error(StatusCode.NOT_FOUND, "no such user").hex(" ") in FLAT
    assert f"a credit of 32 is `{encode_credit(32).hex(' ')}`" in FLAT


def test_other_documented_numbers() -> None:
    client = KeepaliveConfig()
    assert f"KeepaliveConfig(interval={client.interval}, timeout={client.timeout})" in FLAT
    assert f"a server after {SERVER_KEEPALIVE.interval:g} s and {SERVER_KEEPALIVE.timeout:g} s" in FLAT
    assert f"`MIN_COMPRESS_SIZE` = {MIN_COMPRESS_SIZE}" in FLAT
    assert f"`MAX_TRANSPARENT_RETRIES` = {MAX_TRANSPARENT_RETRIES}" in FLAT
    assert f"{DEFAULT_STREAM_WINDOW} by default" in FLAT
    assert f"sends `CREDIT {DEFAULT_STREAM_WINDOW // 2}`" in FLAT
