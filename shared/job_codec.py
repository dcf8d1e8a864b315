"""JSON for arq's jobs and results, in place of arq's default pickle.

Whoever can write to Redis can write ``arq:job:{id}``, and arq's default ``pickle.loads`` runs
whatever code those bytes name, as the worker's user. JSON carries data only. Both functions go to
every arq object that writes or reads jobs or results: the worker (``WorkerSettings``) and every
``ArqRedis`` pool (``shared.redis.create_arq_pool``, ``shared.redis.job_of``).

:func:`loads` also checks the envelope, so bytes that are not one of our jobs fail (arq stores a
failed result and logs it) before any function runs:

* a job: ``{"f": name, "a": [] or [object], "k": {}, "t": int or null, "et": int}`` — every job of
  this project takes at most one argument, a typed job's ``to_dict()`` (``shared.booking.BookingJob``),
  which the job function checks in turn;
* a result: the same keys plus ``"s"`` (bool), ``"r"`` (any JSON), ``"st"``, ``"ft"`` (int) and
  optionally ``"q"``, ``"id"`` (str).

A failed job's exception is stored as ``{"error": "<its class name>"}``: the class is what a reader
of the result needs (arq's log has the message and traceback), and a message may quote data.
"""

from __future__ import annotations

import json
from typing import Any

JOB_KEYS = frozenset({"f", "a", "k", "t", "et"})
RESULT_KEYS = JOB_KEYS | {"s", "r", "st", "ft", "q", "id"}
RESULT_REQUIRED = RESULT_KEYS - {"q", "id"}  # arq reads these two with a default


class NotAJob(ValueError):
    """Bytes under an arq key that are not a job or result of ours."""


def dumps(data: dict[str, Any]) -> bytes:
    """arq's ``job_serializer``: a job's or a result's envelope as JSON (tuples become arrays)."""
    return json.dumps(data, default=_exception_as_json, separators=(",", ":"), allow_nan=False).encode()


def _exception_as_json(value: object) -> dict[str, str]:
    if isinstance(value, BaseException):
        return {"error": type(value).__name__}
    # arq catches this, logs it and stores "unable to serialize result" as a failure instead
    raise TypeError(f"a {type(value).__name__} is not JSON")


def loads(raw: bytes) -> dict[str, Any]:
    """arq's ``job_deserializer``: the envelope, or :class:`NotAJob` (arq then fails the job unrun)."""
    try:
        data = json.loads(raw)  # a ValueError (JSONDecodeError, UnicodeDecodeError) if not JSON
    except RecursionError:
        raise NotAJob("not a job of ours: nested too deeply") from None
    problem = _problem(data)
    if problem:
        raise NotAJob(f"not a job of ours: {problem}")
    assert isinstance(data, dict)
    return data


def _is_int(value: object) -> bool:
    return type(value) is int  # not bool


def _problem(data: object) -> str | None:
    if not isinstance(data, dict):
        return "not an object"
    keys = set(data)
    result = RESULT_REQUIRED <= keys <= RESULT_KEYS
    if not (keys == JOB_KEYS or result):
        return "unexpected keys"
    args = data["a"]
    checks = {
        "f": isinstance(data["f"], str),
        "a": isinstance(args, list) and len(args) <= 1 and all(isinstance(a, dict) for a in args),
        "k": data["k"] == {},
        "t": data["t"] is None or _is_int(data["t"]),
        "et": _is_int(data["et"]),
    }
    if result:
        checks |= {
            "s": isinstance(data["s"], bool),
            "st": _is_int(data["st"]),
            "ft": _is_int(data["ft"]),
            "q": isinstance(data.get("q", ""), str),
            "id": isinstance(data.get("id", ""), str),
        }
    wrong = sorted(key for key, ok in checks.items() if not ok)
    return f"wrong {', '.join(wrong)}" if wrong else None
