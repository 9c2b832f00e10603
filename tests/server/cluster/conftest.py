from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cluster_support import Stack, server, service_app

from pyrestate.testing import register_deployment


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("cluster")
    side = tmp / "side"
    srv = server(tmp)
    app = service_app(tmp, side)
    srv.start()
    try:
        app.start()
        register_deployment(srv.admin_url, app.url)
        with (
            httpx.Client(base_url=srv.ingress_url, timeout=60) as ingress,
            httpx.Client(base_url=srv.admin_url, timeout=60) as admin,
        ):
            yield Stack(srv, app, side, ingress, admin)
    finally:
        app.close()
        srv.close()
