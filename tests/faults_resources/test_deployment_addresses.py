"""Deployment addresses and their secrets, through a real server: a cloud metadata address is refused at
registration (400, the admin error shape) and never contacted; credentials in a deployment URI and the
values of its additional headers are used for invoking but shown as `***` in `/deployments`, the console
and `sys_deployment`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from resfaults_apps import counter_app

from pyrestate.testing import LocalRestate, RuntimeConfig, local_restate, register_deployment

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def env() -> Iterator[LocalRestate]:
    with local_restate(counter_app) as e:
        yield e


@pytest.mark.parametrize(
    "uri",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]:9080/",
        "http://[::ffff:169.254.169.254]/",
        "http://100.100.100.200/",
    ],
)
def test_metadata_addresses_are_refused_at_registration(env: LocalRestate, uri: str) -> None:
    with httpx.Client(base_url=env.admin_url, timeout=30) as c:
        r = c.post("/deployments", json={"uri": uri})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    message = r.json()["message"]
    assert message.startswith("The request field 'uri' is invalid. Reason:") and "not allowed" in message


def test_credentials_are_used_but_never_shown(env: LocalRestate) -> None:
    url = env.apps[0].url
    with_userinfo = url.replace("http://", "http://operator:s3cret-pass@", 1)
    dep = register_deployment(
        env.admin_url, with_userinfo, additional_headers={"authorization": "Bearer t0ken-value"}
    )
    with httpx.Client(base_url=env.admin_url, timeout=30) as admin:
        shown = [
            admin.get("/deployments").text,
            admin.get(f"/deployments/{dep['id']}").text,
            admin.get("/ui").text,
            admin.post(
                "/query",
                json={"query": "SELECT endpoint FROM sys_deployment"},
                headers={"accept": "application/json"},
            ).text,
        ]
        listed = admin.get(f"/deployments/{dep['id']}").json()
    for text in shown:
        assert "s3cret-pass" not in text and "t0ken-value" not in text and "operator" not in text
    assert listed["uri"].startswith("http://***@127.0.0.1:")
    assert listed["additional_headers"] == {"authorization": "***"}
    with httpx.Client(base_url=env.ingress_url, timeout=30) as c:  # still invoked with what was given
        assert c.post("/DiskCounter/creds/add", json=1).json() == 1


def test_an_allow_list_refuses_what_it_does_not_name() -> None:
    config = RuntimeConfig(extra_env={"PYRESTATE_DEPLOYMENT_ALLOW": "10.0.0.0/8"})
    with local_restate(config=config) as e, httpx.Client(base_url=e.admin_url, timeout=30) as c:
        r = c.post("/deployments", json={"uri": "http://127.0.0.1:9/"})
        assert r.status_code == 400 and "--deployment-allow" in r.json()["message"], r.text
