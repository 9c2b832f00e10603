"""Transactional event processing from Kafka: each user's posts, read from the topic `posts` with the user
as the record key, run one after another in the order they were written (a virtual object per user), with
the downstream updates as durable steps and a delayed follow-up; other users' posts do not wait."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pyrestate.sdk as restate
from examples.effects import record
from pyrestate.sdk import ObjectContext, ObjectSharedContext

# How long after a post its follow-up runs (a minute by default; tests shorten it).
FOLLOW_UP = timedelta(milliseconds=int(os.environ.get("FOLLOW_UP_MS", "60000")))

user_feed = restate.VirtualObject("userFeed")


@user_feed.handler("processPost")
async def process_post(ctx: ObjectContext, post: dict[str, Any]) -> None:
    user = ctx.key()
    # Each step's result is journaled: after a crash the post is not created twice.
    post_id = await ctx.run("create post", lambda: create_post(user, post))
    count = (await ctx.get("posts") or 0) + 1
    ctx.set("posts", count)
    await ctx.run("update feed", lambda: record(f"feed of {user}: post {post_id} ({count} so far)"))
    ctx.object_send(follow_up, user, post_id, send_delay=FOLLOW_UP)


@user_feed.handler("followUp")
async def follow_up(ctx: ObjectContext, post_id: str) -> None:
    user = ctx.key()
    await ctx.run("notify", lambda: record(f"follow-up for {user}: post {post_id}"))


@user_feed.handler("count", kind="shared")
async def count(ctx: ObjectSharedContext) -> int:
    return int(await ctx.get("posts") or 0)


def create_post(user: str, post: dict[str, Any]) -> str:
    post_id = f"{user}-{post['seq']}"
    record(f"created post {post_id}: {post['text']}")
    return post_id


app = restate.app([user_feed])
