"""A service on the official Python SDK that accepts only requests signed by the key in $IDENTITY_KEY."""

from __future__ import annotations

import os

import restate

greeter = restate.Service("OfficialIdentityGreeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"hello {name}"


app = restate.app([greeter], identity_keys=[os.environ["IDENTITY_KEY"]])
