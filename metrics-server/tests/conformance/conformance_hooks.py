"""Schemathesis hooks for the conformance run (tests/conformance.rs): loaded by
`SCHEMATHESIS_HOOKS=conformance_hooks` with this folder on PYTHONPATH.

- A serializer for `application/x-ndjson`, which `POST /v1/metrics` takes and schemathesis cannot
  send by itself: a batch (a JSON array) goes one element per line, any other value as one line.
- A filter dropping the generated cases that break a rule across parameters, which OpenAPI
  cannot call invalid (see below).
"""

import base64
import json
import re
from datetime import datetime, timezone

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    values = value if isinstance(value, list) else [value]
    lines = (json.dumps(v, ensure_ascii=False) for v in values)
    return "".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass")


_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_EPOCH_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _instant(value):
    """A time parameter (ISO-8601, a Unix epoch with its unit, `now-15m`) as Unix seconds, or
    None when it is not one (then the query is sent as it is)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    relative = re.fullmatch(r"now(?:([+ -])([0-9]+)(ms|s|m|h|d|w))?", text)
    if relative:
        now = datetime.now(timezone.utc).timestamp()
        if relative.group(1) is None:
            return now
        sign = -1.0 if relative.group(1) == "-" else 1.0
        return now + sign * int(relative.group(2)) * _UNITS[relative.group(3)]
    epoch = re.fullmatch(r"([+-]?[0-9]+(?:\.[0-9]+)?)(s|ms|us|µs|ns)?", text)
    if epoch:
        return float(epoch.group(1)) * _EPOCH_UNITS[epoch.group(2) or ""]
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


_SELECTION = ("name", "sts", "ets", "match")


def _is_cursor(value):
    """Whether `value` decodes as a cursor this server makes: base64url (no padding) of
    `v1:<ts micros>:<id>`."""
    if not isinstance(value, str):
        return False
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    return re.fullmatch(r"v1:-?[0-9]+:-?[0-9]+", text) is not None


def _given(query, name):
    value = query.get(name)
    if isinstance(value, list):
        return any(str(v).strip() for v in value)
    return value is not None and str(value).strip() != ""


def _acceptable(ctx, query):
    """Whether a generated query keeps the documented rules across two parameters. Drops the
    generated queries that break a documented rule across two parameters, which
    OpenAPI cannot state (so they are not "valid data"); any other query, valid or not, is sent:

    - `sts` after `ets`: 400 `invalid_range` on every route that takes them;
    - `DELETE /v1/metrics` with no filter at all and no `all=true`: 400 naming `all`, so that
      a forgotten filter never deletes everything;
    - `columns` on `GET /v1/metrics` without `format=csv`: 400, columns exist in CSV only;
    - a `cursor` the server did not make: it is opaque (the spec says take it from the `Link`
      header), so a random string of its alphabet is no more "valid data" than a random
      password; a cursor refused is a 400 naming it;
    - aggregation (`GET /v1/metrics` with `step`): `agg`, `by`, `offset` and `fill` need `step`,
      and `limit`, `order`, `cursor` and `columns` do not go with it (400 naming the parameter);
      the 11,000-bucket cap depends on the span, so an aggregation is sent only with `sts` and
      `ets` that keep it within the cap (without them the span is the stored data's).
    """
    if not isinstance(query, dict):
        return True
    start, end = _instant(query.get("sts")), _instant(query.get("ets"))
    if start is not None and end is not None and start > end:
        return False
    operation = ctx.operation
    if operation is None:
        return True
    route = (operation.method.upper(), operation.path)
    if route == ("DELETE", "/v1/metrics"):
        filtered = any(_given(query, n) for n in _SELECTION) or any(
            str(k).startswith("tag.") for k in query
        )
        if not filtered and str(query.get("all", "")).strip() != "true":
            return False
    if route == ("GET", "/v1/metrics") and _given(query, "cursor"):
        if not _is_cursor(query.get("cursor")):
            return False
    if route == ("GET", "/v1/metrics") and _given(query, "columns"):
        if str(query.get("format", "")).strip() != "csv":
            return False
    if route == ("GET", "/v1/metrics"):
        # Present counts, even empty: `by=` asks for an aggregation as much as `by=host`.
        if "step" in query:
            if any(n in query for n in ("limit", "order", "cursor", "columns")):
                return False
            step = _seconds(query.get("step"))
            if step is None or start is None or end is None:
                return False
            if (end - start) / step + 1 > 11_000:
                return False
        elif any(n in query for n in ("agg", "by", "offset", "fill")):
            return False
    return True


def _seconds(value):
    """A `step` (`60`, `5m`) in seconds, or None."""
    match = re.fullmatch(r"([0-9]+)([smhdw]?)", str(value).strip())
    if not match or int(match.group(1)) == 0:
        return None
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


@schemathesis.hook
def filter_case(ctx, case):
    """The rules of `_acceptable`, on whole cases: every phase applies `filter_case` (the
    examples phase hands `filter_query` the query before its examples are filled in)."""
    return _acceptable(ctx, case.query or {})
