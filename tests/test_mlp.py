"""The MLP every model is built from: blocked CPU inference equals the whole-tensor form."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from trackflow.pipeline.embedding import Embedding, EmbeddingNet
from trackflow.pipeline.graph import HitGraph
from trackflow.pipeline.mlp import CPU_BLOCK_ROWS, MLP, block_rows, make_mlp
from trackflow.pipeline.model_files import load_model, read_manifest, shipped_models_dir


def _whole(mlp: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The textbook Sequential: every layer on the whole tensor."""
    for layer in mlp:
        x = layer(x)
    return x


@pytest.mark.parametrize("rows", [1, 7, 100, 2048, 2049, 5000])
def test_blocked_inference_equals_whole_tensor(rows: int) -> None:
    torch.manual_seed(0)
    mlp = make_mlp(9, 32, 3, 2).eval()
    mlp.block_rows = 64  # several blocks and a ragged last one
    x = torch.randn(rows, 9)
    with torch.inference_mode():
        blocked = mlp(x)
    assert blocked.shape == (rows, 2)
    # rows are independent, so blocks change nothing beyond float32 summation order in the GEMM
    torch.testing.assert_close(blocked, _whole(mlp, x), rtol=1e-5, atol=1e-6)


def test_training_sees_the_whole_tensor_and_gets_gradients() -> None:
    torch.manual_seed(0)
    mlp = make_mlp(4, 16, 2, 1)
    mlp.block_rows = 8
    x = torch.randn(50, 4)
    mlp(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mlp.parameters())


def test_parameter_names_are_those_of_a_plain_sequential() -> None:
    """Shipped state dicts (saved from nn.Sequential) must keep loading."""
    mlp = make_mlp(6, 16, 2, 3, output_activation=True)
    plain = nn.Sequential(*mlp)
    assert isinstance(mlp, MLP) and isinstance(mlp, nn.Sequential)
    assert list(mlp.state_dict()) == list(plain.state_dict())
    assert "block_rows" not in mlp.state_dict()
    sliced = mlp[:2]
    assert isinstance(sliced, MLP) and len(sliced) == 2


def test_shipped_models_load_into_the_new_class() -> None:
    manifest = read_manifest(shipped_models_dir())
    for stage in ("embedding", "filter"):
        model = load_model(manifest, stage)
        assert isinstance(model.network, MLP)


def test_torchscript_keeps_the_blocked_path() -> None:
    torch.manual_seed(1)
    mlp = make_mlp(5, 16, 2, 4).eval()
    mlp.block_rows = 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated
        scripted = torch.jit.script(mlp)
    x = torch.randn(95, 5)
    with torch.inference_mode():
        torch.testing.assert_close(scripted(x), _whole(mlp, x), rtol=1e-5, atol=1e-6)


def test_embedding_stage_in_blocks_equals_one_call() -> None:
    torch.manual_seed(2)
    net = EmbeddingNet(in_features=3, hidden=32, n_layers=2, out_dim=4).eval()
    features = torch.randn(3 * CPU_BLOCK_ROWS + 5, 3)
    hit_ids = np.arange(len(features))
    graph = Embedding(net)(HitGraph(event_id=0, hit_ids=hit_ids, features=features))
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(_whole(net.network, features), dim=1)
    torch.testing.assert_close(graph.embedding, expected, rtol=1e-5, atol=1e-6)


def test_block_rows_is_a_cpu_cache_bound_and_a_memory_bound() -> None:
    assert block_rows(torch.device("cpu"), 10**9) == CPU_BLOCK_ROWS
    assert block_rows(torch.device("cpu"), 100) == 100
    assert block_rows(torch.device("cuda"), 10**6) == 10**6


def test_fast_tanh_is_tanh_at_inference_and_in_training() -> None:
    from trackflow.pipeline.mlp import Tanh

    x = torch.cat([torch.linspace(-30, 30, 20001), torch.randn(5000) * 1e-3, torch.tensor([0.0])])
    with torch.inference_mode():
        fast = Tanh()(x)
    # 2 sigmoid(2x) - 1: float32 rounding apart, the same function, saturating at +-1
    torch.testing.assert_close(fast, torch.tanh(x), atol=5e-7, rtol=0)
    assert float(fast.min()) == -1.0 and float(fast.max()) == 1.0
    assert fast.data_ptr() != x.data_ptr()  # its input is left alone
    # with autograd it is torch.tanh itself: gradients 1 - tanh^2
    y = x.clone().requires_grad_(True)
    Tanh()(y).sum().backward()
    assert y.grad is not None
    torch.testing.assert_close(y.grad, 1 - torch.tanh(x) ** 2)
    # make_mlp uses it, and it survives TorchScript
    mlp = make_mlp(4, 16, 2, 1).eval()
    assert sum(isinstance(m, Tanh) for m in mlp) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(mlp)
    z = torch.randn(300, 4)
    with torch.inference_mode():
        torch.testing.assert_close(scripted(z), _whole(mlp, z))
    with torch.no_grad():
        plain = nn.Sequential(*[nn.Tanh() if isinstance(m, Tanh) else m for m in mlp])
        torch.testing.assert_close(mlp(z), plain(z), atol=1e-6, rtol=1e-5)
