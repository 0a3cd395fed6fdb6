"""``Service`` and ``@rpc``: how a class of async methods becomes a named RPC service.

The same class serves on the server and types the client's proxy, so both sides agree on names,
arguments and results by construction rather than by a separate IDL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar, overload

from meshkit.protocol.metadata import METHOD, SERVICE, MetadataTemplate
from meshkit.serde import Signature, signature_of

F = TypeVar("F", bound=Callable[..., Any])

_RPC_ATTR = "__meshkit_rpc__"


@dataclass(frozen=True, slots=True)
class RpcOptions:
    """Per-method options given to ``@rpc``. ``idempotent`` methods may be retried after they
    reached the server (retries of UNAVAILABLE, hedging); ``name`` overrides the wire name;
    ``fallback`` (a method name of the same service, or a function taking the same parameters)
    answers instead of the method when it is switched off, shed or rate-limited."""

    name: str | None = None
    idempotent: bool = False
    fallback: str | Callable[..., Any] | None = None


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One RPC method: its wire name, options and codecs."""

    service: str
    name: str
    attr: str
    options: RpcOptions
    signature: Signature
    qualname: str = ""
    streaming: bool = False
    #: The request metadata naming this method, pre-encoded once (see MetadataTemplate).
    template: MetadataTemplate = field(init=False, repr=False, compare=False)
    #: ``signature.result_exact``, read by the server on every answer (see Signature.check_result).
    result_exact: tuple[type, ...] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Plain fields rather than properties: all are read on every call.
        if not self.qualname:
            object.__setattr__(self, "qualname", f"{self.service}.{self.name}")
        object.__setattr__(self, "streaming", self.signature.streaming)
        object.__setattr__(self, "template", MetadataTemplate({SERVICE: self.service, METHOD: self.name}))
        object.__setattr__(self, "result_exact", self.signature.result_exact)


@overload
def rpc(func: F, /) -> F: ...
@overload
def rpc(
    *, name: str | None = None, idempotent: bool = False, fallback: str | Callable[..., Any] | None = None
) -> Callable[[F], F]: ...


def rpc(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    idempotent: bool = False,
    fallback: str | Callable[..., Any] | None = None,
) -> Any:
    """Mark an ``async def`` (a unary method) or ``async def … yield`` (a server stream) as an RPC.

    ``fallback="cheap_answer"`` names a method of the same class (or gives a function) with the
    same parameters: the degraded answer used while the method is switched off or refused."""
    options = RpcOptions(name=name, idempotent=idempotent, fallback=fallback)

    def mark(f: F) -> F:
        import inspect

        if not (inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f)):
            raise TypeError(f"@rpc needs an 'async def' method; {getattr(f, '__qualname__', f)!r} is not one")
        setattr(f, _RPC_ATTR, options)
        return f

    if func is not None:
        return mark(func)
    return mark


class Service:
    """Base class of services: ``class Greeter(Service, name="greeter")``.

    The name is what clients call and what a registry lists; it defaults to the class name in lower
    case. Method specs are built on first use, so type hints may name classes defined later in the
    module.
    """

    __meshkit_name__: ClassVar[str] = ""
    __meshkit_specs__: ClassVar[dict[str, MethodSpec] | None] = None

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        service_name = name or cls.__dict__.get("__meshkit_name__") or cls.__name__.lower()
        if not service_name or any(c in service_name for c in " /\n"):
            raise TypeError(f"invalid service name {service_name!r}")
        cls.__meshkit_name__ = service_name
        cls.__meshkit_specs__ = None

    def with_options(
        self,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str | int | float | bool | None] | None = None,
        compression: bool | None = None,
        json: bool | None = None,
        hash_key: str | None = None,
        balancer: str | None = None,
    ) -> Self:
        """On a client proxy, a proxy whose calls use these options. Declared here so that type
        checkers see it on ``client.proxy(Service)``; calling it on a real service is a mistake."""
        raise TypeError("with_options() belongs to client proxies: client.proxy(MyService).with_options(...)")


def service_name(cls: type[Service] | Service) -> str:
    return cls.__meshkit_name__


def method_specs(cls: type[Service] | Service) -> dict[str, MethodSpec]:
    """The RPC methods of a service class by wire name, built once and cached on the class."""
    klass = cls if isinstance(cls, type) else type(cls)
    cached = klass.__dict__.get("__meshkit_specs__")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    specs: dict[str, MethodSpec] = {}
    for attr in dir(klass):
        func = getattr(klass, attr, None)
        options = getattr(func, _RPC_ATTR, None)
        if not isinstance(options, RpcOptions) or func is None:
            continue
        wire = options.name or attr
        if isinstance(options.fallback, str) and not callable(getattr(klass, options.fallback, None)):
            raise TypeError(
                f"{klass.__meshkit_name__}.{wire}: fallback {options.fallback!r} is not a method of {klass.__name__}"
            )
        if wire in specs:
            raise TypeError(f"{klass.__meshkit_name__}: two methods share the wire name {wire!r}")
        specs[wire] = MethodSpec(
            service=klass.__meshkit_name__,
            name=wire,
            attr=attr,
            options=options,
            signature=signature_of(func, f"{klass.__meshkit_name__}.{wire}"),
        )
    if not specs:
        raise TypeError(f"service {klass.__name__} has no @rpc methods")
    klass.__meshkit_specs__ = specs
    return specs
