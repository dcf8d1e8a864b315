"""Typed application keys of the edge app."""

from __future__ import annotations

import asyncio

from aiohttp import web

from shared.limits import Buckets, IPNetwork, Limit
from shared.metrics import Metrics
from shared.settings import Settings
from waitingroom.booking_figures import BookingFigures
from waitingroom.room import Room
from waitingroom.trends import Trends

ROOM = web.AppKey("room", Room)
TRENDS = web.AppKey("trends", Trends)
BOOKING_FIGURES = web.AppKey("booking_figures", BookingFigures)  # the console's cache
CLOSING = web.AppKey("closing", asyncio.Event)  # set on shutdown: live streams end (console.py)
SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
LIMITER = web.AppKey("join_limiter", Buckets)
JOIN_LIMIT = web.AppKey("join_limit", Limit)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[IPNetwork, ...])
