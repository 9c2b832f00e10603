"""Input and output rules of a handler: content-type matching and the empty-body checks. Pure code.

A handler's input accepts one or more rules and a request passes when any rule passes (the error of the
last rule is reported, as Restate does):

* ``input: {}`` in the manifest: only "no body and no content-type";
* optional input: "no body and no content-type", or the declared content type (plus a non-empty body
  when the input has a JSON schema);
* required input: only the declared content type (and a non-empty body for JSON).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyrestate.server.core_api import HandlerSchema


class InputValidationError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ContentTypePattern:
    """An Accept-style content type: ``*/*``, ``type/*`` or ``type/subtype``."""

    type: str | None  # None: any type
    subtype: str | None  # None: any subtype

    @classmethod
    def parse(cls, text: str) -> ContentTypePattern:
        head, sep, tail = text.strip().partition("/")
        if not sep:
            raise ValueError(f"can't parse the content-type '{text}': must contain one /")
        if head == "*":
            if tail != "*":
                raise ValueError(
                    f"can't parse the content-type '{text}': the wildcard format */subType is not supported"
                )
            return cls(None, None)
        return cls(head, None if tail == "*" else tail)

    def __str__(self) -> str:
        return f"{self.type or '*'}/{self.subtype or '*'}"

    def matches(self, content_type: str) -> bool:
        media = content_type.split(";", 1)[0].strip()
        head, sep, tail = media.partition("/")
        if self.type is None:
            return True
        if not sep:
            return False
        if head != self.type:
            return False
        return self.subtype is None or tail == self.subtype


def _check_no_body(content_type: str | None, body: bytes) -> None:
    if body or content_type is not None:
        shown = "None" if content_type is None else f'Some("{content_type}")'
        raise InputValidationError(
            f"Expected body and content-type to be empty, but wasn't with content-type '{shown}'"
        )


def _check_content_type(
    pattern: ContentTypePattern, json_value: bool, content_type: str | None, body: bytes
) -> None:
    if content_type is None:
        raise InputValidationError("Empty content-type")
    if not pattern.matches(content_type):
        raise InputValidationError(f"Content-type '{content_type}' does not match '{pattern}'")
    if json_value and not body:
        raise InputValidationError("Empty body not allowed")


def validate_input(handler: HandlerSchema, content_type: str | None, body: bytes) -> None:
    """Raises InputValidationError with Restate's message when the request does not fit the handler."""
    if handler.input_content_type is None:
        _check_no_body(content_type, body)
        return
    try:
        pattern = ContentTypePattern.parse(handler.input_content_type)
    except ValueError:
        raise InputValidationError("Bad configuration of the input validation rules") from None
    json_value = handler.input_json_schema is not None
    if handler.input_required:
        _check_content_type(pattern, json_value, content_type, body)
        return
    try:
        _check_no_body(content_type, body)
    except InputValidationError:
        _check_content_type(pattern, json_value, content_type, body)


def output_content_type(handler: HandlerSchema, body: bytes) -> str | None:
    """The content-type header of a successful response, following the handler's output rules."""
    if handler.output_content_type is None:
        return None
    if not body and not handler.output_set_content_type_if_empty:
        return None
    return handler.output_content_type


def _json_schema_label(schema: object | None) -> str | None:
    if isinstance(schema, dict):
        title = schema.get("title")
        if isinstance(title, str):
            return f"JSON '{title}'"
        ty = schema.get("type")
        if isinstance(ty, str):
            return f"JSON {ty}"
    return None


def input_description(handler: HandlerSchema) -> str:
    """`input_description` of the admin API: ``none``, ``JSON integer``, ``application/json``, …"""
    if handler.input_content_type is None:
        return "none"
    label = _json_schema_label(handler.input_json_schema)
    if label is None:
        try:
            label = str(ContentTypePattern.parse(handler.input_content_type))
        except ValueError:
            label = handler.input_content_type
    return label


def output_description(handler: HandlerSchema) -> str:
    label = _json_schema_label(handler.output_json_schema)
    if label is not None:
        return label
    if handler.output_content_type is None:
        return "none"
    prefix = "optional " if handler.output_set_content_type_if_empty else ""
    return prefix + handler.output_content_type
