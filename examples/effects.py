"""What the examples' stand-in external systems (mail, payment provider, ledgers) do, made observable.

Every side effect is printed (the service log then reads like the logs of the documentation) and, when
EXAMPLES_EFFECTS_FILE names a file, appended to it as one line: the end-to-end tests count these lines to
check that each effect happened exactly once.

`maybe_crash` lets a test arm a simulated process crash at a named point by creating the file
`crash-<point>` in EXAMPLES_CONTROL_DIR; the file is consumed so the crash happens once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def record(line: str) -> None:
    # One write: concurrent handler threads would otherwise interleave a line and its newline.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    path = os.environ.get("EXAMPLES_EFFECTS_FILE")
    if path:
        # One write(2) per line on an O_APPEND file: concurrent handlers never interleave within a line.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def maybe_crash(point: str) -> None:
    control = os.environ.get("EXAMPLES_CONTROL_DIR")
    if not control:
        return
    trigger = Path(control) / f"crash-{point}"
    try:
        trigger.unlink()
    except FileNotFoundError:
        return
    print(f"A failure happened! (simulated crash at {point})", flush=True)
    os._exit(1)
