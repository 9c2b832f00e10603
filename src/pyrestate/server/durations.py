"""Durations and timestamps as Restate writes and reads them. Pure code: no IO.

Input accepts the "friendly" format (``10s``, ``1m``, ``500ms``, ``60 sec``, ``1h 2m``, ``1 day``) and
ISO 8601 (``PT2S``, ``P1DT2H``). Output uses the compact friendly form the admin API shows (``1d``,
``10m``, ``500ms``, ``0s``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

MS_PER_SECOND = 1000
MS_PER_MINUTE = 60 * MS_PER_SECOND
MS_PER_HOUR = 60 * MS_PER_MINUTE
MS_PER_DAY = 24 * MS_PER_HOUR


class DurationError(ValueError):
    """The text is not a duration; the message says why, in the words Restate uses."""


#: Largest accepted duration: what a signed 64-bit count of nanoseconds holds (about 292 years). Anything
#: longer could not be stored as an execution time nor printed as a timestamp.
MAX_DURATION_NS = 2**63 - 1
# Longer digit runs than this cannot be a duration within the bound; refusing them up front also keeps
# int() away from Python's 4300-digit conversion limit (a bare ValueError).
_MAX_DIGITS = 40


# Unit spellings of the friendly format, longest alternatives first so the regex never stops early.
# The value is the unit's length in nanoseconds (integers keep sub-millisecond input exact).
_FRIENDLY_UNITS: dict[str, int] = {}
for _names, _nanos in (
    (("weeks", "week", "wks", "wk", "w"), 7 * 86_400_000_000_000),
    (("days", "day", "d"), 86_400_000_000_000),
    (("hours", "hour", "hrs", "hr", "h"), 3_600_000_000_000),
    (("minutes", "minute", "mins", "min", "m"), 60_000_000_000),
    (("seconds", "second", "secs", "sec", "s"), 1_000_000_000),
    (("milliseconds", "millisecond", "millis", "milli", "msecs", "msec", "ms"), 1_000_000),
    (("microseconds", "microsecond", "micros", "micro", "usecs", "usec", "us", "µs", "µsecs", "µsec"), 1_000),
    (("nanoseconds", "nanosecond", "nanos", "nano", "nsecs", "nsec", "ns"), 1),
):
    for _n in _names:
        _FRIENDLY_UNITS[_n] = _nanos
_CALENDAR_UNITS = ("years", "year", "yrs", "yr", "y", "months", "month", "mos", "mo")

_UNIT_ALT = "|".join(sorted((*_FRIENDLY_UNITS, *_CALENDAR_UNITS), key=len, reverse=True))
_COMPONENT = re.compile(rf"\s*(\d+)(?:\.(\d+))?\s*({_UNIT_ALT})(?![a-zµ])", re.IGNORECASE)
_ISO = re.compile(
    r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:[.,](\d+))?S)?)?",
    re.IGNORECASE,
)


def parse_duration_ns(text: str) -> int:
    """Nanoseconds of a friendly or ISO 8601 duration (may be negative with a leading sign)."""
    s = text.strip()
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:].lstrip()
    ns = _parse_iso_ns(s, text) if s[:1] in ("P", "p") else _parse_friendly_ns(s)
    if ns > MAX_DURATION_NS:
        raise DurationError(f"duration {text.strip()[:40]!r} is too large (at most {MAX_DURATION_NS} ns)")
    return sign * ns


def _int(digits: str, original: str) -> int:
    digits = digits.lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:
        raise DurationError(f"duration {original.strip()[:40]!r}… is too large: {len(digits)} digits")
    return int(digits)


def parse_duration_ms(text: str) -> int:
    """Milliseconds of a duration, rounded down; see :func:`parse_duration_ns`."""
    ns = parse_duration_ns(text)
    return ns // 1_000_000 if ns >= 0 else -((-ns) // 1_000_000)


def _parse_friendly_ns(s: str) -> int:
    if not s or not s[0].isdigit():
        raise DurationError(
            'failed to parse input in the "friendly" duration format: expected duration to start with a unit '
            "value (a decimal integer) after an optional sign, but no integer was found"
        )
    total = 0
    pos = 0
    while pos < len(s):
        m = _COMPONENT.match(s, pos)
        if m is None:
            rest = s[pos:].strip(" ,")
            if not rest:
                break
            raise DurationError(
                f'failed to parse input in the "friendly" duration format: unrecognized input {rest!r}'
            )
        whole, frac, unit = m.group(1), m.group(2), m.group(3).lower()
        if unit in _CALENDAR_UNITS:
            raise DurationError(
                'failed to parse input in the "friendly" duration format: calendar units (years, months) '
                "are not allowed in an absolute duration"
            )
        unit_ns = _FRIENDLY_UNITS[unit]
        total += _int(whole, s) * unit_ns
        if frac:
            frac = frac[:_MAX_DIGITS]  # digits past nanosecond precision change nothing
            total += int(frac) * unit_ns // 10 ** len(frac)
        pos = m.end()
        # components may be separated by spaces and an optional comma
        while pos < len(s) and s[pos] in " ,":
            pos += 1
    return total


def _parse_iso_ns(s: str, original: str) -> int:
    m = _ISO.fullmatch(s)
    if m is None or s.upper() in ("P", "PT") or s.upper().endswith("T"):
        raise DurationError(f"failed to parse ISO 8601 duration string {original!r}")
    weeks, days, hours, minutes, seconds, frac = m.groups()
    total = 0
    total += _int(weeks or "0", original) * 7 * 86_400_000_000_000
    total += _int(days or "0", original) * 86_400_000_000_000
    total += _int(hours or "0", original) * 3_600_000_000_000
    total += _int(minutes or "0", original) * 60_000_000_000
    total += _int(seconds or "0", original) * 1_000_000_000
    if frac:
        total += int(frac[:9].ljust(9, "0"))
    return total


def format_friendly_ms(ms: int) -> str:
    """Compact friendly form: ``86400000`` → ``1d``, ``90000`` → ``1m 30s``, ``500`` → ``500ms``, ``0s``."""
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    parts = []
    for unit, size in (("d", MS_PER_DAY), ("h", MS_PER_HOUR), ("m", MS_PER_MINUTE), ("s", MS_PER_SECOND)):
        n, ms = divmod(ms, size)
        if n:
            parts.append(f"{n}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return sign + " ".join(parts)


def _utc(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)


def rfc3339_millis(epoch_ms: int) -> str:
    """``2026-11-25T18:33:17.774+00:00``: the ``idempotency-expires`` header."""
    return _utc(epoch_ms).strftime("%Y-%m-%dT%H:%M:%S") + f".{epoch_ms % 1000:03d}+00:00"


def rfc3339_nanos(epoch_ms: int) -> str:
    """``2026-11-24T18:33:17.768000000Z``: ``executionTime`` of a delayed send, ``created_at``."""
    return _utc(epoch_ms).strftime("%Y-%m-%dT%H:%M:%S") + f".{epoch_ms % 1000:03d}000000Z"
