"""Typed application keys of the edge app."""

from __future__ import annotations

from aiohttp import web

from shared.metrics import Metrics
from shared.settings import Settings
from waitingroom.room import Room

ROOM = web.AppKey("room", Room)
SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
