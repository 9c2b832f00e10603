"""pydantic models: PydanticJsonSerde, type-hint driven serde selection, and the JSON schema in the manifest,
compared with what the official SDK produces for the same service."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any, Literal

import pytest
import restate as official
from pydantic import BaseModel, Field, ValidationError

import pyrestate.sdk as ours
from pyrestate.sdk.discovery import compute_manifest


class Address(BaseModel):
    street: str
    city: str = "Berlin"


class Person(BaseModel):
    name: str = Field(description="full name")
    age: int = Field(ge=0)
    tags: list[str] = []
    address: Address | None = None
    kind: Literal["human", "robot"] = "human"


def build(sdk: ModuleType) -> list[Any]:
    svc = sdk.Service("People")

    @svc.handler()
    async def greet(ctx: Any, p: Person) -> Address:
        return Address(street=p.name)

    @svc.handler()
    async def maybe(ctx: Any, p: Person | None) -> Person | None:
        return p

    @svc.handler(name="listPeople")
    async def list_people(ctx: Any, n: int) -> list[str]:
        return []

    obj = sdk.VirtualObject("Registry")

    @obj.handler()
    async def register(ctx: Any, p: Person) -> None:
        return None

    return [svc, obj]


def test_manifest_json_schema_equals_official() -> None:
    from restate.discovery import compute_discovery_json
    from restate.endpoint import Endpoint

    ep = Endpoint()
    for s in build(official):
        ep.bind(s)
    expected = json.loads(compute_discovery_json(ep, 4, "bidi"))
    mine = compute_manifest(build(ours), 4, "BIDI_STREAM")
    expected["maxProtocolVersion"] = mine["maxProtocolVersion"]  # official speaks V7 as well
    assert mine == expected
    greet = mine["services"][0]["handlers"][0]
    assert greet["input"]["jsonSchema"]["properties"]["age"]["minimum"] == 0
    assert greet["output"]["jsonSchema"]["title"] == "Address"


def test_pydantic_serde_round_trip_matches_official() -> None:
    p = Person(name="Ada", age=36, tags=["x"], address=Address(street="Main"))
    mine, theirs = ours.PydanticJsonSerde(Person), official.serde.PydanticJsonSerde(Person)
    assert mine.serialize(p) == theirs.serialize(p)
    assert mine.deserialize(mine.serialize(p)) == p
    assert mine.deserialize(b"") is None and mine.serialize(None) == b""
    with pytest.raises(ValidationError):
        mine.deserialize(b'{"name": "x", "age": -1}')


def test_default_serde_picks_pydantic_from_type_hints() -> None:
    [svc, _] = build(ours)
    io = svc.handlers["greet"].handler_io
    assert isinstance(io.input_serde, ours.PydanticJsonSerde)
    assert io.input_serde.deserialize(b'{"name": "Bo", "age": 3}') == Person(name="Bo", age=3)
    assert io.output_serde.serialize(Address(street="S")) == b'{"street":"S","city":"Berlin"}'
    maybe = svc.handlers["maybe"].handler_io
    assert maybe.input_serde.deserialize(b'{"name": "Bo", "age": 3}') == Person(name="Bo", age=3)
    assert maybe.input_serde.deserialize(b"") is None


async def test_state_and_run_use_pydantic_type_hints() -> None:
    serde = ours.DefaultSerde(Person)
    raw = serde.serialize(Person(name="Cy", age=1))
    assert serde.deserialize(raw) == Person(name="Cy", age=1)
    assert ours.DefaultSerde().serialize(Person(name="Cy", age=1)) == raw
