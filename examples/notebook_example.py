# %% [markdown]
# # hemma_features in a notebook
# Run cell by cell (VS Code / Jupyter "percent" format) or as a script:
# `python examples/notebook_example.py`. Uses the embedded local Ray and offline models.

# %%
from pathlib import Path

import hemma_features as hf

ESSAYS = Path(__file__).with_name("essays.jsonl")

# %% Connect: no address starts an embedded Ray; "ray://127.0.0.1:10001" reaches Hemma.
session = hf.connect(config="local")

# %% Extract every feature group; the result is a pyarrow.Table in input order.
table = session.extract(ESSAYS)
print(table.select(["essay_id", "word_count", "flesch_kincaid", "prompt_similarity", "error"]))
print(session.last_metrics["benchmarks"])

# %% The two matrices the training code reads: embeddings [N, D] and handcrafted [N, 25].
embeddings, handcrafted = hf.to_matrices(table)
print(embeddings.shape, handcrafted.shape, hf.HANDCRAFTED_FEATURES[:3])

# %% Only the cheap structural features: only the spaCy stage runs.
tier3 = session.extract(ESSAYS, features=["tier3"], progress=False)
print(tier3.to_pandas().head())

# %%
session.close()
