"""The policy config: one declarative description of a process's limits, breakers, retries,
shedding and switches, read from TOML (``Policy.from_file``) or built in code.

Rules are keyed by method: ``"inventory.reserve"`` (one method), ``"inventory.*"`` (a service)
or ``"*"`` (everything). They merge field by field, down into tables: for each setting the most
specific rule that sets it wins, so a service rule can set a limit and a method rule change only
its burst. Unknown keys are errors that name the key: a typo must not silently turn a limit off.
Everything is checked when the file is read, so a bad policy stops a process at start, never at
its first call.

Every default and where it comes from is in docs/resilience.md.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from meshkit.resilience.shedder import ShedderConfig
from meshkit.rpc.switches import check_pattern as _check_pattern

R = TypeVar("R", bound="_Strict")

#: How a rule acts: ``"enforce"`` refuses; ``"dry-run"`` (shadow mode) evaluates the rule on real
#: traffic and counts what it would refuse (``meshkit_policy_would_refuse_total``), refusing
#: nothing. Unset means enforce; a more specific rule can set ``"enforce"`` under a dry-run one.
Mode = Literal["enforce", "dry-run"]


class PolicyError(ValueError):
    """A policy file or rule that cannot be used; the message names the file and the field."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Limit(_Strict):
    """A token bucket: ``rate`` calls a second, bursts of up to ``burst`` (default: one second's
    worth). ``shared = true`` keeps the bucket in Redis (the policy's ``redis`` URL), so the rate
    is for the whole fleet rather than per process."""

    rate: float | None = None  # required, here or in a less specific rule
    burst: float | None = None
    shared: bool = False

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise PolicyError(f"limit rate must be > 0, got {self.rate}")
        if self.burst is not None and self.burst < 1:
            raise PolicyError(f"limit burst must be >= 1, got {self.burst}")

    @property
    def per_second(self) -> float:
        if self.rate is None:
            raise PolicyError("a limit needs a rate (calls a second)")
        return self.rate

    @property
    def size(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.per_second)


class Breaker(_Strict):
    """``kind = "classic"``: three states, resilience4j defaults (50 % errors over >= 20 calls in
    10 s, open 5 s, 3 probes). ``kind = "sre"``: Google SRE adaptive throttling (k = 1.5 over 2
    minutes). ``kind = "off"``: none."""

    kind: Literal["classic", "sre", "off"] = "classic"
    window: float = 10.0
    min_calls: int = 20
    error_ratio: float | None = 0.5
    slow_ratio: float | None = None
    slow_call: float = 1.0
    error_count: int | None = None
    open_for: float = 5.0
    half_open_probes: int = 3
    k: float = 1.5
    sre_window: float = 120.0


