"""docs/openapi.json: fresh, and true to the descriptor set and role table.

scripts/gen_openapi.py builds the document from build/retain.binpb, which
`make proto` writes. test_gateway_public.py checks that Envoy serves it.
"""

from __future__ import annotations

import importlib.util
import json
import re
from types import ModuleType
from typing import Any

import pytest
from gateway_harness import DESCRIPTOR_SET, OPENAPI_DOCUMENT, ROOT
from retain_cli import gateway_access
from retain_cli.envoy_routes import HttpRule, read_http_rules


def load_generator() -> ModuleType:
    path = ROOT / "scripts" / "gen_openapi.py"
    spec = importlib.util.spec_from_file_location("gen_openapi", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    if not DESCRIPTOR_SET.exists():
        pytest.fail(f"{DESCRIPTOR_SET} is missing; run `make proto` to generate it")
    generated: dict[str, Any] = load_generator().build_document(DESCRIPTOR_SET)
    return generated


@pytest.fixture(scope="module")
def rules() -> list[HttpRule]:
    return read_http_rules(DESCRIPTOR_SET)


def operation(document: dict[str, Any], rule: HttpRule) -> dict[str, Any]:
    path = re.sub(r"\{([^}=]+)=[^}]*\}", r"{\1}", rule.template)
    found: dict[str, Any] = document["paths"][path][rule.http_method.lower()]
    return found


def test_checked_in_document_is_fresh(document: dict[str, Any]) -> None:
    fresh = load_generator().render(document)
    committed = OPENAPI_DOCUMENT.read_text() if OPENAPI_DOCUMENT.exists() else ""

    assert committed == fresh, "docs/openapi.json is out of date: run make openapi"


def test_generation_is_deterministic(document: dict[str, Any]) -> None:
    generator = load_generator()

    again = generator.render(generator.build_document(DESCRIPTOR_SET))

    assert again == generator.render(document)


def test_every_annotated_rpc_present(
    document: dict[str, Any], rules: list[HttpRule]
) -> None:
    operation_ids = {
        op["operationId"] for ops in document["paths"].values() for op in ops.values()
    }

    assert len(rules) > 0
    assert len(operation_ids) == len(rules)
    for rule in rules:
        found = operation(document, rule)
        assert found["x-grpc-method"] == f"/{rule.service}/{rule.method}"


def test_path_parameters_present(
    document: dict[str, Any], rules: list[HttpRule]
) -> None:
    for rule in rules:
        parameters = operation(document, rule)["parameters"]
        in_path = [p["name"] for p in parameters if p["in"] == "path"]
        assert in_path == rule.path_fields, rule.template
        assert all(p["required"] for p in parameters if p["in"] == "path")


def test_get_fields_outside_path_are_query_parameters(
    document: dict[str, Any],
) -> None:
    messages = operation_by_id(document, "CommsService_ListMessages")
    scores = operation_by_id(document, "InferenceService_ListScores")

    message_query = {p["name"] for p in messages["parameters"] if p["in"] == "query"}
    score_query = {p["name"] for p in scores["parameters"] if p["in"] == "query"}
    assert message_query == {"state", "pageSize", "pageToken"}
    assert "scoringRunId" in score_query
    assert "requestBody" not in messages


def test_json_convention_of_transcoder(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    campaign = schemas["retain.comms.v1.Campaign"]["properties"]

    assert campaign["campaignId"]["type"] == "string"
    assert campaign["campaignId"]["format"] == "int64"
    assert campaign["createTime"]["format"] == "date-time"
    assert campaign["status"] == {
        "$ref": "#/components/schemas/retain.comms.v1.CampaignStatus"
    }
    assert "CAMPAIGN_STATUS_DRAFT" in schemas["retain.comms.v1.CampaignStatus"]["enum"]


def test_security_follows_role_table(
    document: dict[str, Any], rules: list[HttpRule]
) -> None:
    for rule in rules:
        roles = gateway_access.GATEWAY_ACCESS[rule.service][rule.method]
        security = operation(document, rule)["security"]
        schemes = {name for requirement in security for name in requirement}
        assert (security == []) == (gateway_access.PUBLIC in roles), rule.method
        assert ("apiKey" in schemes) == (gateway_access.PARTNER in roles), rule.method
        bearer_roles = {gateway_access.ADMIN, gateway_access.ANALYST}
        assert ("bearerAuth" in schemes) == bool(bearer_roles & set(roles))


def test_errors_use_error_schema(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]

    assert error["required"] == ["code", "message"]
    for ops in document["paths"].values():
        for op in ops.values():
            content = op["responses"]["default"]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Error"}


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    references = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))

    assert references <= set(document["components"]["schemas"])


def operation_by_id(document: dict[str, Any], operation_id: str) -> dict[str, Any]:
    for ops in document["paths"].values():
        for op in ops.values():
            if op["operationId"] == operation_id:
                found: dict[str, Any] = op
                return found
    raise AssertionError(f"no operation {operation_id}")
