"""Prompt ensembling's paraphrasers: one editing prompt becomes a few prompts with the same meaning.

"Exploring Text-Guided Single Image Editing for Remote Sensing Images" (section III-C) expands the
user's prompt into about five paraphrases and averages their normalised text embeddings, which
makes the edit less sensitive to the wording of one prompt. This module produces the paraphrases;
the embedding and averaging belong to the editor that uses them.

>>> paraphrase("a fire in the forest", n=3).prompts
['a fire in the forest', 'a blaze in the woodland', 'an aerial image of a wildfire in the wooded area']

Two paraphrasers:

- :class:`OfflineParaphraser` (the default) needs nothing: templates and a small remote-sensing
  vocabulary (:data:`SYNONYM_GROUPS`, :data:`FRAMINGS`), deterministic unless given a seed.
- :class:`ChatParaphraser` asks an OpenAI-compatible chat completions endpoint, as the paper asks
  ChatGPT, using only the standard library.

:func:`paraphrase` uses the chat endpoint when one is given and falls back to the offline
paraphraser on any failure, returning a one-line warning for the caller to print. Every list
starts with the original prompt, is lower case with normalised whitespace, and has no duplicates.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import random
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from rsgen.errors import RsgenError

DEFAULT_NUM_PROMPTS = 5
#: The model named in chat requests when :func:`paraphrase` gets an endpoint but no model.
DEFAULT_CHAT_MODEL = "gpt-4o-mini"
CHAT_COMPLETIONS_PATH = "/chat/completions"
#: The largest chat answer read, in bytes (a paraphrase list is a few hundred).
MAX_RESPONSE_BYTES = 1 << 20


@dataclass(frozen=True)
class SynonymGroup:
    """Words or phrases that can replace one another in a prompt without changing its meaning.

    Args:
        words: interchangeable anywhere ("flooded" ↔ "inundated"); the first is the usual word.
        predicative: replacements that only read well after a copula ("the tanks are *on fire*",
            never "on fire tanks"); a prompt using one of them matches the group too.
    """

    words: tuple[str, ...]
    predicative: tuple[str, ...] = ()

    @property
    def phrases(self) -> tuple[str, ...]:
        """Every phrase of the group, the ones usable anywhere first."""
        return self.words + self.predicative


def _group(*words: str, predicative: tuple[str, ...] = ()) -> SynonymGroup:
    return SynonymGroup(words=words, predicative=predicative)


#: The remote-sensing vocabulary: disaster words first, then what they happen to. A phrase listed
#: in two groups belongs to the first; the longest phrase in a prompt wins ("oil tanks" over
#: "tanks"). Singular and plural are separate groups so that articles and verbs still agree.
SYNONYM_GROUPS: tuple[SynonymGroup, ...] = (
    # fire
    _group("fire", "blaze", "wildfire"),
    _group("fires", "blazes", "wildfires"),
    _group("burning", "blazing", predicative=("on fire", "ablaze", "in flames")),
    _group("burned", "burnt", "scorched", "charred"),
    _group("smoke plume", "plume of smoke", "column of smoke"),
    # water
    _group("flood", "inundation", "deluge"),
    _group("floods", "inundations"),
    _group("flooded", "inundated", "submerged", predicative=("under water", "covered by water")),
    _group("flooding", predicative=("overflowing", "in flood", "bursting its banks")),
    # destruction
    _group("collapsed", "destroyed", "broken", "ruined", predicative=("in ruins",)),
    _group("damaged", "destroyed", "wrecked", predicative=("in ruins", "reduced to rubble")),
    _group("debris", "rubble", "wreckage"),
    _group("damage", "destruction"),
    _group("landslide", "mudslide"),
    # buildings and infrastructure
    _group("house", "building", "residence", "home"),
    _group("houses", "buildings", "residences", "homes"),
    _group("residential area", "neighborhood", "housing area"),
    _group("factory", "industrial plant", "industrial facility"),
    _group("factories", "industrial plants", "industrial facilities"),
    _group("bridge", "overpass", "viaduct"),
    _group("bridges", "overpasses", "viaducts"),
    _group("road", "street", "roadway"),
    _group("roads", "streets", "roadways"),
    _group("oil tank", "oil storage tank", "fuel tank", "fuel storage tank"),
    _group("oil tanks", "oil storage tanks", "fuel tanks", "fuel storage tanks"),
    _group("storage tank", "tank"),
    _group("storage tanks", "tanks"),
    _group("airport", "airfield"),
    _group("harbor", "port", "harbour"),
    _group("city", "town", "urban area"),
    # vehicles
    _group("ship", "vessel", "boat"),
    _group("ships", "vessels", "boats"),
    _group("car", "vehicle"),
    _group("cars", "vehicles"),
    # land and water
    _group("river", "stream", "waterway"),
    _group("rivers", "streams", "waterways"),
    _group("forest", "woodland", "wooded area", "forested area"),
    _group("forests", "woodlands", "trees"),
    _group("farmland", "cropland", "agricultural land"),
    _group("field", "farm field", "crop field"),
    _group("fields", "farm fields", "crop fields"),
    _group("coast", "coastline", "shoreline"),
)

#: Remote-sensing framings, by the shape of the prompt: a noun phrase ("a flooded farmland"),
#: a clause ("the river is flooding"), or anything else (framed from behind, which always
#: reads). ``{}`` is the prompt.
FRAMINGS: dict[str, tuple[str, ...]] = {
    "noun_phrase": (
        "an aerial image of {}",
        "a satellite image showing {}",
        "a remote sensing image of {}",
        "an overhead view of {}",
        "a high-resolution satellite image of {}",
    ),
    "clause": (
        "an aerial image in which {}",
        "a satellite image showing that {}",
        "a remote sensing image where {}",
        "an overhead view in which {}",
    ),
    "other": (
        "{}, seen in an aerial image",
        "{}, in a satellite image",
        "{}, in a remote sensing image",
        "{}, seen from above",
    ),
}

#: Words after which a predicative replacement reads ("is", "are", ...); their presence also
#: makes a prompt a clause.
COPULAS: frozenset[str] = frozenset(
    {"is", "are", "was", "were", "be", "been", "being", "seems", "seem", "looks", "look"}
)
#: Words that start a noun phrase.
DETERMINERS: frozenset[str] = frozenset(
    {"a", "an", "the", "some", "several", "many", "few", "two", "three", "this", "these", "its"}
)
#: Words that show a prompt is framed already ("an aerial photo of ..."): no framing is added.
FRAME_WORDS: frozenset[str] = frozenset(
    {"aerial", "satellite", "remote", "overhead", "image", "photo", "photograph", "picture", "view"}
)

_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[^\sa-z0-9]")
_ATTACHED_PUNCTUATION = frozenset(",.;:!?)")
_FINAL_PUNCTUATION = frozenset(".;!")
_VOWELS = frozenset("aeiou")
_BULLET = re.compile(
    r"^\s*(?:[-*•·>]+|\(?\d{1,2}\s*[.):]|#\d{1,2}\s*[.):]?|prompt\s*\d{0,2}\s*:)\s*", re.IGNORECASE
)
_QUOTES = "\"'`“”‘’«»"


class Paraphraser(Protocol):
    """Anything that turns a prompt into at most ``n`` prompts, the original first."""

    def __call__(self, prompt: str, n: int = DEFAULT_NUM_PROMPTS) -> list[str]: ...


@dataclass
class ParaphraseResult:
    """What :func:`paraphrase` returns.

    Attributes:
        prompts: the original prompt (normalised) first, then its distinct paraphrases.
        source: ``"chat"`` when the endpoint answered, ``"offline"`` otherwise.
        warning: one line saying why the endpoint was not used, for the caller to print; None
            when nothing went wrong.
    """

    prompts: list[str]
    source: Literal["offline", "chat"]
    warning: str | None = None


def normalize_prompt(text: str) -> str:
    """Lower case, with runs of whitespace made one space and the ends stripped."""
    return " ".join(text.lower().split())


def _check_request(prompt: str, n: int) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise RsgenError("prompt is empty")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise RsgenError(f"the number of paraphrases must be at least 1, got {n!r}")
    return normalize_prompt(prompt)


def _unique(prompts: Sequence[str], n: int) -> list[str]:
    """The first ``n`` distinct non-empty prompts, in order."""
    out: list[str] = []
    for prompt in prompts:
        if prompt and prompt not in out:
            out.append(prompt)
        if len(out) == n:
            break
    return out


# --------------------------------------------------------------------------------------------
# offline


def _join(tokens: Sequence[str]) -> str:
    """Tokens back to text: a space before each word, none before closing punctuation; articles
    agree with the word after them ("a inundated" → "an inundated")."""
    words = " ".join(tokens).split(" ")
    for i in range(len(words) - 1):
        if words[i] in ("a", "an") and words[i + 1][:1].isalpha():
            words[i] = "an" if words[i + 1][0] in _VOWELS else "a"
    text = ""
    for word in words:
        if text and not (len(word) == 1 and word in _ATTACHED_PUNCTUATION) and not text.endswith("("):
            text += " "
        text += word
    return text


@dataclass(frozen=True)
class _Slot:
    """A matched vocabulary phrase: tokens ``start:end`` of the prompt and what may replace them."""

    start: int
    end: int
    alternatives: tuple[str, ...]  # the phrase found first, then the others


class OfflineParaphraser:
    """Paraphrases from templates and a small remote-sensing vocabulary; no network, no model.

    Each paraphrase swaps every vocabulary phrase of the prompt for a synonym
    (:data:`SYNONYM_GROUPS`) and most also put the prompt in a remote-sensing framing
    (:data:`FRAMINGS`: "an aerial image of ...", "a satellite image showing ..."). Prompts with
    few known words have few variants: the list is then shorter than ``n``, never padded.

    Args:
        seed: None (the default) gives the same list for the same prompt every time, the most
            varied paraphrases first; an integer draws the paraphrases at random from the
            possible ones with :class:`random.Random` (same seed, same list).
        vocabulary: the synonym groups to use.
        framings: the framings to use, keyed ``noun_phrase``, ``clause`` and ``other``.
    """

    def __init__(
        self,
        seed: int | None = None,
        vocabulary: Sequence[SynonymGroup] = SYNONYM_GROUPS,
        framings: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.seed = seed
        self.framings = FRAMINGS if framings is None else framings
        self._lookup: dict[tuple[str, ...], SynonymGroup] = {}
        for group in vocabulary:
            for phrase in group.phrases:
                self._lookup.setdefault(tuple(_TOKEN.findall(phrase)), group)
        self._longest = max((len(key) for key in self._lookup), default=0)

    def __call__(self, prompt: str, n: int = DEFAULT_NUM_PROMPTS) -> list[str]:
        """At most ``n`` distinct prompts meaning ``prompt``, the normalised prompt first.

        Raises:
            RsgenError: the prompt is empty or ``n`` is below 1.
        """
        original = _check_request(prompt, n)
        if n == 1:
            return [original]
        tokens = _TOKEN.findall(original)
        while tokens and tokens[-1] in _FINAL_PUNCTUATION:  # "... the factory." → framed cleanly
            tokens.pop()
        slots = self._slots(tokens)
        frames = (None, *self._framings_for(tokens))
        candidates = (
            self._render(tokens, slots, frame, choice) for frame, choice in self._combinations(slots, frames)
        )
        if self.seed is None:
            return _unique(itertools.chain([original], candidates), n)
        pool = _unique(candidates, 256)
        random.Random(self.seed).shuffle(pool)
        return _unique([original, *pool], n)

    def _slots(self, tokens: Sequence[str]) -> list[_Slot]:
        """The vocabulary phrases in ``tokens``, left to right, longest match first."""
        slots: list[_Slot] = []
        i = 0
        while i < len(tokens):
            for length in range(min(self._longest, len(tokens) - i), 0, -1):
                group = self._lookup.get(tuple(tokens[i : i + length]))
                if group is not None:
                    found = " ".join(tokens[i : i + length])
                    after_copula = i > 0 and tokens[i - 1] in COPULAS
                    usable = group.phrases if after_copula else group.words
                    others = tuple(p for p in usable if p != found)
                    if others:
                        slots.append(_Slot(i, i + length, (found, *others)))
                    i += length
                    break
            else:
                i += 1
        return slots

    def _framings_for(self, tokens: Sequence[str]) -> tuple[str, ...]:
        if FRAME_WORDS.intersection(tokens):
            return ()
        if COPULAS.intersection(tokens):
            return self.framings.get("clause", ())
        if tokens and (tokens[0] in DETERMINERS or self._starts_with_vocabulary(tokens)):
            return self.framings.get("noun_phrase", ())
        return self.framings.get("other", ())

    def _starts_with_vocabulary(self, tokens: Sequence[str]) -> bool:
        return any(
            tuple(tokens[:length]) in self._lookup for length in range(1, min(self._longest, len(tokens)) + 1)
        )

    @staticmethod
    def _combinations(
        slots: Sequence[_Slot], frames: Sequence[str | None]
    ) -> itertools.chain[tuple[str | None, tuple[int, ...]]]:
        """(framing, synonym index per slot) pairs: first "diagonals" that change every slot at
        once (the first with no framing, the next ones each framed differently), then every
        combination, so that a prompt with few variants still yields all of them."""
        sizes = [len(slot.alternatives) for slot in slots]
        rounds = max([len(frames), *sizes]) * len(frames)
        diagonals = (
            (frames[(i - 1) % len(frames)], tuple(i % size for size in sizes)) for i in range(1, rounds + 1)
        )
        everything = (
            (frame, choice)
            for choice in itertools.product(*(range(size) for size in sizes))
            for frame in frames
        )
        skip_identity = ((frame, choice) for frame, choice in everything if frame or any(choice))
        return itertools.chain(diagonals, skip_identity)

    @staticmethod
    def _render(
        tokens: Sequence[str], slots: Sequence[_Slot], frame: str | None, choice: Sequence[int]
    ) -> str:
        out: list[str] = []
        cursor = 0
        for slot, index in zip(slots, choice, strict=True):
            out.extend(tokens[cursor : slot.start])
            out.append(slot.alternatives[index])
            cursor = slot.end
        out.extend(tokens[cursor:])
        text = _join(out)
        if frame is not None:
            text = _join(frame.format(text).split(" "))
        return normalize_prompt(text)


# --------------------------------------------------------------------------------------------
# chat endpoint

#: The system message sent to the chat model, adapted from the paper's instruction to ChatGPT.
CHAT_SYSTEM_PROMPT = (
    "You are a text prompt generator for editing remote sensing images. Given a text prompt, "
    "generate {count} new prompts with different descriptions but a similar meaning. Keep the same "
    "syntax format as the given prompt and keep every prompt concise. Write one prompt per line, "
    "with no numbering, no quotes and no explanations."
)


class ChatParaphraser:
    """Paraphrases from an OpenAI-compatible chat completions endpoint (OpenAI, vLLM, llama.cpp,
    Ollama, ...), through :mod:`urllib.request` only.

    The request is ``POST {url}/chat/completions`` (or ``url`` itself when it already ends in
    ``/chat/completions``) with the model, a system message asking for ``n - 1`` paraphrases
    one per line (:data:`CHAT_SYSTEM_PROMPT`), the prompt, and the temperature. The answer's
    ``choices[0].message.content`` is split into lines; bullets, numbering and quotes are
    stripped, empty and repeated lines dropped, and the original prompt is put first.

    Args:
        url: the API base (``http://localhost:8000/v1``) or the full completions URL.
        model: the model name sent in the request.
        api_key_env: the environment variable holding the API key, sent as
            ``Authorization: Bearer <key>`` when set and not empty; None sends no key.
        timeout: seconds to wait for the connection and for the answer.
        temperature: sampling temperature sent in the request.
    """

    def __init__(
        self,
        url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 10,
        temperature: float = 0.7,
    ) -> None:
        url = url.strip()
        if not re.match(r"https?://[^/\s]", url):
            raise RsgenError(f"paraphrase endpoint {url!r} is not an http:// or https:// URL")
        if not model.strip():
            raise RsgenError("the paraphrase model name is empty")
        if timeout <= 0:
            raise RsgenError(f"the paraphrase endpoint timeout must be positive, got {timeout}")
        url = url.rstrip("/")
        self.url = url if url.endswith(CHAT_COMPLETIONS_PATH) else url + CHAT_COMPLETIONS_PATH
        self.model = model.strip()
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.temperature = temperature

    def request_body(self, prompt: str, n: int) -> dict[str, Any]:
        """The JSON body asking for ``n - 1`` paraphrases of the (normalised) ``prompt``."""
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": CHAT_SYSTEM_PROMPT.format(count=n - 1)},
                {"role": "user", "content": prompt},
            ],
            "temperature": self.temperature,
        }

    def __call__(self, prompt: str, n: int = DEFAULT_NUM_PROMPTS) -> list[str]:
        """At most ``n`` distinct prompts meaning ``prompt``, the normalised prompt first
        (``n == 1`` sends no request).

        Raises:
            RsgenError: the prompt is empty, ``n`` is below 1, or the endpoint failed (unreachable,
                timed out, an HTTP error, an answer that is not a chat completion, or one with no
                new prompt); the message is one line and names the endpoint.
        """
        original = _check_request(prompt, n)
        if n == 1:
            return [original]
        answer = self._post(self.request_body(original, n))
        lines = parse_chat_lines(self._content(answer))
        prompts = _unique([original, *lines], n)
        if len(prompts) < 2:
            raise RsgenError(f"paraphrase endpoint {self.url} returned no paraphrases")
        return prompts

    def _post(self, body: dict[str, Any]) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env, "").strip() if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        where = f"paraphrase endpoint {self.url}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            raise RsgenError(f"{where} answered HTTP {error.code} ({_one_line(error.reason)})") from None
        except urllib.error.URLError as error:
            raise RsgenError(f"{where} unreachable ({_describe(error.reason, self.timeout)})") from None
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise RsgenError(f"{where} unreachable ({_describe(error, self.timeout)})") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise RsgenError(f"{where} returned more than {MAX_RESPONSE_BYTES} bytes")
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError:
            raise RsgenError(f"{where} returned an answer that is not JSON") from None

    def _content(self, answer: Any) -> str:
        """``choices[0].message.content`` (a string, or a list of text parts)."""
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise RsgenError(
                f"paraphrase endpoint {self.url} returned JSON without choices[0].message.content"
            ) from None
        if isinstance(content, list):
            content = "\n".join(
                part.get("text", "")
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
        if not isinstance(content, str) or not content.strip():
            raise RsgenError(f"paraphrase endpoint {self.url} returned an empty answer")
        return content


def parse_chat_lines(content: str) -> list[str]:
    """The prompts in a chat answer: one per line, normalised, with bullets ("-", "*", "1.",
    "2)", "Prompt 3:"), surrounding quotes and empty lines removed; a line ending in ":" (a
    preamble such as "Here are four prompts:") is dropped."""
    prompts: list[str] = []
    for line in content.splitlines():
        text = line.strip()
        if not text or text.endswith(":"):
            continue
        text = _BULLET.sub("", text).strip().strip(_QUOTES).strip()
        text = normalize_prompt(text)
        if text and text not in prompts:
            prompts.append(text)
    return prompts


def _one_line(value: object) -> str:
    return " ".join(str(value).split()) or "no reason given"


def _describe(reason: object, timeout: float) -> str:
    """A short reason for a failed connection: "Connection refused", "timed out after 10 s"."""
    if isinstance(reason, TimeoutError | socket.timeout):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return _one_line(reason.strerror)
    return _one_line(reason) if str(reason) else type(reason).__name__


# --------------------------------------------------------------------------------------------
# the entry point


def paraphrase(
    prompt: str,
    n: int = DEFAULT_NUM_PROMPTS,
    endpoint: str | None = None,
    model: str | None = None,
    api_key_env: str | None = "OPENAI_API_KEY",
    timeout: float = 10,
    seed: int | None = None,
) -> ParaphraseResult:
    """Up to ``n`` prompts meaning ``prompt`` (it first), for prompt ensembling.

    With an ``endpoint``, asks it through :class:`ChatParaphraser` (``model`` defaults to
    :data:`DEFAULT_CHAT_MODEL`); if that fails in any way (bad URL, connection refused, timeout,
    HTTP error, an answer that is not a chat completion, no new prompt), uses
    :class:`OfflineParaphraser` instead and says why in ``warning``, one line for the caller to
    print (nothing is sent to :mod:`warnings`). Without an endpoint, uses the offline one.

    Args:
        prompt: the user's editing prompt.
        n: the most prompts returned, the original included (fewer when the offline
            paraphraser knows fewer variants).
        endpoint: an OpenAI-compatible API base or chat completions URL, or None.
        model: the chat model name.
        api_key_env: the environment variable with the endpoint's API key.
        timeout: seconds to wait for the endpoint.
        seed: the offline paraphraser's seed (None: its fixed order).

    Raises:
        RsgenError: the prompt is empty or ``n`` is below 1 (checked before any request).
    """
    _check_request(prompt, n)
    warning = None
    if endpoint is not None:
        try:
            chat = ChatParaphraser(
                endpoint, model or DEFAULT_CHAT_MODEL, api_key_env=api_key_env, timeout=timeout
            )
            return ParaphraseResult(prompts=chat(prompt, n), source="chat")
        except RsgenError as error:
            warning = f"{_one_line(error)}; used the offline paraphraser"
    return ParaphraseResult(
        prompts=OfflineParaphraser(seed=seed)(prompt, n), source="offline", warning=warning
    )


__all__ = [
    "CHAT_SYSTEM_PROMPT",
    "DEFAULT_CHAT_MODEL",
    "FRAMINGS",
    "SYNONYM_GROUPS",
    "ChatParaphraser",
    "OfflineParaphraser",
    "ParaphraseResult",
    "Paraphraser",
    "SynonymGroup",
    "normalize_prompt",
    "parse_chat_lines",
    "paraphrase",
]
