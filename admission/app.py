"""The booking API: ``create_app(settings)`` builds its aiohttp application."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from admission import (
    admin,
    appointments,
    audit,
    calendar,
    changes,
    claim_page,
    eligibility,
    holds,
    identity,
    manage,
    pages,
    queries,
    reminders,
    reports,
    rules,
    search,
    supply,
    support,
    waitlist,
)
from admission.auth import (
    CLAIMS_PATH,
    MANAGE_LINKS_PATH,
    UNSUBSCRIBE_PREFIX,
    cors_middleware,
    throttle_middleware,
    token_middleware,
)
from admission.availability import Availability, Cache
from admission.freeze import Freezes
from admission.keys import (
    ARQ,
    AVAILABILITY,
    CODEC,
    FREEZES,
    IDENTITIES,
    METRICS,
    POOL,
    READS,
    RULEBOOK,
    SETTINGS,
    THROTTLE,
    TOKEN_FAILURES,
    VAULT,
    WAITLIST,
)
from admission.throttle import REDIS_TIMEOUT_S, Throttle
from shared.db import create_pool
from shared.eligibility import RuleBook
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
from shared.identity import Identities
from shared.idp import IdentityProvider
from shared.limits import parse_networks
from shared.manage import MANAGE_PATH
from shared.metrics import Metrics
from shared.persons import PersonVault
from shared.redis import create_arq_pool, create_redis, refuse_cluster
from shared.replica import Reads
from shared.settings import Settings, SettingsError
from shared.staff import STAFF, StaffDirectory
from shared.token_failures import TokenFailureCounter, flush_loop
from shared.tokens import TokenCodec
from shared.waitlist import Waitlist, WaitlistPolicy


def create_app(
    settings: Settings, *, metrics: Metrics | None = None, clock: Callable[[], float] = time.time
) -> web.Application:
    """The booking API app. ``clock`` is the rate limits' time (tests inject one)."""
    settings.require_keys()
    settings.require_admin()
    try:
        trusted = parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise SettingsError(f"SURGEGATE_TRUSTED_PROXIES: {exc}") from None
    metrics = metrics or Metrics()
    app = web.Application(
        middlewares=[
            http_metrics_middleware(metrics, "api"),
            cors_middleware,
            problem_middleware,
            token_middleware,
            throttle_middleware,
        ],
        client_max_size=settings.max_body_bytes,
        handler_args=server_handler_args(),
    )
    add_security_headers(app)  # the strictest policy; the few pages (admission/pages.py) set their own
    app[SETTINGS] = settings
    app[STAFF] = StaffDirectory(settings.admin_tokens, idp=IdentityProvider.from_settings(settings))
    app[METRICS] = metrics
    app[CODEC] = TokenCodec(settings.secret_keys, leeway_s=settings.token_leeway_s)
    app[VAULT] = PersonVault.from_settings(settings)
    app[AVAILABILITY] = Availability(Cache(settings.search_cache_s))
    app[FREEZES] = Freezes()
    app[TOKEN_FAILURES] = TokenFailureCounter()
    app[IDENTITIES] = Identities(  # issue 10: the ID tokens of each event's identity provider
        leeway_s=settings.token_leeway_s, max_age_s=settings.idp_jwks_max_age_s, refetch_s=settings.idp_jwks_refetch_s
    )
    app[RULEBOOK] = RuleBook(settings.eligibility_refresh_s)
    app[WAITLIST] = Waitlist(app[CODEC], app[VAULT], WaitlistPolicy.from_settings(settings))

    async def resources_ctx(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await create_pool(settings.require_database(), min_size=1, max_size=10)
        app[STAFF].use_pool(app[POOL])
        replica = None
        if settings.database_replica_url:  # min_size 0: a replica down at start is a fallback, not a failure
            replica = await create_pool(settings.database_replica_url, min_size=0, max_size=10)
        app[READS] = Reads(app[POOL], replica, max_lag_s=settings.replica_max_lag_s, metrics=app[METRICS])
        # The queue and the API's buckets on one single Redis (a take spans a token's and a client's
        # bucket in one script: keys of no common hash slot, so never on a cluster).
        app[ARQ] = await create_arq_pool(settings.require_queue_redis(), settings.queue_name)
        try:
            await refuse_cluster(app[ARQ])
        except SettingsError:
            await app[ARQ].aclose()
            raise
        limits_redis = create_redis(settings.require_queue_redis(), timeout_s=REDIS_TIMEOUT_S)
        app[THROTTLE] = Throttle(limits_redis, settings, trusted, app[METRICS], clock=clock)
        flusher = asyncio.create_task(flush_loop(app[TOKEN_FAILURES], limits_redis))
        try:
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await app[TOKEN_FAILURES].flush(limits_redis)  # what the last second counted
            await limits_redis.aclose()
            await app[ARQ].aclose()
            if replica is not None:
                await replica.close()
            await app[POOL].close()
            app[STAFF].use_pool(None)
            await app[STAFF].close()
            await app[IDENTITIES].close()

    app.cleanup_ctx.append(resources_ctx)

    async def readyz(request: web.Request) -> web.Response:
        await request.app[ARQ].ping()
        async with request.app[POOL].acquire() as con:
            await con.fetchval(queries.PING)
        return json_response({"status": "ready"})

    r = app.router
    r.add_get("/api/v1/sites", search.list_sites)
    r.add_get("/api/v1/slots", search.list_slots)
    r.add_get("/api/v1/slots/next", search.next_available)
    r.add_post("/api/v1/holds", holds.post_hold)
    r.add_get("/api/v1/holds/{hold_id}", holds.get_hold)
    r.add_delete("/api/v1/holds/{hold_id}", holds.delete_hold)
    r.add_post("/api/v1/appointments", appointments.create_appointment)
    r.add_get("/api/v1/appointments/{appointment_id}", appointments.get_appointment)
    r.add_delete("/api/v1/appointments/{appointment_id}", changes.cancel_appointment)
    r.add_post("/api/v1/appointments/{appointment_id}/reschedule", changes.reschedule_appointment)
    r.add_get("/api/v1/appointments/{appointment_id}/calendar.ics", calendar.get_calendar)
    r.add_get(UNSUBSCRIBE_PREFIX + "{token}", reminders.ask)
    r.add_post(UNSUBSCRIBE_PREFIX + "{token}", reminders.unsubscribe)
    r.add_get("/api/v1/attempts/{attempt_id}", appointments.get_attempt)
    r.add_post("/api/v1/waitlist", waitlist.join_waitlist)
    r.add_delete("/api/v1/waitlist/{entry_id}", waitlist.leave_waitlist)
    r.add_post(CLAIMS_PATH, waitlist.claim_offer)
    r.add_post(MANAGE_LINKS_PATH, manage.request_link)
    r.add_get(MANAGE_PATH, manage.open_link)
    r.add_post(MANAGE_PATH, manage.request_link_form)
    r.add_get(f"{MANAGE_PATH}/{{appointment_id}}", manage.show)
    r.add_post(f"{MANAGE_PATH}/{{appointment_id}}/cancel", manage.cancel)
    r.add_get(f"{MANAGE_PATH}/{{appointment_id}}/reschedule", manage.reschedule_form)
    r.add_get(f"{MANAGE_PATH}/{{appointment_id}}/calendar.ics", manage.calendar)
    r.add_post(f"{MANAGE_PATH}/{{appointment_id}}/reschedule", manage.reschedule)
    r.add_get("/manage.css", pages.stylesheet)
    r.add_get(claim_page.CLAIM_PATH, claim_page.open_claim)
    r.add_post(claim_page.CLAIM_PATH, claim_page.claim)
    r.add_post(f"{claim_page.CLAIM_PATH}/book", claim_page.book)
    r.add_post("/admin/v1/sites", admin.post_site)
    r.add_post("/admin/v1/slots", admin.post_slots)
    r.add_get("/admin/v1/slots/{slot_id}", admin.get_slot)
    r.add_get("/admin/v1/appointment-types", supply.list_types)
    r.add_put("/admin/v1/appointment-types/{type_id}", supply.put_type)
    r.add_get("/admin/v1/sites/{site_id}/schedules/{type_id}", supply.get_schedule)
    r.add_put("/admin/v1/sites/{site_id}/schedules/{type_id}", supply.put_schedule)
    r.add_put("/admin/v1/sites/{site_id}/overrides/{day}", supply.put_override)
    r.add_delete("/admin/v1/sites/{site_id}/overrides/{day}", supply.delete_override)
    r.add_post("/admin/v1/sites/{site_id}/generate", supply.post_generate)
    r.add_post("/admin/v1/sites/{site_id}/closures", supply.close_day)
    r.add_post("/admin/v1/import/sites", supply.import_sites)
    r.add_post("/admin/v1/import/schedules", supply.import_schedules)
    r.add_post("/admin/v1/appointments/{appointment_id}/check-in", supply.check_in)
    r.add_post("/admin/v1/support/lookup", support.lookup)
    r.add_post("/admin/v1/support/appointments/{appointment_id}/cancel", support.cancel)
    r.add_post("/admin/v1/support/appointments/{appointment_id}/reschedule", support.reschedule)
    r.add_post("/admin/v1/support/appointments/{appointment_id}/clear-review", support.clear_review)
    r.add_get("/admin/v1/events/{event_id}/eligibility/flagged", support.flagged)
    r.add_post("/api/v1/events/{event_id}/eligibility:evaluate", eligibility.evaluate)
    r.add_get("/api/v1/events/{event_id}/eligibility/decisions/{decision_id}", eligibility.get_decision)
    r.add_post("/admin/v1/events/{event_id}/rules", rules.create_rules)
    r.add_get("/admin/v1/events/{event_id}/rules", rules.list_rules)
    r.add_get("/admin/v1/events/{event_id}/rules/diff", rules.diff_rules)
    r.add_get("/admin/v1/events/{event_id}/rules/shadow-report", rules.shadow_report)
    r.add_post("/admin/v1/events/{event_id}/rules/rollback", rules.rollback_rules)
    r.add_post("/admin/v1/events/{event_id}/rules/replay", rules.replay)
    r.add_get("/admin/v1/events/{event_id}/rules/{version}", rules.get_rules)
    r.add_post("/admin/v1/events/{event_id}/rules/{version}/publish", rules.publish_rules)
    r.add_post("/admin/v1/events/{event_id}/rules/{version}/shadow", rules.shadow_rules)
    r.add_get("/admin/v1/eligibility/decisions/{decision_id}", rules.support_decision)
    r.add_post("/admin/v1/eligibility/decisions/{decision_id}/override", rules.override_decision)
    r.add_get("/admin/v1/reports/{kind}", reports.get_report)
    r.add_get("/admin/v1/audit", audit.list_audit)
    r.add_get("/admin/v1/events/{event_id}/identity", identity.get_identity)
    r.add_put("/admin/v1/events/{event_id}/identity", identity.put_identity)
    r.add_delete("/admin/v1/events/{event_id}/identity", identity.delete_identity)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics_handler(app[METRICS]))
    r.add_get("/openapi.json", openapi_document("admission"))
    return app
