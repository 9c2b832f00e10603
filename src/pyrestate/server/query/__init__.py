"""SQL introspection (`POST /query`): Restate's introspection tables over pyrestate's storage, served by
Apache DataFusion."""

from pyrestate.server.query.handler import QueryAnswer, answer_query, wants_json
from pyrestate.server.query.runner import QueryError, QueryLimits, QueryRunner, run_query
from pyrestate.server.query.source import ReaderSnapshot, SqliteSnapshot

__all__ = [
    "QueryAnswer",
    "QueryError",
    "QueryLimits",
    "QueryRunner",
    "ReaderSnapshot",
    "SqliteSnapshot",
    "answer_query",
    "run_query",
    "wants_json",
]
