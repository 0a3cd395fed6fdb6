"""The protocol core is sans-IO: it never imports asyncio, sockets or TLS.

Two checks, because each alone would be weaker:

* at run time, a fresh interpreter imports every module of ``meshkit.protocol`` and reports which I/O
  modules ended up in ``sys.modules`` (this catches indirect imports, e.g. through a dependency).
  ``meshkit/__init__.py`` imports the RPC layer (and so asyncio), so the subprocess registers a bare
  ``meshkit`` package object pointing at the real source directory first: the protocol modules and
  ``meshkit.errors`` are the real files, executed as usual; only the package ``__init__`` is skipped.
  A control run shows that the check does see asyncio when the full package is imported.
* statically, ``ast`` lists every import statement in the protocol sources, including ones inside
  functions that an import-time check would never execute.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import meshkit.protocol

FORBIDDEN = ("asyncio", "socket", "ssl", "selectors", "uvloop")
PROTOCOL_DIR = Path(meshkit.protocol.__file__).parent
MODULES = sorted(p.stem for p in PROTOCOL_DIR.glob("*.py") if p.stem != "__init__")

_PROBE = """
import importlib, importlib.util, json, sys, types
forbidden = {forbidden!r}
before = sorted(m for m in forbidden if m in sys.modules)
if {bare_package!r}:
    spec = importlib.util.find_spec("meshkit")
    package = types.ModuleType("meshkit")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["meshkit"] = package
import meshkit.protocol
for name in {modules!r}:
    importlib.import_module("meshkit.protocol." + name)
loaded = sorted(m for m in sys.modules if m == "meshkit" or m.startswith("meshkit."))
print(json.dumps({{
    "before": before,
    "after": sorted(m for m in forbidden if m in sys.modules),
    "loaded": loaded,
    "init_ran": hasattr(sys.modules["meshkit"], "__version__"),
}}))
"""


def _probe(bare_package: bool) -> dict[str, object]:
    code = _PROBE.format(forbidden=FORBIDDEN, bare_package=bare_package, modules=MODULES)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_protocol_modules_exist() -> None:
    assert {"compression", "decoder", "frames", "keepalive", "limits", "messages", "metadata", "states"} <= set(MODULES)


def test_importing_the_protocol_loads_no_io_module() -> None:
    result = _probe(bare_package=True)
    assert result["before"] == []  # the interpreter itself starts without them
    assert result["init_ran"] is False
    assert {f"meshkit.protocol.{m}" for m in MODULES} <= set(result["loaded"])  # type: ignore[arg-type]
    # Nothing of meshkit outside the protocol and the error tree was loaded.
    assert set(result["loaded"]) <= {"meshkit", "meshkit.errors", "meshkit.protocol"} | {  # type: ignore[arg-type]
        f"meshkit.protocol.{m}" for m in MODULES
    }
    assert result["after"] == []


def test_control_the_full_package_does_load_asyncio() -> None:
    # Proves the probe can fail: the package __init__ imports the asyncio RPC layer.
    result = _probe(bare_package=False)
    assert result["init_ran"] is True
    assert "asyncio" in result["after"]  # type: ignore[operator]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
            "__import__",
            "import_module",
        ):
            names.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return names


def test_no_protocol_source_imports_io_modules_anywhere() -> None:
    offenders = {
        path.name: sorted(n for n in _imports(path) if n.split(".")[0] in FORBIDDEN)
        for path in sorted(PROTOCOL_DIR.glob("*.py"))
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_protocol_sources_import_only_the_protocol_and_errors_of_meshkit() -> None:
    inner = {
        path.name: sorted(
            n
            for n in _imports(path)
            if n.split(".")[0] == "meshkit" and n != "meshkit.errors" and not n.startswith("meshkit.protocol")
        )
        for path in sorted(PROTOCOL_DIR.glob("*.py"))
    }
    assert {name: bad for name, bad in inner.items() if bad} == {}


def test_static_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import asyncio\n    from ssl import SSLContext\n    __import__('socket')\n")
    assert _imports(sample) == {"asyncio", "ssl", "socket"}
