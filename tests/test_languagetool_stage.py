"""LanguageToolStage against the fake LanguageTool server (tests/fake_languagetool.py)."""

import os
import socket

import language_tool_python
import pyarrow as pa
import pytest

from hemma_features.schema import TIER1
from hemma_features.stages import LanguageToolStage, LanguageToolUnavailable
from tests.conftest import make_config


def lt_config(url, **overrides):
    settings = {"url": url, "on_unavailable": "error", "backoff_s": 0.01, "max_retries": 3}
    return make_config(languagetool={**settings, **overrides})


def batch(texts, word_counts, errors=None):
    n = len(texts)
    return pa.table(
        {
            "essay_id": pa.array([f"e{i}" for i in range(n)]),
            "text": pa.array(texts, pa.string()),
            "error": pa.array(errors or [None] * n, pa.string()),
            "word_count": pa.array(word_counts, pa.int32()),
        }
    )


@pytest.fixture
def stage(fake_languagetool):
    fake_languagetool.fail_next(0)
    stage = LanguageToolStage(lt_config(fake_languagetool.url), features=[TIER1])
    yield stage
    stage.close()


def test_fake_server_speaks_the_protocol_language_tool_python_expects(fake_languagetool):
    """language-tool-python itself (GET /v2/languages, POST /v2/check) works against it."""
    tool = language_tool_python.LanguageTool("en-US", remote_server=fake_languagetool.url)
    matches = tool.check("I recieve a apple , he go home.")
    assert [m.rule_id for m in matches] == [
        "MORFOLOGIK_RULE_EN_US",
        "EN_A_VS_AN",
        "COMMA_PARENTHESIS_WHITESPACE",
        "HE_VERB_AGR",
    ]
    assert matches[0].category == "TYPOS"
    tool.close()


def test_counts_and_rates_by_category(stage):
    texts = [
        "I recieve teh letter , and it go well , a apple.",  # 2 typos, 2 punct, 1 a/an, 1 agr
        "Everything here is fine.",
    ]
    rows = stage(batch(texts, [10, 4])).to_pylist()
    assert rows[0]["spelling_errors"] == 2
    assert rows[0]["punctuation_errors"] == 2
    assert rows[0]["grammar_errors"] == 2  # EN_A_VS_AN is MISC, not TYPOS: grammar
    assert rows[0]["spelling_errors_per_100_words"] == pytest.approx(20.0)
    assert rows[0]["grammar_errors_per_100_words"] == pytest.approx(20.0)
    assert rows[0]["punctuation_errors_per_100_words"] == pytest.approx(20.0)
    assert rows[1]["grammar_errors"] == rows[1]["spelling_errors"] == 0
    assert rows[1]["error"] is None


def test_transient_5xx_is_retried(stage, fake_languagetool):
    fake_languagetool.fail_next(2)
    before = fake_languagetool.check_requests
    rows = stage(batch(["I recieve it."], [3])).to_pylist()
    assert rows[0]["error"] is None and rows[0]["spelling_errors"] == 1
    assert fake_languagetool.check_requests - before == 3  # two 503s, then success


def test_persistent_5xx_fails_only_that_row_after_retries(fake_languagetool):
    stage = LanguageToolStage(
        lt_config(fake_languagetool.url, max_retries=1, requests_per_actor=1), [TIER1]
    )
    fake_languagetool.fail_next(2)  # first row: 503, 503 (out of retries); second row: fine
    rows = stage(batch(["First text.", "Second text."], [2, 2])).to_pylist()
    stage.close()
    assert "still failing after 1 retries" in rows[0]["error"] and "503" in rows[0]["error"]
    assert rows[1]["error"] is None and rows[1]["grammar_errors"] == 0


def test_refused_text_marks_row_and_batch_goes_on(stage, fake_languagetool):
    too_long = "word " * 5000  # 25,000 characters, over the fake server's 20,000 limit
    before = fake_languagetool.check_requests
    rows = stage(batch(["Fine text.", too_long, "Also fine."], [2, 5000, 2])).to_pylist()
    assert rows[0]["error"] is None and rows[2]["error"] is None
    assert "essay_id='e1'" in rows[1]["error"]
    assert "HTTP 413" in rows[1]["error"] and "exceeds the limit" in rows[1]["error"]
    assert rows[1]["grammar_errors"] is None
    assert fake_languagetool.check_requests - before == 3  # a 4xx is not retried


def test_rows_with_errors_are_not_sent(stage, fake_languagetool):
    before = fake_languagetool.check_requests
    rows = stage(batch([None, "Fine."], [None, 1], errors=["text is empty", None])).to_pylist()
    assert fake_languagetool.check_requests - before == 1
    assert rows[0]["error"] == "text is empty" and rows[0]["grammar_errors"] is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_down_at_start_names_the_url():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(LanguageToolUnavailable) as info:
        LanguageToolStage(lt_config(url), features=[TIER1])
    assert url in str(info.value) and "not answering" in str(info.value)


def test_server_down_with_skip_gives_null_columns_and_a_reason():
    url = f"http://127.0.0.1:{_free_port()}"
    stage = LanguageToolStage(lt_config(url, on_unavailable="skip"), features=[TIER1])
    rows = stage(batch(["Some text."], [2])).to_pylist()
    assert url in stage.unavailable_reason
    assert rows[0]["grammar_errors_per_100_words"] is None and rows[0]["error"] is None


def test_local_server_settings_reach_language_tool_python(monkeypatch):
    """Without a url the stage starts LanguageTool with the speed settings from config."""
    seen = {}

    class Recorder:
        def __init__(self, language, config=None, **kwargs):
            seen.update(language=language, config=config, **kwargs)
            raise OSError("no LanguageTool download here")

    monkeypatch.setattr(language_tool_python, "LanguageTool", Recorder)
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", "-Dfile.encoding=UTF-8 -Xmx1g")
    config = make_config(
        languagetool={"url": None, "heap_size": "3g", "cache_size": 777, "on_unavailable": "error"}
    )
    with pytest.raises(LanguageToolUnavailable, match="could not start a local LanguageTool"):
        LanguageToolStage(config, features=[TIER1])
    assert seen["language"] == "en-US"
    assert seen["config"]["pipelineCaching"] is True
    assert seen["config"]["cacheSize"] == 777
    assert seen["config"]["maxCheckThreads"] == 4
    assert os.environ["JAVA_TOOL_OPTIONS"] == "-Dfile.encoding=UTF-8 -Xmx3g"
