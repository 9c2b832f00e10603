"""Query answers as Restate writes them: `{"rows":[…]}` JSON or an Arrow IPC stream. Pure code."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa

ARROW_STREAM = "application/vnd.apache.arrow.stream"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _fraction(units: int, per_second: int) -> str:
    """Sub-second digits, as many groups of three as needed to show every non-zero digit."""
    if units == 0:
        return ""
    width = len(str(per_second)) - 1
    digits = f"{units:0{width}d}"
    while digits.endswith("000"):
        digits = digits[:-3]
    return "." + digits


def format_timestamp(value: int, unit: str) -> str:
    """RFC 3339 in UTC with a `Z`, e.g. `2026-11-24T18:34:29.081Z`."""
    per = _UNITS_PER_SECOND[unit]
    secs, sub = divmod(value, per)
    moment = _EPOCH + dt.timedelta(seconds=secs)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(sub, per) + "Z"


def format_duration(value: int, unit: str) -> str:
    """ISO 8601 duration in seconds, e.g. `PT86400S`."""
    per = _UNITS_PER_SECOND[unit]
    sign = "-" if value < 0 else ""
    secs, sub = divmod(abs(value), per)
    return f"{sign}PT{secs}{_fraction(sub, per)}S"


Converter = Callable[[Any], Any]


def _converter(ty: pa.DataType) -> Converter | None:
    """How one Arrow type's Python value becomes JSON; None: as is."""
    if pa.types.is_timestamp(ty):
        unit = ty.unit
        return lambda v: format_timestamp(v, unit)
    if pa.types.is_duration(ty):
        unit = ty.unit
        return lambda v: format_duration(v, unit)
    if pa.types.is_binary(ty) or pa.types.is_large_binary(ty) or pa.types.is_fixed_size_binary(ty):
        return lambda v: v.hex()
    if pa.types.is_list(ty) or pa.types.is_large_list(ty) or pa.types.is_fixed_size_list(ty):
        inner = _converter(ty.value_type)
        if inner is None:
            return None
        return lambda v: [None if x is None else inner(x) for x in v]
    if pa.types.is_struct(ty):
        fields = [(ty.field(i).name, _converter(ty.field(i).type)) for i in range(ty.num_fields)]
        return lambda v: {n: (c(v[n]) if c is not None else v[n]) for n, c in fields if v.get(n) is not None}
    if pa.types.is_floating(ty):
        return lambda v: None if math.isnan(v) or math.isinf(v) else v
    if pa.types.is_decimal(ty):
        return lambda v: str(v) if isinstance(v, Decimal) else v
    if pa.types.is_date(ty) or pa.types.is_time(ty):
        return lambda v: v.isoformat()
    if pa.types.is_interval(ty):
        return str
    return None


def _raw_values(col: pa.ChunkedArray) -> Any:
    """Python values, with timestamps and durations kept as integers in their own unit."""
    ty = col.type
    if pa.types.is_timestamp(ty) or pa.types.is_duration(ty):
        return col.cast(pa.int64()).to_pylist()
    if (pa.types.is_list(ty) or pa.types.is_large_list(ty)) and (
        pa.types.is_timestamp(ty.value_type) or pa.types.is_duration(ty.value_type)
    ):
        return col.cast(pa.list_(pa.int64())).to_pylist()
    return col.to_pylist()


def to_json_rows(table: pa.Table) -> bytes:
    """`{"rows":[{column: value, …}]}`; null columns are left out of their row."""
    columns = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        columns.append((name, _raw_values(col), _converter(col.type)))
    rows: list[dict[str, Any]] = []
    for i in range(table.num_rows):
        row: dict[str, Any] = {}
        for name, values, conv in columns:
            v = values[i]
            if v is None:
                continue
            if conv is not None:
                v = conv(v)
                if v is None:
                    continue
            row[name] = v
        rows.append(row)
    return json.dumps({"rows": rows}, separators=(",", ":"), ensure_ascii=False).encode()


def to_arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches():
            writer.write_batch(batch)
    data: bytes = sink.getvalue().to_pybytes()
    return data
