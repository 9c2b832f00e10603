"""The upload client: start the workflow, wait up to a timeout for the URL, else have it emailed.

    python -m examples.sync_to_async.client <upload-id> <email> [--timeout 5]
"""

from __future__ import annotations

import argparse
import os

import httpx

RESTATE_URL = os.environ.get("RESTATE_URL", "http://localhost:8080")


def upload(upload_id: str, email: str, timeout: float) -> None:
    with httpx.Client(base_url=RESTATE_URL) as client:
        # Submit the workflow (runs once per id), then wait for its result for a while.
        client.post(f"/dataUploader/{upload_id}/run/send").raise_for_status()
        try:
            r = client.get(f"/restate/workflow/dataUploader/{upload_id}/attach", timeout=timeout)
            r.raise_for_status()
            print(f"Fast upload: URL was {r.json()}", flush=True)
        except httpx.TimeoutException:
            print("Slow upload... Mail the link later", flush=True)
            client.post(f"/dataUploader/{upload_id}/sendEmail", json={"email": email},
                        timeout=None).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("upload_id")
    parser.add_argument("email")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    upload(args.upload_id, args.email, args.timeout)


if __name__ == "__main__":
    main()
