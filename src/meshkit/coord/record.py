"""What a lock's key or node holds on the engines that store one (etcd, ZooKeeper): who asked, and
what it said about itself (an election's value), as JSON (readable with etcdctl and zkCli)."""

from __future__ import annotations

import msgspec


class Record(msgspec.Struct, frozen=True):
    owner: str
    value: bytes


encode_record = msgspec.json.Encoder().encode
decode_record = msgspec.json.Decoder(Record).decode
