"""The CLIs' admin client against a real HTTP server that answers as a proxy in front of a stopped
service would: an HTML error page, not problem+json."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from surgegate.admin_client import AdminRefused, call, send
from surgegate.embedded import free_port


@pytest.fixture
async def proxy_url() -> AsyncIterator[str]:
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", bad_gateway)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_an_html_error_page_is_reported_not_a_traceback(
    proxy_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await asyncio.to_thread(call, "supply", proxy_url, "POST", "/admin/v1/sites", "t", {"x": 1})
    assert code == 1
    assert "surgegate supply: 502" in capsys.readouterr().err
    with pytest.raises(AdminRefused) as refused:
        await asyncio.to_thread(send, proxy_url, "GET", "/admin/v1/events", "t")
    assert refused.value.status == 502 and refused.value.problem["detail"] == "Bad Gateway"


async def test_invites_report_an_html_error_page_too(proxy_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from surgegate.invite_cli import _request

    ok, _ = await asyncio.to_thread(_request, proxy_url, "GET", "/admin/v1/events/ev/invites", "t")
    assert not ok and "surgegate event invites: 502" in capsys.readouterr().err
