"""Typed application keys of the booking API."""

from __future__ import annotations

import uuid

import asyncpg
from aiohttp import web
from arq.connections import ArqRedis

from admission.availability import Availability
from admission.freeze import Freezes
from admission.throttle import Throttle
from shared.eligibility import RuleBook
from shared.identity import Identities
from shared.metrics import Metrics
from shared.persons import PersonVault
from shared.replica import Reads
from shared.settings import Settings
from shared.token_failures import TokenFailureCounter
from shared.tokens import Admission, TokenCodec
from shared.waitlist import Waitlist

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
CODEC = web.AppKey("codec", TokenCodec)
VAULT = web.AppKey("vault", PersonVault)
POOL = web.AppKey("pool", asyncpg.Pool)
ARQ = web.AppKey("arq", ArqRedis)
AVAILABILITY = web.AppKey("availability", Availability)
WAITLIST = web.AppKey("waitlist", Waitlist)
THROTTLE = web.AppKey("throttle", Throttle)
FREEZES = web.AppKey("freezes", Freezes)
TOKEN_FAILURES = web.AppKey("token_failures", TokenFailureCounter)  # flushed to Redis for the console
IDENTITIES = web.AppKey("identities", Identities)
RULEBOOK = web.AppKey("rulebook", RuleBook)
READS = web.AppKey("reads", Reads)  # search and reports: the replica while it keeps up, else POOL

ADMISSION = web.RequestKey("admission", Admission)  # the verified token of this request
MANAGED = web.RequestKey("managed", uuid.UUID)  # the appointment a verified manage credential names


def admission_of(request: web.Request) -> Admission:
    admission: Admission = request[ADMISSION]
    return admission
