"""Sync to async: a data upload workflow whose caller waits a while, then asks for the link by email."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import pyrestate.sdk as restate
from examples.effects import record
from pyrestate.sdk import WorkflowContext, WorkflowSharedContext

UPLOAD_SECONDS = float(os.environ.get("UPLOAD_SECONDS", "10"))

data_upload_workflow = restate.Workflow("dataUploader")


@data_upload_workflow.main()
async def run(ctx: WorkflowContext) -> str:
    url = await ctx.run("create S3 bucket", create_s3_bucket)
    await ctx.run("upload data", lambda: upload_data(url))
    # Whoever asked for an email meanwhile is waiting on this durable promise.
    await ctx.promise("url").resolve(url)
    return url


@data_upload_workflow.handler("sendEmail")
async def send_email(ctx: WorkflowSharedContext, req: dict[str, Any]) -> None:
    url: str = await ctx.promise("url").value()
    await ctx.run("send email", lambda: email(req["email"], url))


def create_s3_bucket() -> str:
    url = f"https://s3-eu-central-1.example.com/{uuid.uuid4()}"
    record(f"Created bucket {url}")
    return url


async def upload_data(url: str) -> None:
    await asyncio.sleep(UPLOAD_SECONDS)  # a slow upload, as far as the caller can tell
    record(f"Uploaded data to {url}")


def email(address: str, url: str) -> None:
    record(f"Sent email to {address} with link {url}")


app = restate.app([data_upload_workflow])
