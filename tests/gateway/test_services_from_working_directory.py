"""``gateway.services`` names classes as ``meshkit run`` does: a ``module:Class`` in the working
directory is found by the installed ``meshkit`` command, and one that cannot be imported stops the
gateway with a config error naming the entry, the module and the directory it was looked for in."""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

import meshkit
from meshkit import Server, Service
from meshkit.gateway import GatewayApp, GatewayConfigError, parse
from meshkit.testing import spawn

MYSVC = """
from meshkit import Service, rpc


class Adder(Service, name="adder"):
    @rpc
    async def add(self, a: int, b: int = 1) -> int:
        return a + b
"""

CONFIG = """
[gateway]
port = 0
services = ["mysvc:Adder"]
[targets]
adder = "{address}"
[[routes]]
method = "GET"
path = "/add/{{a}}"
call = "adder.add"
public = true
"""


def _meshkit_command() -> Path:
    # The console script, not ``python -m meshkit``: ``-m`` puts the working directory on
    # sys.path itself, which would hide exactly what is tested here.
    script = Path(sysconfig.get_path("scripts")) / "meshkit"
    assert script.exists(), f"the meshkit console script is not installed at {script} (pip install -e .)"
    return script


def _load_beside(path: Path) -> type[Service]:
    """The same class for the backend, imported under another name so that ``mysvc`` stays unimported here."""
    spec = importlib.util.spec_from_file_location("mysvc_backend", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls: type[Service] = module.Adder
    return cls


async def test_the_meshkit_command_imports_a_service_class_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "mysvc.py").write_text(MYSVC)
    adder = _load_beside(tmp_path / "mysvc.py")
    async with Server([adder()]) as backend:
        (tmp_path / "gateway.toml").write_text(CONFIG.format(address=backend.address))
        src = str(Path(meshkit.__file__).resolve().parent.parent)  # the meshkit under test
        with spawn(
            [str(_meshkit_command()), "gateway", "--config", "gateway.toml"],
            name="the gateway",
            ready=r"gateway on (http://\S+)",
            stderr="capture",
            cwd=tmp_path,
            env={"PYTHONPATH": src},
            timeout=30,
        ) as proc:
            assert proc.ready_match is not None
            async with httpx.AsyncClient(base_url=proc.ready_match[1]) as http:
                r = await http.get("/add/2", params={"b": "40"})
            # 42, not a 400: the path's "2" became an int because the class's hints were read.
            assert r.status_code == 200, r.text
            assert r.json() == 42
            assert proc.stop(grace=10) == 0 and not proc.escalated


def test_a_class_that_cannot_be_imported_names_the_entry_the_module_and_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the working directory added is taken back
    config = parse(
        CONFIG.format(address="127.0.0.1:1").replace('"mysvc:Adder"', '"tests.gateway.services:Orders", "nosuch:Adder"')
    )
    with pytest.raises(GatewayConfigError) as raised:
        GatewayApp(config)
    message = str(raised.value)
    assert "gateway.services[1]" in message
    assert "'nosuch:Adder'" in message and "no module named 'nosuch'" in message
    assert str(tmp_path) in message


def test_a_module_failing_its_own_import_is_told_apart_from_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "brokensvc.py").write_text("import a_dependency_that_is_not_installed\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "brokensvc", raising=False)
    config = parse(CONFIG.format(address="127.0.0.1:1").replace("mysvc:Adder", "brokensvc:Adder"))
    with pytest.raises(GatewayConfigError) as raised:
        GatewayApp(config)
    message = str(raised.value)
    assert "importing module 'brokensvc' failed" in message
    assert "a_dependency_that_is_not_installed" in message and str(tmp_path) in message
