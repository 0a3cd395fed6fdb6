"""The client switch middleware (policy/switches.py): a switched-on method is refused here,
synchronously, and a switch turned off lets calls through again at once."""

from __future__ import annotations

import pytest

from meshkit import RpcError, StatusCode
from meshkit.policy import Switches
from meshkit.policy.switches import switched_off
from tests.policy.calls import Script, fake_call


@pytest.mark.parametrize(
    ("on", "qualname", "refused"),
    [
        ([], "stock.peek", False),
        (["stock.peek"], "stock.peek", True),
        (["stock.reserve"], "stock.peek", False),
    ],
)
async def test_switched_methods_are_refused_locally(on: list[str], qualname: str, refused: bool) -> None:
    terminal = Script([])
    handler = switched_off(Switches(on), qualname)(terminal)
    if refused:
        with pytest.raises(RpcError) as err:
            handler(fake_call(qualname))  # raised at once: nothing is sent, no coroutine made
        assert err.value.code is StatusCode.UNAVAILABLE and err.value.not_processed
        assert err.value.details == {"reason": "switched"} and f"meshkit switch {qualname} off" in err.value.message
        assert terminal.calls == []
    else:
        assert await handler(fake_call(qualname)) == "ok"


async def test_a_switch_changed_live_applies_to_the_next_call() -> None:
    switches = Switches()
    handler = switched_off(switches, "stock.peek")(Script([]))
    assert await handler(fake_call()) == "ok"
    switches.set("stock.peek", True)
    with pytest.raises(RpcError):
        handler(fake_call())
    switches.set("stock.peek", False)
    assert await handler(fake_call()) == "ok"
