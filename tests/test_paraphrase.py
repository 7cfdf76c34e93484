"""Prompt ensembling's paraphrasers: the offline one, the chat endpoint against a fake local
OpenAI-compatible server, and the fallback from one to the other."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rsgen.errors import RsgenError
from rsgen.pipelines.paraphrase import (
    FRAMINGS,
    SYNONYM_GROUPS,
    ChatParaphraser,
    OfflineParaphraser,
    SynonymGroup,
    paraphrase,
    parse_chat_lines,
)

PROMPTS = [
    "a fire in the forest",
    "the river is flooding",
    "the bridge is collapsed",
    "the house is damaged",
    "oil tanks are burning",
    "a flooded farmland",
]

# Each paraphrase must keep one word of every set (what happened, and to what).
MEANING_WORDS: dict[str, list[set[str]]] = {
    "a fire in the forest": [
        {"fire", "blaze", "wildfire", "burning", "smoke", "flames"},
        {"forest", "woodland", "wooded", "forested", "trees", "woods"},
    ],
    "the river is flooding": [
        {"river", "stream", "waterway"},
        {"flooding", "overflowing", "flood", "bursting its banks"},
    ],
    "the bridge is collapsed": [
        {"bridge", "overpass", "viaduct"},
        {"collapsed", "destroyed", "broken", "ruined", "ruins"},
    ],
    "the house is damaged": [
        {"house", "building", "residence", "home"},
        {"damaged", "destroyed", "wrecked", "ruins", "rubble", "debris"},
    ],
    "oil tanks are burning": [
        {"tanks"},
        {"burning", "blazing", "fire", "ablaze", "flames"},
    ],
    "a flooded farmland": [
        {"flooded", "inundated", "submerged", "under water"},
        {"farmland", "cropland", "agricultural land"},
    ],
}


def _has_any(text: str, words: set[str]) -> bool:
    return any(re.search(rf"\b{re.escape(word)}\b", text) for word in words)


# ---------------------------------------------------------------------------------------------
# offline


def test_offline_fire_in_the_forest_exact() -> None:
    assert OfflineParaphraser()("a fire in the forest") == [
        "a fire in the forest",
        "a blaze in the woodland",
        "an aerial image of a wildfire in the wooded area",
        "a satellite image showing a fire in the forested area",
        "a remote sensing image of a blaze in the forest",
    ]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_offline_is_deterministic_distinct_and_starts_with_the_prompt(prompt: str) -> None:
    first = OfflineParaphraser()(prompt)
    assert first == OfflineParaphraser()(prompt)
    assert first == paraphrase(prompt).prompts
    assert len(first) == 5
    assert first[0] == prompt
    assert len(set(first)) == len(first)
    for text in first:
        assert text == " ".join(text.lower().split())
        assert not re.search(r"\ba [aeiou]", text), text
        assert not re.search(r"\ban [b-df-hj-np-tv-z]", text), text


@pytest.mark.parametrize("prompt", PROMPTS)
def test_offline_keeps_the_meaning_words(prompt: str) -> None:
    prompts = OfflineParaphraser()(prompt)
    assert len(prompts) == 5
    for text in prompts:
        for words in MEANING_WORDS[prompt]:
            assert _has_any(text, words), (text, words)
    # and the paraphrases really vary the wording: more than one word of each set is used
    for words in MEANING_WORDS[prompt]:
        if len(words) > 1:
            used = {word for word in words for text in prompts if _has_any(text, {word})}
            assert len(used) > 1, (prompt, used)


def test_offline_frames_in_remote_sensing_terms() -> None:
    framed = [text for text in OfflineParaphraser()("a flooded farmland") if text != "a flooded farmland"]
    assert any(text.startswith("an aerial image of ") for text in framed)
    assert any(text.startswith("a satellite image showing ") for text in framed)
    assert any(text.startswith("a remote sensing image of ") for text in framed)
    # a clause is framed as a clause, never "an aerial image of the river is flooding"
    for text in OfflineParaphraser()("the river is flooding"):
        assert not re.search(r"image of .* is ", text), text


def test_offline_normalises_the_prompt() -> None:
    prompts = OfflineParaphraser()("  A Fire   in the\tFOREST ")
    assert prompts[0] == "a fire in the forest"
    assert prompts == OfflineParaphraser()("a fire in the forest")


def test_offline_returns_fewer_rather_than_duplicates() -> None:
    # framed already, no known word: nothing to vary
    assert OfflineParaphraser()("an aerial image of a playground") == ["an aerial image of a playground"]
    # framed already, one known word with three forms
    assert OfflineParaphraser()("an aerial image of a bridge", n=5) == [
        "an aerial image of a bridge",
        "an aerial image of an overpass",
        "an aerial image of a viaduct",
    ]
    # every variant there is, when asked for many
    many = OfflineParaphraser()("a bridge", n=1000)
    assert len(many) == len(set(many)) == 3 * (1 + len(FRAMINGS["noun_phrase"]))


def test_offline_n_limits_the_list() -> None:
    assert OfflineParaphraser()("a fire in the forest", n=1) == ["a fire in the forest"]
    assert OfflineParaphraser()("a fire in the forest", n=2) == [
        "a fire in the forest",
        "a blaze in the woodland",
    ]
    assert len(paraphrase("a fire in the forest", n=8).prompts) == 8


def test_offline_seed_draws_from_the_same_variants() -> None:
    prompt = "a fire in the forest"
    seeded = OfflineParaphraser(seed=3)(prompt)
    assert seeded == OfflineParaphraser(seed=3)(prompt)
    assert seeded[0] == prompt
    assert len(seeded) == len(set(seeded)) == 5
    assert set(seeded) <= set(OfflineParaphraser()(prompt, n=1000))
    assert paraphrase(prompt, seed=3).prompts == seeded
    draws = {tuple(OfflineParaphraser(seed=seed)(prompt)) for seed in range(5)}
    assert len(draws) > 1


def test_offline_predicative_synonyms_only_after_a_copula() -> None:
    # "on fire" / "ablaze" follow "are", but never stand before a noun
    assert any(
        "on fire" in text or "ablaze" in text for text in OfflineParaphraser()("oil tanks are burning")
    )
    for text in OfflineParaphraser()("burning oil tanks", n=100):
        assert not re.search(r"\b(on fire|ablaze|in flames)\b", text), text


def test_vocabulary_is_data_and_extends() -> None:
    for group in SYNONYM_GROUPS:
        assert len(group.phrases) >= 2, group
        assert all(phrase == phrase.lower().strip() for phrase in group.phrases), group
    custom = OfflineParaphraser(vocabulary=(SynonymGroup(("playground", "sports field")),), framings={})
    assert custom("a playground") == ["a playground", "a sports field"]


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_prompt_is_an_error(bad: str) -> None:
    with pytest.raises(RsgenError, match="prompt is empty"):
        paraphrase(bad)
    with pytest.raises(RsgenError, match="prompt is empty"):
        OfflineParaphraser()(bad)


@pytest.mark.parametrize("n", [0, -1])
def test_n_below_one_is_an_error(n: int) -> None:
    with pytest.raises(RsgenError, match="at least 1"):
        paraphrase("a fire in the forest", n=n)


# ---------------------------------------------------------------------------------------------
# a fake OpenAI-compatible server

Reply = tuple[int, bytes]


class FakeServer:
    """A chat completions server on 127.0.0.1 that records requests and answers with ``reply``."""

    def __init__(self, reply: Callable[[dict[str, Any]], Reply]) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                record = {"path": self.path, "headers": dict(self.headers.items()), "body": raw}
                server.requests.append(record)
                status, payload = reply(record)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def fake_server() -> Iterator[Callable[[Callable[[dict[str, Any]], Reply]], FakeServer]]:
    servers: list[FakeServer] = []

    def start(reply: Callable[[dict[str, Any]], Reply]) -> FakeServer:
        servers.append(FakeServer(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def completion(content: Any) -> Reply:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
    }
    return 200, json.dumps(body).encode()


CANNED = (
    "Here are 4 prompts:\n"
    "1. A blaze in the woodland\n"
    '- "a wildfire in the woods"\n'
    "\n"
    "* a fire in the forest\n"
    "2) A forest fire   seen from above\n"
    "3. a blaze in the woodland\n"
    "4. flames spreading through the trees\n"
)
CANNED_PROMPTS = [
    "a fire in the forest",
    "a blaze in the woodland",
    "a wildfire in the woods",
    "a forest fire seen from above",
    "flames spreading through the trees",
]


def test_chat_endpoint_request_and_answer(fake_server, monkeypatch: pytest.MonkeyPatch) -> None:
    server = fake_server(lambda request: completion(CANNED))
    monkeypatch.setenv("RSGEN_TEST_KEY", "sk-test-123")
    result = paraphrase(
        "A fire in the forest",
        n=5,
        endpoint=server.base + "/v1/",
        model="my-model",
        api_key_env="RSGEN_TEST_KEY",
    )
    assert result.source == "chat"
    assert result.warning is None
    assert result.prompts == CANNED_PROMPTS

    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test-123"
    assert request["headers"]["Content-Type"] == "application/json"
    body = json.loads(request["body"])
    assert body["model"] == "my-model"
    assert isinstance(body["temperature"], float)
    system, user = body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    assert user["content"] == "a fire in the forest"
    assert "4 new prompts" in system["content"]
    assert "one prompt per line" in system["content"]


def test_chat_endpoint_without_key_and_full_url(fake_server, monkeypatch: pytest.MonkeyPatch) -> None:
    server = fake_server(lambda request: completion(CANNED))
    monkeypatch.delenv("RSGEN_TEST_KEY", raising=False)
    chat = ChatParaphraser(server.base + "/v1/chat/completions", "m", api_key_env="RSGEN_TEST_KEY")
    assert chat("a fire in the forest", n=3) == CANNED_PROMPTS[:3]
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert "Authorization" not in request["headers"]
    assert chat("a fire in the forest", n=1) == ["a fire in the forest"]
    assert len(server.requests) == 1  # n == 1 needs no request


def test_chat_content_as_text_parts(fake_server) -> None:
    parts = [{"type": "text", "text": "a blaze in the woodland\n"}, {"type": "text", "text": "a wildfire"}]
    server = fake_server(lambda request: completion(parts))
    result = paraphrase("a fire in the forest", endpoint=server.base, model="m")
    assert result.source == "chat"
    assert result.prompts == ["a fire in the forest", "a blaze in the woodland", "a wildfire"]


def _check_fallback(result, *fragments: str) -> None:
    assert result.source == "offline"
    assert result.prompts == OfflineParaphraser()("a fire in the forest")
    assert result.warning is not None
    assert "\n" not in result.warning
    assert result.warning.startswith("paraphrase endpoint ")
    assert result.warning.endswith("; used the offline paraphraser")
    for fragment in fragments:
        assert fragment in result.warning, result.warning


def test_http_500_falls_back(fake_server) -> None:
    server = fake_server(lambda request: (500, b'{"error": "boom"}'))
    result = paraphrase("a fire in the forest", endpoint=server.base, model="m")
    _check_fallback(result, server.base + "/chat/completions", "HTTP 500")
    assert len(server.requests) == 1
    with pytest.raises(RsgenError, match="HTTP 500"):
        ChatParaphraser(server.base, "m")("a fire in the forest")


def test_closed_port_falls_back() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    result = paraphrase("a fire in the forest", endpoint=url, timeout=5)
    _check_fallback(result, f"{url}/chat/completions unreachable (", "refused")


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        ((200, b"<html>not json</html>"), "not JSON"),
        ((200, b'{"choices": []}'), "choices[0].message.content"),
        ((200, b'{"object": "error"}'), "choices[0].message.content"),
        (completion(""), "empty answer"),
        (completion(None), "empty answer"),
        (completion("Here are the prompts:\n\n1. a fire in the forest\n"), "no paraphrases"),
    ],
)
def test_bad_answers_fall_back(fake_server, reply: Reply, fragment: str) -> None:
    server = fake_server(lambda request: reply)
    result = paraphrase("a fire in the forest", endpoint=server.base, model="m")
    _check_fallback(result, fragment)


def test_timeout_falls_back(fake_server) -> None:
    def slow(request: dict[str, Any]) -> Reply:
        time.sleep(1.0)
        return completion(CANNED)

    server = fake_server(slow)
    started = time.monotonic()
    result = paraphrase("a fire in the forest", endpoint=server.base, model="m", timeout=0.2)
    assert time.monotonic() - started < 0.9
    _check_fallback(result, "timed out after 0.2 s")


def test_bad_url_falls_back_and_chat_rejects_it() -> None:
    result = paraphrase("a fire in the forest", endpoint="ftp://example.org/v1")
    _check_fallback(result, "not an http:// or https:// URL")
    with pytest.raises(RsgenError, match="not an http"):
        ChatParaphraser("example.org/v1", "m")


def test_validation_happens_before_any_request(fake_server) -> None:
    server = fake_server(lambda request: completion(CANNED))
    with pytest.raises(RsgenError, match="prompt is empty"):
        paraphrase("  ", endpoint=server.base)
    with pytest.raises(RsgenError, match="at least 1"):
        paraphrase("a fire in the forest", n=0, endpoint=server.base)
    assert server.requests == []


def test_parse_chat_lines() -> None:
    content = (
        "Sure! Here are three prompts:\n"
        "1. 'An aerial image of a blaze'\n"
        "  2)  “a wildfire in the woods”  \n"
        "Prompt 3: smoke over the trees\n"
        "• a fire in the forest\n"
        "- a fire in the forest\n"
        "#5 a burning woodland\n"
        "\n"
    )
    assert parse_chat_lines(content) == [
        "an aerial image of a blaze",
        "a wildfire in the woods",
        "smoke over the trees",
        "a fire in the forest",
        "a burning woodland",
    ]
