"""The Groq stand-in: Groq's JSON shapes, the key check, scripts and the request log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from retain_emulator.groq import ANY_MODEL, CHAT_COMPLETIONS_PATH, GroqStandIn

KEY = "gsk_stand_in_key"
MODEL = "openai/gpt-oss-20b"
OTHER_MODEL = "openai/gpt-oss-120b"


@pytest.fixture
def stand_in() -> Iterator[GroqStandIn]:
    with GroqStandIn(KEY) as server:
        yield server


@pytest.fixture
def http(stand_in: GroqStandIn) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=stand_in.base_url, headers=headers, timeout=5) as c:
        yield c


def chat(http: httpx.Client, model: str = MODEL, user: Any = "hello") -> httpx.Response:
    content = user if isinstance(user, str) else json.dumps(user)
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "rules"},
            {"role": "user", "content": content},
        ],
        "response_format": {"type": "json_object"},
    }
    return http.post(CHAT_COMPLETIONS_PATH, json=body)


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"}
    return error


def text_of(response: httpx.Response) -> str:
    content = response.json()["choices"][0]["message"]["content"]
    return json.loads(content)["text"]


def test_completion_has_groq_shape(http):
    response = chat(http)

    assert response.status_code == 200
    payload = response.json()
    assert payload["object"] == "chat.completion"
    assert payload["id"].startswith("chatcmpl-")
    assert payload["model"] == MODEL
    assert payload["choices"][0]["message"]["role"] == "assistant"
    assert payload["choices"][0]["finish_reason"] == "stop"
    usage = payload["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_default_reply_uses_request_fields(http):
    data = {
        "language_name": "English",
        "brand_name": "SafiriRide",
        "allowed_offer": "20% off your next ride",
        "opt_out_hint": "Reply STOP to opt out.",
    }

    text = text_of(chat(http, user=data))

    assert text.count("{first_name}") == 1
    assert "SafiriRide" in text
    assert "20% off your next ride" in text
    assert text.endswith("Reply STOP to opt out.")


def test_default_reply_in_swahili(http):
    text = text_of(chat(http, user={"language_name": "Swahili", "brand_name": "X"}))

    assert text.startswith("Habari {first_name}")


def test_default_reply_without_json_request(http):
    assert text_of(chat(http, user="plain words")).startswith("Hi {first_name}")


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer wrong", f"Basic {KEY}"],
    ids=["none", "wrong", "basic"],
)
def test_wrong_key_is_rejected(stand_in, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=stand_in.base_url, headers=headers) as client:
        response = chat(client)

    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"
    assert stand_in.requests == []


def test_decommissioned_model_returns_400(stand_in, http):
    stand_in.decommission(MODEL)

    response = chat(http)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "model_decommissioned"
    assert error["type"] == "invalid_request_error"
    assert chat(http, OTHER_MODEL).status_code == 200


def test_forgotten_model_returns_404(stand_in, http):
    stand_in.forget_model(MODEL)

    response = chat(http)

    assert response.status_code == 404
    assert error_of(response)["code"] == "model_not_found"


def test_models_list_limits_known_models():
    with GroqStandIn(KEY, models=[MODEL]) as server:
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=server.base_url, headers=headers) as client:
            assert chat(client, MODEL).status_code == 200
            assert chat(client, OTHER_MODEL).status_code == 404
            listed = client.get("/openai/v1/models").json()

    assert [model["id"] for model in listed["data"]] == [MODEL]


def test_rate_limit_answers_429_then_recovers(stand_in, http):
    stand_in.rate_limit(MODEL, times=2, retry_after=7)

    first, second, third = chat(http), chat(http), chat(http)

    assert first.status_code == second.status_code == 429
    assert first.headers["retry-after"] == "7"
    assert error_of(first)["code"] == "rate_limit_exceeded"
    assert third.status_code == 200


def test_too_large_answers_413_every_time(stand_in, http):
    stand_in.reject_as_too_large(MODEL)

    responses = [chat(http), chat(http)]

    assert [r.status_code for r in responses] == [413, 413]
    error = error_of(responses[0])
    assert error["type"] == "tokens"
    assert "Request too large" in error["message"]


def test_fail_answers_given_error_once(stand_in, http):
    stand_in.fail(MODEL, 503, "service_unavailable", "over capacity")

    failed = chat(http)

    assert failed.status_code == 503
    assert error_of(failed)["message"] == "over capacity"
    assert chat(http).status_code == 200


def test_reply_with_content_returns_it_verbatim(stand_in, http):
    stand_in.reply_with_content(MODEL, "not json at all", times=1)

    scripted, default = chat(http), chat(http)

    assert scripted.json()["choices"][0]["message"]["content"] == "not json at all"
    assert text_of(default).startswith("Hi")


def test_reply_with_text_wraps_json(stand_in, http):
    stand_in.reply_with_text(MODEL, "see https://example.org")

    assert text_of(chat(http)) == "see https://example.org"


def test_any_model_script_applies_to_every_model(stand_in, http):
    stand_in.reply_with_text(ANY_MODEL, "same")

    assert text_of(chat(http, MODEL)) == "same"
    assert text_of(chat(http, OTHER_MODEL)) == "same"


def test_delay_outlasts_client_timeout(stand_in):
    stand_in.delay(MODEL, seconds=2.0)
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=stand_in.base_url, headers=headers, timeout=0.2) as c:
        with pytest.raises(httpx.ReadTimeout):
            chat(c)
        assert chat(c).status_code == 200


def test_requests_are_recorded_with_messages(stand_in, http):
    stand_in.decommission(OTHER_MODEL)

    chat(http, MODEL, user="first")
    chat(http, OTHER_MODEL, user="second")

    assert [r.model for r in stand_in.requests] == [MODEL, OTHER_MODEL]
    assert stand_in.requests_for(MODEL)[0].messages[1]["content"] == "first"
    assert "second" in stand_in.requests_for(OTHER_MODEL)[0].prompt_text()


def test_reset_clears_scripts_and_requests(stand_in, http):
    stand_in.decommission(MODEL)
    chat(http)

    stand_in.reset()

    assert stand_in.requests == []
    assert chat(http).status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"{not json", 400, id="invalid-json"),
        pytest.param(b'{"messages": []}', 400, id="no-model"),
        pytest.param(b'{"model": "m"}', 400, id="no-messages"),
    ],
)
def test_malformed_body_returns_400(http, body, status):
    response = http.post(CHAT_COMPLETIONS_PATH, content=body)

    assert response.status_code == status
    assert "message" in error_of(response)


def test_unknown_path_returns_404(http):
    response = http.post("/openai/v1/embeddings", json={})

    assert response.status_code == 404
    assert error_of(response)["code"] == "unknown_url"
