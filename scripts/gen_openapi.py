"""Generate the OpenAPI 3.1 document of the gateway's REST API.

Reads the descriptor set that scripts/gen_proto.py writes and describes
every RPC with a ``google.api.http`` rule the way Envoy's
grpc_json_transcoder serves it with the print options in
retain_cli.envoy_config:

- JSON field names are lowerCamelCase, and responses print every field of a
  scalar, enum, repeated or map type, even at its default value;
- enums are their value names; 64-bit integers are decimal strings;
  Timestamp is an RFC 3339 string;
- GET parameters that the path does not set are query parameters, under
  their lowerCamelCase or their proto name;
- errors are JSON with a google.rpc.Code and a message.

Security follows the gateway's role table (retain_cli.gateway_access).
The output is JSON with sorted keys, so the same descriptor set always gives
the same file. ``make openapi`` writes docs/openapi.json.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from retain_cli import gateway_access
from retain_cli.envoy_routes import HttpRule, json_name, read_http_rules

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTOR_SET = ROOT / "build" / "retain.binpb"
OUTPUT = ROOT / "docs" / "openapi.json"

BEARER = "bearerAuth"
API_KEY = "apiKey"
ERROR_SCHEMA = "Error"

Field = descriptor_pb2.FieldDescriptorProto
_REF = "#/components/schemas/"

# JSON schemas of scalar fields in proto3 JSON. 64-bit integers are strings
# because JSON numbers lose precision above 2**53; requests may send numbers.
_SCALARS: dict[int, dict[str, Any]] = {
    Field.TYPE_DOUBLE: {"type": "number", "format": "double"},
    Field.TYPE_FLOAT: {"type": "number", "format": "float"},
    Field.TYPE_INT32: {"type": "integer", "format": "int32"},
    Field.TYPE_SINT32: {"type": "integer", "format": "int32"},
    Field.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    Field.TYPE_UINT32: {"type": "integer", "format": "uint32", "minimum": 0},
    Field.TYPE_FIXED32: {"type": "integer", "format": "uint32", "minimum": 0},
    Field.TYPE_INT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    Field.TYPE_SINT64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    Field.TYPE_SFIXED64: {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    Field.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"},
    Field.TYPE_FIXED64: {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"},
    Field.TYPE_BOOL: {"type": "boolean"},
    Field.TYPE_STRING: {"type": "string"},
    Field.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}

# Well-known types, which proto3 JSON prints as these values.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 time, such as 2024-03-01T05:30:00Z.",
    },
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9.]+s$"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.Empty": {"type": "object"},
}

# Raw HTTP bodies of the Africa's Talking callbacks and their replies.
_HTTP_BODY = "google.api.HttpBody"
_RAW_BODY = {"type": "string"}


class Descriptors:
    """Messages, enums and comments of a descriptor set, by full name."""

    def __init__(self, descriptor_set: Path) -> None:
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.comments: dict[str, str] = {}
        for file in files.file:
            self._add_file(file)

    def _add_file(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        comments = {
            tuple(location.path): _clean_comment(location.leading_comments)
            for location in file.source_code_info.location
            if _clean_comment(location.leading_comments)
        }
        for index, message in enumerate(file.message_type):
            self._add_message(
                f"{file.package}.{message.name}", message, (4, index), comments
            )
        for index, enum in enumerate(file.enum_type):
            self.enums[f"{file.package}.{enum.name}"] = enum
        for s_index, service in enumerate(file.service):
            for m_index, method in enumerate(service.method):
                comment = comments.get((6, s_index, 2, m_index))
                if comment:
                    self.comments[f"{file.package}.{service.name}.{method.name}"] = (
                        comment
                    )

    def _add_message(
        self,
        name: str,
        message: descriptor_pb2.DescriptorProto,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        self.messages[name] = message
        for key, comment in _member_comments(name, message, path, comments):
            self.comments[key] = comment
        for index, nested in enumerate(message.nested_type):
            self._add_message(
                f"{name}.{nested.name}", nested, (*path, 3, index), comments
            )
        for nested_enum in message.enum_type:
            self.enums[f"{name}.{nested_enum.name}"] = nested_enum


def _clean_comment(comment: str) -> str:
    # Drops the indent after "//" and buf's lint directives.
    lines = [line.strip() for line in comment.strip().splitlines()]
    return "\n".join(line for line in lines if not line.startswith("buf:lint:"))


def _summary(comment: str) -> str:
    """Return the first sentence of a comment, on one line."""
    text = " ".join(comment.split())
    sentence, dot, _ = text.partition(". ")
    return sentence + dot.strip()


def _member_comments(
    name: str,
    message: descriptor_pb2.DescriptorProto,
    path: tuple[int, ...],
    comments: dict[tuple[int, ...], str],
) -> Iterator[tuple[str, str]]:
    if path in comments:
        yield name, comments[path]
    for index, field in enumerate(message.field):
        if (*path, 2, index) in comments:
            yield f"{name}.{field.name}", comments[(*path, 2, index)]


class SchemaBuilder:
    """Component schemas of the messages and enums that operations use."""

    def __init__(self, descriptors: Descriptors) -> None:
        self._descriptors = descriptors
        self.schemas: dict[str, Any] = {}

    def ref(self, type_name: str) -> dict[str, Any]:
        """Return a reference to the schema of a message or enum, adding it."""
        name = type_name.lstrip(".")
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name not in self.schemas:
            self.schemas[name] = {}  # a placeholder that stops recursion
            self.schemas[name] = self._build(name)
        return {"$ref": _REF + name}

    def _build(self, name: str) -> dict[str, Any]:
        if name in self._descriptors.enums:
            values = [value.name for value in self._descriptors.enums[name].value]
            return {"type": "string", "enum": values}
        message = self._descriptors.messages[name]
        properties = {
            field.json_name or json_name(field.name): self.field_schema(
                field, f"{name}.{field.name}"
            )
            for field in message.field
        }
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        comment = self._descriptors.comments.get(name)
        if comment:
            schema["description"] = comment
        return schema

    def field_schema(self, field: Field, key: str) -> dict[str, Any]:
        """Return the schema of one field, with its comment as description."""
        schema = self._value_schema(field)
        if field.label == Field.LABEL_REPEATED and not self._is_map(field):
            schema = {"type": "array", "items": schema}
        comment = self._descriptors.comments.get(key)
        if comment:
            schema = {**schema, "description": comment}
        return schema

    def _value_schema(self, field: Field) -> dict[str, Any]:
        if self._is_map(field):
            entry = self._descriptors.messages[field.type_name.lstrip(".")]
            value = self._value_schema(entry.field[1])
            return {"type": "object", "additionalProperties": value}
        if field.type in (Field.TYPE_MESSAGE, Field.TYPE_ENUM):
            return self.ref(field.type_name)
        return dict(_SCALARS[field.type])

    def _is_map(self, field: Field) -> bool:
        if field.type != Field.TYPE_MESSAGE:
            return False
        message = self._descriptors.messages.get(field.type_name.lstrip("."))
        return message is not None and message.options.map_entry


def build_document(descriptor_set: Path) -> dict[str, Any]:
    """Build the OpenAPI document of every RPC with an HTTP rule."""
    descriptors = Descriptors(descriptor_set)
    schemas = SchemaBuilder(descriptors)
    paths: dict[str, dict[str, Any]] = {}
    for rule in read_http_rules(descriptor_set):
        operations = paths.setdefault(_openapi_path(rule.template), {})
        operations[rule.http_method.lower()] = _operation(rule, descriptors, schemas)
    schemas.schemas[ERROR_SCHEMA] = _error_schema()
    return {
        "openapi": "3.1.0",
        "info": _info(),
        "servers": [{"url": "http://127.0.0.1:8080", "description": "retain up"}],
        "paths": paths,
        "components": {
            "schemas": schemas.schemas,
            "securitySchemes": _security_schemes(),
        },
    }


def _openapi_path(template: str) -> str:
    # OpenAPI names a path parameter {name}; the rule may write {name=*}.
    path = template
    while "=" in path:
        start = path.index("=")
        path = path[:start] + path[path.index("}", start) :]
    return path


def _operation(
    rule: HttpRule, descriptors: Descriptors, schemas: SchemaBuilder
) -> dict[str, Any]:
    service_name = rule.service.rsplit(".", 1)[1]
    request = descriptors.messages[rule.input_type]
    operation: dict[str, Any] = {
        "operationId": f"{service_name}_{rule.method}",
        "tags": [service_name],
        "parameters": _parameters(rule, request, schemas),
        "responses": _responses(rule, schemas),
        "security": _security(rule),
        "x-grpc-method": gateway_access.grpc_path(rule.service, rule.method),
        "x-retain-roles": list(
            gateway_access.GATEWAY_ACCESS[rule.service][rule.method]
        ),
    }
    comment = descriptors.comments.get(f"{rule.service}.{rule.method}")
    if comment:
        operation["summary"] = _summary(comment)
        operation["description"] = comment
    body = _request_body(rule, schemas)
    if body is not None:
        operation["requestBody"] = body
    return operation


def _parameters(
    rule: HttpRule, request: descriptor_pb2.DescriptorProto, schemas: SchemaBuilder
) -> list[dict[str, Any]]:
    fields = {field.name: field for field in request.field}
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": schemas.field_schema(fields[name], f"{rule.input_type}.{name}"),
        }
        for name in rule.path_fields
    ]
    if rule.body == "*":
        return parameters
    for field in request.field:
        if field.name in rule.path_fields or field.name == rule.body:
            continue
        schema = schemas.field_schema(field, f"{rule.input_type}.{field.name}")
        name = field.json_name or json_name(field.name)
        description = schema.pop("description", "")
        if name != field.name:
            description += f"\n\nAlso accepted as {field.name}."
        parameter = {"name": name, "in": "query", "required": False, "schema": schema}
        if description.strip():
            parameter["description"] = description.strip()
        parameters.append(parameter)
    return parameters


def _request_body(rule: HttpRule, schemas: SchemaBuilder) -> dict[str, Any] | None:
    if not rule.body:
        return None
    if rule.body == "*":
        content = {"application/json": {"schema": schemas.ref(rule.input_type)}}
        return {"required": True, "content": content}
    # A body field of type HttpBody takes the raw body of any content type;
    # the Africa's Talking callbacks send form-encoded fields.
    form = {"application/x-www-form-urlencoded": {"schema": dict(_RAW_BODY)}}
    return {"required": True, "content": form}


def _responses(rule: HttpRule, schemas: SchemaBuilder) -> dict[str, Any]:
    if rule.output_type == _HTTP_BODY:
        content = {"*/*": {"schema": dict(_RAW_BODY)}}
        ok = {"description": "The raw reply, such as USSD text.", "content": content}
    else:
        schema = schemas.ref(rule.output_type)
        ok = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    error = {"application/json": {"schema": {"$ref": _REF + ERROR_SCHEMA}}}
    return {
        "200": ok,
        "default": {
            "description": "An error as a google.rpc.Code and a message.",
            "content": error,
        },
    }


def _security(rule: HttpRule) -> list[dict[str, list[str]]]:
    roles = gateway_access.GATEWAY_ACCESS[rule.service][rule.method]
    if gateway_access.PUBLIC in roles:
        return []
    requirements = []
    if gateway_access.ADMIN in roles or gateway_access.ANALYST in roles:
        requirements.append({BEARER: []})
    if gateway_access.PARTNER in roles:
        requirements.append({API_KEY: []})
    return requirements


def _security_schemes() -> dict[str, Any]:
    return {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "An access token from POST /v1/auth:signIn, signed by the user "
                "service (ES256; iss retain-user, aud retain). Its role claim, "
                "admin or analyst, selects the RPCs it may call; x-retain-roles "
                "on each operation lists them. A signed-out session's tokens "
                "get 401."
            ),
        },
        API_KEY: {
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": (
                "A partner API key from POST /v1/apiKeys, limited to its "
                "requests per minute (429 with Retry-After beyond it)."
            ),
        },
    }


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {
                "type": "integer",
                "description": "The google.rpc.Code, such as 3 for INVALID_ARGUMENT.",
            },
            "message": {
                "type": "string",
                "description": "What failed, on which value, and how to fix it.",
            },
            "details": {
                "type": "array",
                "items": dict(_WELL_KNOWN["google.protobuf.Any"]),
                "description": "Present when the service replied: google.rpc.Status details.",
            },
            "httpStatus": {
                "type": "integer",
                "description": "Present when the gateway itself replied, such as 401 or 413.",
            },
        },
    }


def _info() -> dict[str, Any]:
    return {
        "title": "Retain gateway",
        "version": "v1",
        "description": (
            "REST calls that Envoy transcodes to the Retain gRPC services. JSON "
            "field names are lowerCamelCase; responses print every scalar, enum, "
            "repeated and map field, even at its default. Enums are value names, "
            "64-bit integers are decimal strings (requests may also send JSON "
            "numbers) and times are RFC 3339. Query "
            "parameters that name no request field, and query parameters that "
            "repeat a path field, are rejected with 400. Generated from the "
            "protos by scripts/gen_openapi.py."
        ),
    }


def render(document: dict[str, Any]) -> str:
    """Return the document as the JSON text that is checked in."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--descriptor-set", type=Path, default=DESCRIPTOR_SET)
    parser.add_argument("--out", type=Path, default=OUTPUT)
    options = parser.parse_args()
    text = render(build_document(options.descriptor_set))
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(text)


if __name__ == "__main__":
    main()
