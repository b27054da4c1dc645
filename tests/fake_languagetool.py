"""A FAKE LanguageTool HTTP server for tests: protocol-faithful, linguistically trivial.

LanguageTool's Java server cannot be installed on these machines (no download at run time),
so the tests talk to this stand-in. It speaks the parts of LanguageTool's HTTP API v2 that
language-tool-python and our stage use, the way LanguageTool answers them:

- ``GET /v2/languages`` -> JSON list of ``{"name", "code", "longCode"}``;
- ``POST /v2/check`` with a form-encoded body (``text``, ``language``, …) -> JSON with
  ``software``, ``language`` and ``matches``; each match has ``message``, ``offset``,
  ``length``, ``replacements``, ``context``, ``sentence`` and ``rule`` with ``id``,
  ``description``, ``issueType`` and ``category`` (``id``, ``name``);
- a text over ``max_text_length`` -> HTTP 413 with a plain-text ``Error: …`` body, and a
  missing ``text``/``language`` or an unknown language -> HTTP 400, as LanguageTool does;
- ``fail_next(n)`` makes the next n checks answer HTTP 503 (a transient overload).

Its "rules" are a few fixed patterns, enough to produce each kind of match on demand:
``teh``/``recieve`` (spelling, category TYPOS), ``a apple``-style article errors
(grammar, category GRAMMAR) and a space before a comma (punctuation, category PUNCTUATION).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

LANGUAGES = [
    {"name": "English", "code": "en", "longCode": "en"},
    {"name": "English (US)", "code": "en", "longCode": "en-US"},
    {"name": "English (GB)", "code": "en", "longCode": "en-GB"},
    {"name": "German", "code": "de", "longCode": "de-DE"},
]
_LONG_CODES = {lang["longCode"] for lang in LANGUAGES} | {"auto"}

RULES = [
    # (pattern, rule id, issue type, category id, category name, message)
    (
        re.compile(r"\b(teh|recieve)\b", re.I),
        "MORFOLOGIK_RULE_EN_US",
        "misspelling",
        "TYPOS",
        "Possible Typo",
        "Possible spelling mistake found.",
    ),
    (
        re.compile(r"\ba (?=[aeiou]\w)", re.I),
        "EN_A_VS_AN",
        "misspelling",
        "MISC",
        "Miscellaneous",
        "Use 'an' instead of 'a' if the following word starts with a vowel sound.",
    ),
    (
        re.compile(r"\b(he|she|it) (go|do|have)\b", re.I),
        "HE_VERB_AGR",
        "grammar",
        "GRAMMAR",
        "Grammar",
        "The pronoun requires a third-person verb.",
    ),
    (
        re.compile(r" ,"),
        "COMMA_PARENTHESIS_WHITESPACE",
        "whitespace",
        "PUNCTUATION",
        "Punctuation",
        "Don't put a space before the comma.",
    ),
]


@dataclass
class FakeLanguageToolServer:
    """Run with ``start()``; ``url`` is then e.g. ``http://127.0.0.1:40123``."""

    max_text_length: int = 20_000
    check_requests: int = 0
    _failures_left: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, n: int) -> None:
        with self._lock:
            self._failures_left = n

    def start(self) -> FakeLanguageToolServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: str, content_type: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").split("?")[0] == "/v2/languages":
                    self._send(200, json.dumps(LANGUAGES), "application/json")
                elif self.path.startswith("/v2/healthcheck"):
                    self._send(200, "OK", "text/plain")
                else:
                    self._send(404, "Error: unknown path", "text/plain")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode("utf-8"), keep_blank_values=True)
                if self.path.rstrip("/") != "/v2/check":
                    self._send(404, "Error: unknown path", "text/plain")
                    return
                with fake._lock:
                    fake.check_requests += 1
                    failing = fake._failures_left > 0
                    fake._failures_left -= int(failing)
                if failing:
                    self._send(
                        503, "Error: Server overloaded, please try again later", "text/plain"
                    )
                    return
                status, body, ctype = fake.check(form)
                self._send(status, body, ctype)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def check(self, form: dict[str, list[str]]) -> tuple[int, str, str]:
        if "language" not in form:
            return 400, "Error: Missing 'language' parameter", "text/plain"
        if "text" not in form and "data" not in form:
            return 400, "Error: Missing 'text' or 'data' parameter", "text/plain"
        language = form["language"][0]
        if language not in _LONG_CODES:
            return (
                400,
                f"Error: '{language}' is not a language code known to LanguageTool",
                "text/plain",
            )
        text = form.get("text", [""])[0]
        if len(text) > self.max_text_length:
            return (
                413,
                f"Error: Your text exceeds the limit of {self.max_text_length} characters "
                f"(it's {len(text)} characters). Please submit a shorter text.",
                "text/plain",
            )
        matches = []
        for pattern, rule_id, issue_type, cat_id, cat_name, message in RULES:
            for m in pattern.finditer(text):
                start = max(0, m.start() - 20)
                matches.append(
                    {
                        "message": message,
                        "shortMessage": "",
                        "replacements": [],
                        "offset": m.start(),
                        "length": m.end() - m.start(),
                        "context": {
                            "text": text[start : m.end() + 20],
                            "offset": m.start() - start,
                            "length": m.end() - m.start(),
                        },
                        "sentence": text,
                        "type": {"typeName": "Other"},
                        "rule": {
                            "id": rule_id,
                            "description": message,
                            "issueType": issue_type,
                            "category": {"id": cat_id, "name": cat_name},
                        },
                        "ignoreForIncompleteSentence": False,
                        "contextForSureMatch": 0,
                    }
                )
        matches.sort(key=lambda match: match["offset"])
        body = {
            "software": {
                "name": "LanguageTool",
                "version": "6.8-fake",
                "buildDate": None,
                "apiVersion": 1,
                "premium": False,
                "status": "",
            },
            "warnings": {"incompleteResults": False},
            "language": {
                "name": "English (US)",
                "code": language,
                "detectedLanguage": {"name": "English (US)", "code": language, "confidence": 0.99},
            },
            "matches": matches,
        }
        return 200, json.dumps(body), "application/json"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
