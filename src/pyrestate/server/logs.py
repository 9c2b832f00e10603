"""Logging of the server processes: text or JSON lines on stderr, pyrestate's loggers at the chosen level,
third-party libraries (hypercorn, h2, hpack, httpx…) at warning unless a filter asks for more.

Events carry structured fields (`event(log, level, message, invocation_id=…)`): the text format appends
them as `key=value`, the JSON format makes them keys of the line's object.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
_FIELDS = "pyrestate_fields"
# Standard LogRecord attributes; anything else on a record came through `extra`.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", _FIELDS}


class LogConfigError(ValueError):
    pass


def event(logger: logging.Logger, level: int, message: str, **fields: object) -> None:
    """Log `message` with structured fields (None values are left out)."""
    if logger.isEnabledFor(level):
        clean = {k: v for k, v in fields.items() if v is not None}
        logger.log(level, message, extra={_FIELDS: clean})


def duration(ms: int) -> str:
    """Milliseconds for people: `750ms`, `1.5s`, `2m 5s`, `3h 10m`."""
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.3g}s"
    minutes, seconds = divmod(ms // 1000, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if minutes else f"{hours}h"


def split_error(message: str) -> tuple[str, str | None]:
    """A failure message's first line, and the rest (the handler's stack trace) if any."""
    first, _, rest = message.partition("\n")
    return first, (rest.strip("\n") or None)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = dict(getattr(record, _FIELDS, None) or {})
    for key, value in record.__dict__.items():
        if key not in _RESERVED and not key.startswith("_"):
            out.setdefault(key, value)
    return out


def _text_value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """`2026-01-01T10:00:00.123Z WARNING pyrestate.invocation: message key=value …` on one line; multi-line
    field values (a handler's stack trace) and tracebacks follow, indented, like the official server's."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        line = f"{ts} {record.levelname} {record.name}: {record.getMessage()}"
        blocks: list[str] = []
        for key, value in _fields(record).items():
            text = str(value)
            if "\n" in text:
                blocks.append(f"  {key}:\n" + "\n".join("    " + ln for ln in text.splitlines()))
            else:
                line += f" {key}={_text_value(text)}"
        if record.exc_info:
            blocks.append(self.formatException(record.exc_info))
        return "\n".join([line, *blocks])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, the event's fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            obj.setdefault(key, value)
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False, default=str)


def parse_filter(spec: str) -> tuple[str | None, dict[str, str]]:
    """`warning,hypercorn=debug,h2=info` → (default level of other libraries, {logger: level})."""
    default: str | None = None
    per_logger: dict[str, str] = {}
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        name, sep, level = item.rpartition("=")
        level = level.strip().lower()
        if level not in LEVELS:
            raise LogConfigError(f"bad log filter item {item!r}: level must be one of {', '.join(LEVELS)}")
        if sep:
            if not name.strip():
                raise LogConfigError(f"bad log filter item {item!r}: expected LOGGER=LEVEL")
            per_logger[name.strip()] = level
        else:
            default = level
    return default, per_logger


def check_level(level: str) -> str:
    v = level.strip().lower()
    if v not in LEVELS:
        raise LogConfigError(f"expected one of {', '.join(LEVELS)}, got {level!r}")
    return v


def check_format(fmt: str) -> str:
    v = fmt.strip().lower()
    if v not in FORMATS:
        raise LogConfigError(f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return v


def configure(level: str = "info", fmt: str = "text", log_filter: str = "", stream: Any = None) -> None:
    """Install one stderr handler on the root logger. `level` applies to pyrestate's loggers only;
    `log_filter` (`[LEVEL][,LOGGER=LEVEL…]`) sets other libraries' level (warning by default) and any
    logger by name."""
    default, per_logger = parse_filter(log_filter)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if check_format(fmt) == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(_level(default or "warning"))
    logging.getLogger("pyrestate").setLevel(_level(check_level(level)))
    # hypercorn's own loggers get a handler of their own unless given a Logger: route them through ours.
    for name in ("hypercorn.error", "hypercorn.access"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.propagate = True
        lg.setLevel(logging.NOTSET)
    for name, lvl in per_logger.items():
        logging.getLogger(name).setLevel(_level(lvl))
    logging.captureWarnings(True)


def _level(name: str) -> int:
    value = logging.getLevelName(name.upper())
    return value if isinstance(value, int) else logging.INFO
