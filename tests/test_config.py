import pytest

from hemma_features.config import Config, ConfigError, build_config, load_config


def test_bundled_configs_load_and_differ():
    local = load_config("local", environ={})
    hemma = load_config("hemma", environ={})
    assert local.cluster.address == "local"
    assert local.embedding.model.startswith("package:")
    assert local.languagetool.on_unavailable == "skip"
    assert hemma.cluster.address == "ray://127.0.0.1:10001"
    assert hemma.embedding.model == "microsoft/deberta-v3-base"
    assert hemma.embedding.pooling == "cls"
    assert hemma.embedding.gpus_per_actor == 0.5
    assert hemma.spacy.model == "en_core_web_sm"
    assert hemma.languagetool.on_unavailable == "error"


def test_yaml_path_and_defaults(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("embedding:\n  batch_size: 7\n")
    config = load_config(path, environ={})
    assert config.embedding.batch_size == 7
    assert config.embedding.max_length == 512  # model default kept


def test_prefixed_env_override_parses_like_yaml():
    env = {
        "HEMMA_FEATURES__EMBEDDING__BATCH_SIZE": "64",
        "HEMMA_FEATURES__LANGUAGETOOL__PIPELINE_CACHING": "false",
        "HEMMA_FEATURES__LANGUAGETOOL__URL": "http://127.0.0.1:8081",
    }
    config = load_config("local", environ=env)
    assert config.embedding.batch_size == 64
    assert config.languagetool.pipeline_caching is False
    assert config.languagetool.url == "http://127.0.0.1:8081"


@pytest.mark.parametrize(
    ("var", "value", "attribute", "expected"),
    [
        ("OFFLOAD_EMBEDDING_BATCH_SIZE", "48", ("embedding", "batch_size"), 48),
        ("OFFLOAD_EMBEDDING_MAX_LENGTH", "384", ("embedding", "max_length"), 384),
        ("OFFLOAD_EMBEDDING_MODEL_NAME", "some/model", ("embedding", "model"), "some/model"),
        ("OFFLOAD_TORCH_DEVICE", "cuda:0", ("embedding", "device"), "cuda:0"),
        ("OFFLOAD_SPACY_N_PROCESS", "3", ("spacy", "actors"), 3),
        ("OFFLOAD_SPACY_PIPE_BATCH_SIZE", "16", ("spacy", "batch_size"), 16),
        ("OFFLOAD_LANGUAGE_TOOL_MAX_CONCURRENCY", "5", ("languagetool", "actors"), 5),
        (
            "LANGUAGE_TOOL_SERVICE_LANGUAGE_TOOL_HEAP_SIZE",
            "6g",
            ("languagetool", "heap_size"),
            "6g",
        ),
        ("OFFLOAD_LANGUAGE_TOOL_URL", "http://lt:8010", ("languagetool", "url"), "http://lt:8010"),
        ("OFFLOAD_HTTP_MAX_WORKERS", "12", ("pipeline", "max_in_flight_batches"), 12),
    ],
)
def test_legacy_knobs(var, value, attribute, expected):
    config = load_config("local", environ={var: value})
    section, key = attribute
    assert getattr(getattr(config, section), key) == expected


def test_prefixed_form_wins_over_legacy_knob():
    env = {"OFFLOAD_EMBEDDING_BATCH_SIZE": "8", "HEMMA_FEATURES__EMBEDDING__BATCH_SIZE": "9"}
    assert load_config("local", environ=env).embedding.batch_size == 9


def test_invalid_env_value_names_key_value_source_and_allowed():
    with pytest.raises(ConfigError) as info:
        load_config("local", environ={"HEMMA_FEATURES__EMBEDDING__POOLING": "max"})
    message = str(info.value)
    assert "embedding.pooling" in message
    assert "'max'" in message
    assert "HEMMA_FEATURES__EMBEDDING__POOLING" in message
    assert "'cls' or 'mean'" in message


def test_invalid_yaml_value_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("spacy:\n  actors: 0\nembedding:\n  gpus_per_actor: -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert "spacy.actors = 0" in message and "greater than or equal to 1" in message
    assert "embedding.gpus_per_actor = -1" in message
    assert str(path) in message


def test_unknown_key_and_bad_device_rejected():
    with pytest.raises(ConfigError, match=r"embedding\.batchsize: unknown key"):
        build_config({"embedding": {"batchsize": 3}}, environ={})
    with pytest.raises(ConfigError, match=r"embedding\.device = 'gpu'.*'cuda'"):
        build_config({"embedding": {"device": "gpu"}}, environ={})
    with pytest.raises(ConfigError, match="heap_size"):
        build_config({"languagetool": {"heap_size": "lots"}}, environ={})


def test_missing_config_lists_bundled_names():
    with pytest.raises(ConfigError, match=r"not found.*'hemma', 'local'"):
        load_config("nope", environ={})


def test_value_affecting_ignores_throughput_knobs():
    a = Config()
    b = Config.model_validate({"embedding": {"actors": 4, "batch_size": 3}, "spacy": {"actors": 2}})
    c = Config.model_validate({"embedding": {"pooling": "mean"}})
    assert a.value_affecting() == b.value_affecting()
    assert a.value_affecting() != c.value_affecting()
