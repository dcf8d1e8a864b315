"""The edge service: ``create_app(settings)`` builds the waiting room's aiohttp application."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from shared.db import create_pool
from shared.http import (
    add_security_headers,
    healthz,
    http_metrics_middleware,
    json_response,
    metrics_handler,
    openapi_document,
    problem_middleware,
    server_handler_args,
)
from shared.idp import IdentityProvider
from shared.limits import Buckets, Limit, parse_networks
from shared.manage import manage_url
from shared.metrics import Metrics
from shared.redis import connect_redis, create_redis
from shared.settings import Settings, SettingsError
from shared.staff import STAFF, StaffDirectory
from shared.tokens import TokenCodec
from waitingroom import admin, console, eligibility, page, views
from waitingroom.booking_figures import BookingFigures
from waitingroom.keys import (
    BOOKING_FIGURES,
    CLOSING,
    JOIN_LIMIT,
    LIMITER,
    METRICS,
    ROOM,
    SETTINGS,
    TRENDS,
    TRUSTED_PROXIES,
)
from waitingroom.page import STATIC
from waitingroom.room import Clock, Room
from waitingroom.trends import Trends


def create_app(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    clock: Clock = time.time,
    run_ticker: bool = True,
) -> web.Application:
    """The waiting room app. ``run_ticker=False`` leaves admission ticks to the caller (tests)."""
    settings.require_keys()
    settings.require_admin()
    metrics = metrics or Metrics()
    app = web.Application(
        middlewares=[http_metrics_middleware(metrics, "edge"), problem_middleware],
        client_max_size=settings.max_body_bytes,
        handler_args=server_handler_args(),
    )
    add_security_headers(app, page.content_security_policy(settings))
    app[SETTINGS] = settings
    app[STAFF] = StaffDirectory(settings.admin_tokens, idp=IdentityProvider.from_settings(settings))
    app[METRICS] = metrics
    app[TRENDS] = Trends()
    app[BOOKING_FIGURES] = BookingFigures()
    app[CLOSING] = asyncio.Event()
    app.on_shutdown.append(console.close_streams)
    app[JOIN_LIMIT] = Limit(settings.join_limit_per_min, settings.join_limit_burst)
    try:
        app[TRUSTED_PROXIES] = parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise SettingsError(f"SURGEGATE_TRUSTED_PROXIES: {exc}") from None

    async def resources_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(settings.require_database(), min_size=1, max_size=4)
        app[STAFF].use_pool(pool)
        redis = await connect_redis(settings.require_redis())  # a cluster client if the server is one
        queue_redis = redis
        if settings.queue_redis_url and settings.queue_redis_url != settings.redis_url:
            queue_redis = create_redis(settings.queue_redis_url)
        codec = TokenCodec(settings.secret_keys, leeway_s=settings.token_leeway_s, clock=clock)
        room = Room(
            settings=settings,
            pool=pool,
            redis=redis,
            codec=codec,
            metrics=app[METRICS],
            clock=clock,
            queue_redis=queue_redis,
        )
        # The page's confirmation on reload carries the appointment's manage link (shared/manage.py).
        room.manage_link = functools.partial(manage_url, settings)
        await room.refresh_events()
        app[ROOM] = room
        app[LIMITER] = Buckets(redis)
        ticker = asyncio.create_task(room.run()) if run_ticker else None
        try:
            yield
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            if queue_redis is not redis:
                await queue_redis.aclose()
            await redis.aclose()
            await pool.close()
            app[STAFF].use_pool(None)
            await app[STAFF].close()

    app.cleanup_ctx.append(resources_ctx)
    app.cleanup_ctx.append(eligibility.session_ctx)  # issue 10: the eligibility step's client to the API
    if run_ticker:  # the sparklines' recorder: like the ticker, left to the caller in tests
        app.cleanup_ctx.append(console.trends_ctx)

    async def readyz(request: web.Request) -> web.Response:
        await request.app[ROOM].check_ready()
        return json_response({"status": "ready"})

    app.router.add_post("/api/v1/events/{event_id}/join", views.join)
    app.router.add_get("/api/v1/events/{event_id}/status", views.status)
    app.router.add_get("/api/v1/events/{event_id}/challenge", views.challenge)
    app.router.add_put("/admin/v1/events/{event_id}", admin.put_event)
    app.router.add_get("/admin/v1/events/{event_id}", admin.get_event)
    app.router.add_delete("/admin/v1/events/{event_id}", admin.close_event)
    app.router.add_get("/admin/v1/events", admin.list_events)
    app.router.add_get("/admin/v1/events/{event_id}/lottery", admin.get_lottery)
    app.router.add_get("/admin/v1/live", console.live)
    app.router.add_get("/admin/v1/actions", console.recent_actions)
    app.router.add_get("/admin", console.console_page)
    app.router.add_post("/admin/v1/events/{event_id}/invites", admin.post_invites)
    app.router.add_get("/admin/v1/events/{event_id}/invites", admin.get_invites)
    app.router.add_delete("/admin/v1/events/{event_id}/invites/{batch}", admin.delete_invites)
    app.router.add_post("/api/v1/events/{event_id}/invites:redeem", views.redeem_invite)
    app.router.add_get("/e/{event_id}", page.queue_page)
    app.router.add_post("/e/{event_id}/join", page.join_form)
    app.router.add_post("/api/v1/events/{event_id}/eligibility:evaluate", eligibility.evaluate)  # issue 10
    app.router.add_post("/e/{event_id}/eligibility", eligibility.evaluate_form)  # issue 10, without JavaScript
    app.router.add_get("/e/{event_id}/invite", page.queue_page)  # the page redeems the link's fragment
    app.router.add_get("/", page.index)
    app.router.add_static("/static", Path(str(STATIC)))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler(app[METRICS]))
    app.router.add_get("/openapi.json", openapi_document("waitingroom"))
    return app
