"""The booking API: ``create_app(settings)`` builds its aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from admission import admin, appointments, search
from admission.auth import cors_middleware, token_middleware
from admission.keys import ARQ, CODEC, METRICS, POOL, SETTINGS, VAULT
from shared.db import create_pool
from shared.http import healthz, json_response, metrics_handler, problem_middleware
from shared.metrics import Metrics
from shared.persons import PersonVault, person_key_of
from shared.redis import create_arq_pool
from shared.settings import Settings
from shared.tokens import TokenCodec


def create_app(settings: Settings, *, metrics: Metrics | None = None) -> web.Application:
    settings.require_keys()
    settings.require_admin()
    app = web.Application(
        middlewares=[cors_middleware, problem_middleware, token_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics or Metrics()
    app[CODEC] = TokenCodec(settings.secret_keys, leeway_s=settings.token_leeway_s)
    app[VAULT] = PersonVault(person_key_of(settings))

    async def resources_ctx(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await create_pool(settings.require_database(), min_size=1, max_size=10)
        app[ARQ] = await create_arq_pool(settings.require_redis(), settings.queue_name)
        try:
            yield
        finally:
            await app[ARQ].aclose()
            await app[POOL].close()

    app.cleanup_ctx.append(resources_ctx)

    async def readyz(request: web.Request) -> web.Response:
        await request.app[ARQ].ping()
        async with request.app[POOL].acquire() as con:
            await con.fetchval("SELECT 1")
        return json_response({"status": "ready"})

    r = app.router
    r.add_get("/api/v1/sites", search.list_sites)
    r.add_get("/api/v1/slots", search.list_slots)
    r.add_post("/api/v1/appointments", appointments.create_appointment)
    r.add_get("/api/v1/appointments/{appointment_id}", appointments.get_appointment)
    r.add_delete("/api/v1/appointments/{appointment_id}", appointments.cancel_appointment)
    r.add_get("/api/v1/attempts/{attempt_id}", appointments.get_attempt)
    r.add_post("/admin/v1/sites", admin.post_site)
    r.add_post("/admin/v1/slots", admin.post_slots)
    r.add_get("/admin/v1/slots/{slot_id}", admin.get_slot)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics_handler(app[METRICS]))
    return app
