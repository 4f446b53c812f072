"""Schemathesis hooks for the conformance run (tests/conformance.rs): loaded by
`SCHEMATHESIS_HOOKS=conformance_hooks` with this folder on PYTHONPATH.

- A serializer for `application/x-ndjson`, which `POST /v1/metrics` takes and schemathesis cannot
  send by itself: a batch (a JSON array) goes one element per line, any other value as one line.
- A filter dropping the one generated query that OpenAPI cannot call invalid (see below).
"""

import json
from datetime import datetime

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    values = value if isinstance(value, list) else [value]
    lines = (json.dumps(v, ensure_ascii=False) for v in values)
    return "".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass")


def _instant(value):
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


@schemathesis.hook
def filter_query(ctx, query):
    """`GET /v1/metrics` refuses `sts` after `ets` (400 `invalid_range`, documented): a rule across
    two parameters that OpenAPI cannot state, so such generated queries are not "valid data".
    Only that combination is dropped; any other query, valid or not, is sent."""
    operation = ctx.operation
    if operation is None or (operation.method.upper(), operation.path) != ("GET", "/v1/metrics"):
        return True
    if not isinstance(query, dict):
        return True
    start, end = _instant(query.get("sts")), _instant(query.get("ets"))
    if start is None or end is None:
        return True
    try:
        return not start > end
    except TypeError:  # one has an offset, the other not: not the case above
        return True
