"""hemma_features: essay features for essay-scoring research, computed on Ray.

Transformer embeddings, spaCy syntax features and LanguageTool error rates, returned as
Apache Arrow tables (one row per input row, in order, keyed by ``essay_id``)::

    import hemma_features as hf

    with hf.connect() as session:              # embedded local Ray; or "ray://127.0.0.1:10001"
        table = session.extract("essays.jsonl", prompt="Describe …")
    embeddings, handcrafted = hf.to_matrices(table)

Results are cached by content (text, prompt, fingerprint) on the cluster and on this
machine: a repeated run computes nothing and, when every row is a hit here, does not even
contact the cluster (``extract(..., cache=False | "refresh")`` to opt out). Long runs can be
detached from this process: ``run_id = session.submit(...)``, later ``session.fetch(run_id)``.

``hf.extract_local(...)`` runs the same stages in this process, without Ray.
"""

from hemma_features.config import Config, ConfigError, load_config
from hemma_features.inputs import InputError, prepare_input
from hemma_features.local import LocalExtractor, extract_local
from hemma_features.schema import (
    FEATURE_GROUPS,
    HANDCRAFTED_FEATURES,
    SCHEMA_VERSION,
    TIER1_FEATURES,
    TIER2_FEATURES,
    TIER3_FEATURES,
    output_schema,
    read_metadata,
    to_matrices,
)
from hemma_features.session import ConnectError, RunError, Session, connect, extract
from hemma_features.training_data import TrainingDataResult, prepare_training_data_local

__version__ = "0.1.0"

__all__ = [
    "FEATURE_GROUPS",
    "HANDCRAFTED_FEATURES",
    "SCHEMA_VERSION",
    "TIER1_FEATURES",
    "TIER2_FEATURES",
    "TIER3_FEATURES",
    "Config",
    "ConfigError",
    "ConnectError",
    "InputError",
    "LocalExtractor",
    "RunError",
    "Session",
    "TrainingDataResult",
    "__version__",
    "connect",
    "extract",
    "extract_local",
    "load_config",
    "output_schema",
    "prepare_input",
    "prepare_training_data_local",
    "read_metadata",
    "to_matrices",
]