class Retry(_Strict):
    """Retries of calls refused without being processed (and, for ``@rpc(idempotent=True)``
    methods, of UNAVAILABLE), with full-jitter exponential backoff (25 ms doubling to 250 ms, as
    Envoy) and gRPC A6's retry throttling (10 tokens, +0.1 per success, retry above half).
    ``hedge_after``: for idempotent methods, send another copy if no answer came in that many
    seconds (gRPC A6 hedging); off by default."""

    max_attempts: int = 3
    initial_backoff: float = 0.025
    max_backoff: float = 0.25
    multiplier: float = 2.0
    budget_tokens: float = 10.0
    budget_ratio: float = 0.1
    hedge_after: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 10:
            raise PolicyError(f"retry max_attempts must be in 1..10, got {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff or self.multiplier < 1:
            raise PolicyError("retry backoff needs 0 <= initial_backoff <= max_backoff and multiplier >= 1")
        if self.hedge_after is not None and self.hedge_after <= 0:
            raise PolicyError(f"retry hedge_after must be > 0, got {self.hedge_after}")


class ServerRule(_Strict):
    """Limits on the serving side: ``limit`` for a method (all callers), ``caller_limit`` for each
    caller of it (caller id from the ``caller`` metadata key, else the peer's host), and
    ``max_concurrency`` (a bulkhead)."""

    limit: Limit | None = None
    caller_limit: Limit | None = None
    max_concurrency: int | None = None
    mode: Mode | None = None

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise PolicyError(f"max_concurrency must be >= 1, got {self.max_concurrency}")

    @property
    def dry_run(self) -> bool:
        return self.mode == "dry-run"


class ClientRule(_Strict):
    """Policies of the calling side: ``limit`` per target method (or service, with a ``svc.*``
    rule), a ``breaker`` per (service, method), ``instance_breaker`` per instance of a service,
    and ``retry``."""

    limit: Limit | None = None
    breaker: Breaker | None = None
    instance_breaker: Breaker | None = None
    retry: Retry | None = None
    mode: Mode | None = None

    @property
    def dry_run(self) -> bool:
        return self.mode == "dry-run"


class Shedding(_Strict):
    """The adaptive concurrency limit of a serving process (see resilience/shedder.py)."""

    enabled: bool = True
    initial_limit: int = 4
    min_limit: int = 2
    max_limit: int = 10_000
    window: float = 0.1
    tolerance: float = 2.0
    backoff: float = 0.9
    max_lag: float = 0.05
    lag_interval: float = 0.05
    cpu_threshold: float | None = None
    cpu_busy: float = 0.95
    queue_share: float = 0.0
    probe_every: float = 10.0

    def __post_init__(self) -> None:
        try:
            self.shedder_config()
        except ValueError as exc:
            raise PolicyError(f"shedding: {exc}") from None

    def shedder_config(self) -> ShedderConfig:
        """The pure shedder's config: every setting of the same name (a test keeps the defaults
        of the two equal)."""
        names = {f.name for f in dataclasses.fields(ShedderConfig)} & set(self.__struct_fields__)
        return ShedderConfig(**{name: getattr(self, name) for name in names})


class Release(_Strict):
    """Who runs a gray revision (a policy kept at ``KEY/gray`` in a configuration store): the
    instances named, those in a zone listed, those with every label given, and ``percent`` of
    the rest picked by a hash of their instance id (the same ones each time). Everyone else runs
    ``KEY`` until the gray revision is promoted (``meshkit config promote``)."""

    instances: list[str] = msgspec.field(default_factory=list)
    zones: list[str] = msgspec.field(default_factory=list)
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    percent: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise PolicyError(f"release percent must be in 0..100, got {self.percent}")


class PolicyConfig(_Strict):
    redis: str | None = None
    shedding: Shedding = msgspec.field(default_factory=Shedding)
    server: dict[str, ServerRule] = msgspec.field(default_factory=dict)
    client: dict[str, ClientRule] = msgspec.field(default_factory=dict)
    #: Methods answered by their fallback from the start (``meshkit switch`` changes this live).
    switches: dict[str, bool] = msgspec.field(default_factory=dict)
    #: Only in a gray revision: which instances run it (ignored where every instance runs it).
    release: Release | None = None

    def __post_init__(self) -> None:
        for section in (self.server, self.client, self.switches):
            for key in section:
                check_pattern(key)
        for key in self.switches:
            if "*" in key:
                raise PolicyError(f"switches: {key!r} must name one method ('service.method')")
        for key in self.server:  # every limit has a rate once its rules are merged
            rule = resolve(self.server, key, ServerRule)
            for limit in (rule.limit, rule.caller_limit):
                if limit is not None and limit.rate is None:
                    raise PolicyError(f"server.{key!r}: a limit needs a rate, here or in a less specific rule")
        for key in self.client:
            limit = resolve(self.client, key, ClientRule).limit
            if limit is not None and limit.rate is None:
                raise PolicyError(f"client.{key!r}: a limit needs a rate, here or in a less specific rule")

    def shared_limits(self) -> bool:
        rules: list[ServerRule | ClientRule] = [*self.server.values(), *self.client.values()]
        return any(
            limit is not None and limit.shared
            for rule in rules
            for limit in (rule.limit, getattr(rule, "caller_limit", None))
        )


def check_runnable(config: PolicyConfig) -> None:
    """What a config needs beyond its own fields, checked before a process runs it (and by
    ``meshkit config put --policy``): a shared limit needs a Redis URL."""
    if config.shared_limits() and config.redis is None:
        raise PolicyError("a limit is shared (shared = true) but the policy names no redis URL")


def check_pattern(key: str) -> None:
    """rpc's check of a method pattern (one definition, shared with the switches), raised as a
    PolicyError so a bad rule key reads as a policy error."""
    try:
        _check_pattern(key)
    except ValueError as exc:
        raise PolicyError(str(exc)) from None


def patterns(qualname: str) -> list[str]:
    """The rule keys that apply to ``qualname``, most specific first."""
    if qualname == "*":
        return ["*"]
    service = qualname.partition(".")[0]
    keys = [qualname, f"{service}.*", "*"]
    return list(dict.fromkeys(keys))


def _merge(general: dict[str, Any], specific: dict[str, Any]) -> dict[str, Any]:
    out = dict(general)
    for key, value in specific.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve(rules: dict[str, R], qualname: str, kind: type[R]) -> R:
    """The rule for ``qualname``: the rules that apply, merged setting by setting (into tables
    too), the most specific winning. (A setting equal to its default counts as not set.)"""
    found = [rules[key] for key in patterns(qualname) if key in rules]
    if not found:
        return kind()
    if len(found) == 1:
        return found[0]
    merged: dict[str, Any] = {}
    for rule in reversed(found):  # general first, specific last
        merged = _merge(merged, msgspec.to_builtins(rule))
    return msgspec.convert(merged, kind)


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> PolicyConfig:
    """The policy in ``path``; ``overrides`` (the same shape as the file, as a dict) are merged
    over it setting by setting, so code can pin what a file must not change."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from None
    if not overrides:
        return parse(data, str(path))
    try:
        base = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    try:
        return msgspec.convert(_merge(base, overrides), PolicyConfig)
    except msgspec.ValidationError as exc:
        raise PolicyError(f"{path} with overrides: {exc}") from None


def parse(data: bytes | str, source: str = "<policy>") -> PolicyConfig:
    try:
        return msgspec.toml.decode(data, type=PolicyConfig)
    except msgspec.ValidationError as exc:
        raise PolicyError(f"{source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    except PolicyError as exc:
        raise PolicyError(f"{source}: {exc}") from None
