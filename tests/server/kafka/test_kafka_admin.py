"""The subscription admin API answers as the official server 1.7.12 did (official_admin_answers.json):
JSON shapes, defaulted options, errors; list filters, get and delete of created subscriptions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conftest import Broker, Server

CASES = json.loads((Path(__file__).parent / "official_admin_answers.json").read_text())["cases"]


def _expect(value: Any, new_id: str, broker: str) -> Any:
    text = json.dumps(value).replace("<id>", new_id).replace("<broker>", broker)
    return json.loads(text)


def test_answers_match_the_official_server(broker: Broker, server: Server) -> None:
    created = []
    for case in CASES:
        r = server.admin(case["method"], case["path"], case.get("body"))
        assert r.status_code == case["status"], (case, r.text)
        if "text_prefix" in case:
            assert r.headers["content-type"].startswith("text/plain"), case
            assert r.text.startswith(case["text_prefix"]), (case, r.text)
            continue
        got = r.json()
        new_id = got.get("id", "") if isinstance(got, dict) else ""
        assert got == _expect(case["json"], new_id, broker.bootstrap), case
        if case.get("location"):
            assert new_id.startswith("sub_1") and len(new_id) == len("sub_17paZDaIjSjFAlNncahvrGh")
            assert r.headers["location"] == f"subscriptions/{new_id}"
            created.append(got)

    listed = server.admin("GET", "/subscriptions").json()["subscriptions"]
    assert sorted(s["id"] for s in listed) == sorted(s["id"] for s in created)
    by_sink = server.admin("GET", "/subscriptions?sink=service://Sink/handle").json()["subscriptions"]
    assert [s["sink"] for s in by_sink] == ["service://Sink/handle"]
    by_source = server.admin("GET", "/subscriptions?source=kafka://my-cluster/topic-b").json()
    assert [s["source"] for s in by_source["subscriptions"]] == ["kafka://my-cluster/topic-b"]
    both = "/subscriptions?sink=service://Sink/handle&source=kafka://my-cluster/topic-a"
    assert server.admin("GET", both).json() == {"subscriptions": []}
    one = created[0]
    assert server.admin("GET", f"/subscriptions/{one['id']}").json() == one
    with_subs = server.admin("GET", "/kafka-clusters/my-cluster?include_subscriptions=true").json()
    assert sorted(s["id"] for s in with_subs["subscriptions"]) == sorted(s["id"] for s in created)
    assert server.admin("DELETE", f"/subscriptions/{one['id']}").status_code == 202
    assert server.admin("GET", f"/subscriptions/{one['id']}").status_code == 404
    assert server.admin("DELETE", f"/subscriptions/{one['id']}").status_code == 404
