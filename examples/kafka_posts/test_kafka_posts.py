"""End to end on a real broker (tansu): the Kafka cluster is registered through the admin API, a subscription
sends the topic `posts` to the `userFeed` object; each user's posts run in the order written, each step once,
and every post gets its delayed follow-up."""

from __future__ import annotations

import uuid

import pytest

from examples._harness import DeployFn, Deployment
from examples._kafka import KafkaBroker


@pytest.fixture(scope="module")
def dep(deploy: DeployFn) -> Deployment:
    return deploy("kafka_posts", env={"FOLLOW_UP_MS": "500"})


def test_posts_per_user_in_order_with_follow_ups(
    kafka: KafkaBroker, dep: Deployment, runtime_admin_url: str
) -> None:
    kafka.create_topic("posts", partitions=2)
    with kafka.subscription(runtime_admin_url, "posts", "service://userFeed/processPost"):
        users = [f"u{i}-{uuid.uuid4().hex[:4]}" for i in range(3)]
        kafka.produce("posts", [(u, {"seq": n, "text": f"post {n} of {u}"}) for n in range(4) for u in users])
        # The first consumer group join on tansu takes a while (up to ~30 s with the official server).
        dep.effects.wait_for(lambda lines: sum("follow-up for" in x for x in lines) >= 12, timeout=120)
        for u in users:
            created = [x for x in dep.effects.lines() if x.startswith(f"created post {u}-")]
            assert created == [f"created post {u}-{n}: post {n} of {u}" for n in range(4)]
            feed = [x for x in dep.effects.lines() if x.startswith(f"feed of {u}:")]
            assert feed == [f"feed of {u}: post {u}-{n} ({n + 1} so far)" for n in range(4)]
            assert sorted(x for x in dep.effects.lines() if x.startswith(f"follow-up for {u}:")) == [
                f"follow-up for {u}: post {u}-{n}" for n in range(4)
            ]
            assert dep.ingress.call_json("userFeed", "count", key=u) == 4
