"""GPU paths (CUDA, or ROCm's HIP build of torch, which answers to torch.cuda).

Skipped where torch sees no GPU: CI and these development machines have none.
"""

import numpy as np
import pytest
import torch

from hemma_features.stages import TextEncoder
from tests.conftest import make_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU visible to torch"),
]

TEXTS = [
    "Computers help students learn.",
    "However, many teenagers spend too much time online instead of outside. " * 8,
    "In conclusion, technology brings both benefits and real costs to families.",
]


def encoder(model, device, dtype):
    settings = {"model": str(model), "device": device, "dtype": dtype, "pooling": "mean"}
    return TextEncoder(make_config(embedding=settings).embedding)


def test_auto_dtype_on_gpu_is_half_precision(tiny_deberta):
    gpu = encoder(tiny_deberta, "cuda", "auto")
    assert gpu.dtype in (torch.bfloat16, torch.float16)
    assert next(gpu.model.parameters()).device.type == "cuda"


@pytest.mark.parametrize("dtype", ["float32", "auto"])
def test_gpu_matches_cpu(tiny_deberta, dtype):
    cpu = encoder(tiny_deberta, "cpu", "float32").encode(TEXTS)
    gpu = encoder(tiny_deberta, "cuda", dtype).encode(TEXTS)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    tolerance = 1e-4 if dtype == "float32" else 5e-2
    np.testing.assert_allclose(gpu, cpu, atol=tolerance * max(1.0, float(np.abs(cpu).max())))


def test_gpu_batch_invariance_fp32(tiny_deberta):
    gpu = encoder(tiny_deberta, "cuda", "float32")
    alone = gpu.encode([TEXTS[0]])[0]
    mixed = gpu.encode([TEXTS[1], TEXTS[0], TEXTS[2]])[1]
    np.testing.assert_allclose(mixed, alone, atol=1e-4, rtol=0)
