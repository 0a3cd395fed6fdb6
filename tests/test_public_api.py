"""The public surface is pinned: adding or removing a name is a decision, made here on purpose."""

from __future__ import annotations

import meshkit

EXPECTED = {
    "Call",
    "Client",
    "Context",
    "Handler",
    "KeepaliveConfig",
    "Limits",
    "MeshkitError",
    "Middleware",
    "ProtocolError",
    "RpcError",
    "Server",
    "Service",
    "StatusCode",
    "__version__",
    "current_context",
    "rpc",
}


def test_all_is_pinned() -> None:
    assert set(meshkit.__all__) == EXPECTED


def test_every_exported_name_exists() -> None:
    for name in meshkit.__all__:
        assert hasattr(meshkit, name), name


def test_status_codes_match_grpc_numbers() -> None:
    codes = {c.name: int(c) for c in meshkit.StatusCode}
    assert codes["OK"] == 0 and codes["DEADLINE_EXCEEDED"] == 4 and codes["UNAVAILABLE"] == 14
    assert codes["UNAUTHENTICATED"] == 16 and len(codes) == 17


def test_rpc_error_pickles_with_its_fields() -> None:
    import pickle

    err = meshkit.RpcError(meshkit.StatusCode.NOT_FOUND, "gone", {"id": 1}, not_processed=True)
    back = pickle.loads(pickle.dumps(err))
    assert (back.code, back.message, back.details, back.not_processed) == (err.code, "gone", {"id": 1}, True)


def test_the_all_extra_has_every_engine_extra() -> None:
    """``pip install 'meshkit[all]'`` brings every engine's client: no extra is left out."""
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    (everything,) = extras["all"]
    inside = set(everything.partition("[")[2].rstrip("]").split(","))
    assert inside == set(extras) - {"all", "test", "fuzz"}


DISCOVERY = {
    "ENTRY_POINT_GROUP",
    "Discovery",
    "Instance",
    "MemoryRegistry",
    "Registrar",
    "Registry",
    "RegistryURL",
    "Watcher",
    "open_registry",
    "register_backend",
    "schemes",
}


def test_discovery_surface_is_pinned() -> None:
    """What a third-party registry backend and an application choosing one by URL rely on."""
    import meshkit.discovery

    assert set(meshkit.discovery.__all__) == DISCOVERY
    for name in meshkit.discovery.__all__:
        assert hasattr(meshkit.discovery, name), name
