"""Random programs for three layers of interpreter objects, and the model that predicts their effect.

Pure code: a program is JSON (`{"pid": ..., "commands": [...]}`) sent to `L{layer}/{key}/interpret`; the model
says what the `counter` state of every (layer, key) and every other state entry must be once all acknowledged
programs (and everything they triggered) have run exactly once.

State names are unique to the program that writes them (`s<pid>-<n>`), so the final value of each entry does
not depend on how concurrent programs on the same object interleave; the counter only adds, so it commutes.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

LAYERS = 3
COUNTER = "counter"

Command = dict[str, Any]
Program = dict[str, Any]
ObjectId = tuple[int, str]  # (layer, key)

# Kinds whose only durable effect is +1 on the counter of the object running the program.
INCREMENTS = frozenset({"increment", "increment_indirect", "increment_delayed", "increment_awakeable"})

# Per-layer weights; the last layer cannot nest.
_WEIGHTS: tuple[dict[str, int], ...] = (
    {
        "increment": 10,
        "set": 6,
        "get": 4,
        "clear": 3,
        "run": 5,
        "run_flaky": 3,
        "sleep": 3,
        "echo": 3,
        "increment_indirect": 4,
        "increment_delayed": 3,
        "awakeable": 2,
        "increment_awakeable": 2,
        "call_next": 4,
        "send_next": 3,
    },
    {
        "increment": 10,
        "set": 5,
        "get": 3,
        "clear": 2,
        "run": 4,
        "run_flaky": 2,
        "sleep": 2,
        "echo": 2,
        "increment_indirect": 3,
        "increment_delayed": 2,
        "awakeable": 2,
        "increment_awakeable": 2,
        "call_next": 2,
        "send_next": 2,
    },
    {
        "increment": 10,
        "set": 4,
        "get": 3,
        "clear": 2,
        "run": 3,
        "run_flaky": 2,
        "sleep": 2,
        "echo": 2,
        "increment_indirect": 2,
        "increment_delayed": 2,
        "awakeable": 1,
        "increment_awakeable": 1,
    },
)


def object_name(layer: int) -> str:
    return f"FaultsL{layer}"


def key_name(index: int) -> str:
    return f"k{index}"


@dataclass(frozen=True)
class GeneratorConfig:
    keys: int = 8
    max_size: int = 8  # commands of a top-level program; nested ones get half, then a quarter
    max_sleep_ms: int = 300
    max_delay_ms: int = 400
    max_run_failures: int = 2


def generate(rng: random.Random, layer: int, pid: str, cfg: GeneratorConfig) -> Program:
    size = max(1, cfg.max_size >> layer)
    weights = _WEIGHTS[layer]
    kinds, ws = list(weights), list(weights.values())
    names = [f"s{pid}-{n}" for n in range(3)]
    local: dict[str, str | None] = {}  # what a `get` in this program must read
    commands: list[Command] = []
    for i in range(rng.randint(1, size)):
        kind = rng.choices(kinds, ws)[0]
        cmd: Command = {"kind": kind}
        if kind == "set":
            name = rng.choice(names)
            value = f"v{rng.randrange(1_000_000)}"
            cmd.update(name=name, value=value)
            local[name] = value
        elif kind == "get":
            name = rng.choice(names)
            cmd.update(name=name, expect=local.get(name))
        elif kind == "clear":
            name = rng.choice(names)
            cmd.update(name=name)
            local[name] = None
        elif kind == "sleep":
            cmd.update(ms=rng.randint(1, cfg.max_sleep_ms))
        elif kind == "increment_delayed":
            cmd.update(ms=rng.randint(1, cfg.max_delay_ms))
        elif kind == "echo":
            cmd.update(value=f"e{rng.randrange(1_000_000)}")
        elif kind == "run_flaky":
            cmd.update(failures=rng.randint(1, cfg.max_run_failures))
        elif kind in ("call_next", "send_next"):
            cmd.update(
                key=key_name(rng.randrange(cfg.keys)), program=generate(rng, layer + 1, f"{pid}.{i}", cfg)
            )
            if kind == "send_next" and rng.random() < 0.3:
                cmd.update(ms=rng.randint(1, cfg.max_delay_ms))
        commands.append(cmd)
    return {"pid": pid, "commands": commands}


@dataclass(frozen=True)
class Submission:
    """A top-level program and where it goes (always layer 0)."""

    key: str
    idempotency_key: str
    program: Program


def generate_workload(seed: int, count: int, cfg: GeneratorConfig) -> list[Submission]:
    rng = random.Random(seed)
    return [
        Submission(key_name(rng.randrange(cfg.keys)), f"prog-{seed}-{n}", generate(rng, 0, f"{n}", cfg))
        for n in range(count)
    ]


@dataclass
class Model:
    counters: Counter[ObjectId]
    state: dict[tuple[int, str, str], str]  # (layer, key, name) -> value of non-counter entries


def predict(submissions: list[Submission]) -> Model:
    model = Model(Counter(), {})
    for s in submissions:
        _apply(model, 0, s.key, s.program)
    return model


def _apply(model: Model, layer: int, key: str, program: Program) -> None:
    for cmd in program["commands"]:
        kind = cmd["kind"]
        if kind in INCREMENTS:
            model.counters[(layer, key)] += 1
        elif kind == "set":
            model.state[(layer, key, cmd["name"])] = cmd["value"]
        elif kind == "clear":
            model.state.pop((layer, key, cmd["name"]), None)
        elif kind in ("call_next", "send_next"):
            _apply(model, layer + 1, cmd["key"], cmd["program"])


def count_commands(submissions: list[Submission]) -> int:
    def walk(p: Program) -> int:
        return sum(1 + (walk(c["program"]) if "program" in c else 0) for c in p["commands"])

    return sum(walk(s.program) for s in submissions)
