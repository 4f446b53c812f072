"""Schemathesis hooks for the conformance run (tests/conformance.rs): loaded by
`SCHEMATHESIS_HOOKS=conformance_hooks` with this folder on PYTHONPATH.

- A serializer for `application/x-ndjson`, which `POST /v1/metrics` takes and schemathesis cannot
  send by itself: a batch (a JSON array) goes one element per line, any other value as one line.
- A filter dropping the generated queries that OpenAPI cannot call invalid (see below).
"""

import base64
import json
import re
import time
from datetime import datetime, timezone

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    values = value if isinstance(value, list) else [value]
    lines = (json.dumps(v, ensure_ascii=False) for v in values)
    return "".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass")


_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1.0, "": 1.0}
_RELATIVE = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NOT_A_TIME = object()


def _instant(value):
    """A time parameter as seconds since the epoch (the server's forms: ISO-8601, epochs with
    units, `now-15m`); None when it cannot tell; _NOT_A_TIME for a value the schema's patterns
    let through but no calendar has (a 30 February, an epoch beyond year 9999)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    relative = re.fullmatch(r"now(?:([+ -])([0-9]+)(ms|s|m|h|d|w))?", text)
    if relative:
        sign, count, unit = relative.groups()
        offset = 0 if count is None else int(count) * _RELATIVE[unit]
        return time.time() + (-offset if sign == "-" else offset)
    epoch = re.fullmatch(r"([+-]?[0-9]+(?:\.[0-9]+)?)(ns|us|\u00b5s|ms|s)?", text)
    if epoch:
        seconds = float(epoch.group(1)) * _UNITS[epoch.group(2) or ""]
        return seconds if _MIN <= seconds <= _MAX else _NOT_A_TIME
    date = re.match(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", text)
    if date:
        try:
            datetime(*(int(g) for g in date.groups()))
        except ValueError:
            return _NOT_A_TIME
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError):
        return None


_STRING = r"""(?:"(?:[^"\\]|\\[\\"'nrt]|\\u[0-9a-fA-F]{4})*"|'(?:[^'\\]|\\[\\"'nrt]|\\u[0-9a-fA-F]{4})*'|`[^`]*`)"""
_BARE = r"""[^\s"'`{}=!~,]+"""
_WORD = rf"(?:{_BARE}|{_STRING})"
_MATCHER = rf"(?:(?P<key>{_WORD})\s*(?P<op>=~|!~|!=|=)\s*(?P<value>{_STRING})|(?P<lone>{_STRING}))"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t"}


def _unquote(text):
    """A quoted string's content, escapes as the server reads them."""
    if text[0] == "`":
        return text[1:-1]
    return re.sub(
        r"\\(u[0-9a-fA-F]{4}|.)",
        lambda m: chr(int(m.group(1)[1:], 16)) if len(m.group(1)) == 5 else _ESCAPES[m.group(1)],
        text[1:-1],
    )


def _selector_ok(text):
    """Whether the server takes `text` as a `match` selector (its grammar, the name rules, and
    regular expressions both Python and Rust compile): the free string the spec declares cannot
    say it, so a query with another `match` is not "valid data"."""
    if not text.strip():
        return True
    head = re.match(rf"\s*(?P<name>{_WORD})?\s*", text)
    names = set()
    if head.group("name"):
        names.add(head.group("name"))
    rest = text[head.end():]
    if rest:
        if not rest.startswith("{") or not rest.rstrip().endswith("}"):
            return False
        body = rest.rstrip()[1:-1].strip()
        body = re.sub(r",\s*$", "", body)
        plain = re.sub(r"\(\?P<\w+>", "(?:", _MATCHER)
        if body and not re.fullmatch(rf"\s*{plain}\s*(?:,\s*{plain}\s*)*", body):
            return False
        for m in re.finditer(_MATCHER, body) if body else []:
            if m.group("lone"):
                names.add(m.group("lone"))
                continue
            key, op, value = m.group("key"), m.group("op"), m.group("value")
            if key in ("__name__", '"__name__"'):
                if op != "=":
                    return False
                names.add(value)
            elif op in ("=~", "!~"):
                try:
                    re.compile(_unquote(value))
                except Exception:
                    return False
                if re.search(r"\(\?[=!<P]|\\[1-9]", _unquote(value)):
                    return False  # look-arounds and back-references: Python only
    if len(names) > 1:
        return False
    for name in names:
        try:
            plain = name if name[0] not in "\"'`" else _unquote(name)
        except Exception:
            return False
        if not plain or _CONTROL.search(plain) or len(plain.encode()) > 512:
            return False
    return True


def _cursor_ok(text):
    """Whether `cursor` is one the server made (opaque to clients; any other is refused)."""
    if not text:
        return True
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except Exception:
        return False
    return re.fullmatch(r"v1:-?[0-9]+:-?[0-9]+", decoded) is not None


def _values(query, name):
    value = query.get(name)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


_MIN = -62135596800.0
_MAX = 253402300799.0


@schemathesis.hook
def filter_case(ctx, case):
    """Rules across parameters, or of the calendar, that OpenAPI cannot state, so queries
    breaking them are not "valid data" though the schema lets them through:
    - `sts` after `ets` (400 `invalid_range`, documented) on `GET` and `DELETE /v1/metrics`;
    - a time the patterns admit but no calendar has (30 February, an epoch beyond 9999);
    - `columns` (which implies CSV) with another `format` (documented).
    - a `match` that is not a selector the server reads (see `_selector_ok`), on every route;
    - a `cursor` the server did not make (it is opaque);
    - `DELETE /v1/metrics` with no filter and without `all=true` (documented).
    Only those are dropped; any other query, valid or not, is sent. (`filter_case`, unlike
    `filter_query`, applies in the coverage phase too.)"""
    operation = case.operation
    query = case.query
    if operation is None or not isinstance(query, dict):
        return True
    if not all(isinstance(m, str) and _selector_ok(m) for m in _values(query, "match")):
        return False
    if operation.path != "/v1/metrics":
        return True
    method = operation.method.upper()
    if method not in ("GET", "DELETE"):
        return True
    if not all(isinstance(c, str) and _cursor_ok(c) for c in _values(query, "cursor")):
        return False
    if method == "DELETE" and query.get("all") != "true":
        filters = [v for k, v in query.items() if k in ("name", "sts", "ets", "match") for v in (v if isinstance(v, list) else [v])]
        if not any(isinstance(v, str) and v.strip() for v in filters):
            return False
    start, end = _instant(query.get("sts")), _instant(query.get("ets"))
    if start is _NOT_A_TIME or end is _NOT_A_TIME:
        return False
    if query.get("columns") not in (None, "") and query.get("format") not in (None, "", "csv"):
        return False
    if start is None or end is None:
        return True
    return not start > end
