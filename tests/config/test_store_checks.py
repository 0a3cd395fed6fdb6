"""Bad requests are refused by the store, with the same typed error on every backend, before a
backend sees them: nothing is written."""

from __future__ import annotations

import pytest

from meshkit.config import BadConfigRequest, ConfigStore
from meshkit.config.keys import MAX_KEY_LENGTH
from meshkit.errors import StatusCode


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("", "must not be empty"),
        ("a" * (MAX_KEY_LENGTH + 1), "over the limit"),
        ("has space", "a space or an unprintable"),
        ("tab\there", "a space or an unprintable"),
        ("/leading", "separated by one '/'"),
        ("trailing/", "separated by one '/'"),
        ("two//slashes", "separated by one '/'"),
        (42, "is a str"),
    ],
)
async def test_a_bad_key_is_refused_naming_what_is_wrong(key: object, says: str) -> None:
    store = ConfigStore("memory://checks")
    with pytest.raises(BadConfigRequest) as refused:
        await store.put(key, "v")  # type: ignore[arg-type]
    assert says in refused.value.message and refused.value.code == StatusCode.INVALID_ARGUMENT
    assert (await store.list()).revision == 0, "nothing was written"


async def test_a_value_over_the_limit_is_refused_before_anything_is_written() -> None:
    store = ConfigStore("memory://checks", max_value=1024)
    await store.put("ok", b"x" * 1024)
    with pytest.raises(BadConfigRequest) as refused:
        await store.put("big", b"x" * 1025)
    assert refused.value.code == StatusCode.RESOURCE_EXHAUSTED
    assert "1,025 bytes, over the store's limit of 1,024" in refused.value.message
    assert await store.get("big") is None


@pytest.mark.parametrize("value", [None, 3, ["a"]])
async def test_a_value_that_is_not_bytes_or_text_is_refused(value: object) -> None:
    with pytest.raises(BadConfigRequest, match="is bytes or str"):
        await ConfigStore("memory://checks").put("k", value)  # type: ignore[arg-type]


@pytest.mark.parametrize("revision", [-1, 1.5, "3", True])
async def test_a_revision_that_is_not_a_whole_number_is_refused(revision: object) -> None:
    store = ConfigStore("memory://checks")
    with pytest.raises(BadConfigRequest, match="is a revision"):
        await store.put("k", "v", expect=revision)  # type: ignore[arg-type]
    with pytest.raises(BadConfigRequest, match="is a revision"):
        await anext(store.watch("", since=revision))  # type: ignore[arg-type]


def test_an_unknown_scheme_is_refused_with_the_known_ones() -> None:
    with pytest.raises(BadConfigRequest) as refused:
        ConfigStore("consul://127.0.0.1:8500")
    assert "consul" in refused.value.message and "memory://" in refused.value.message
    assert isinstance(refused.value, ValueError)
