"""L0: checks, ragged batches and registries."""

from __future__ import annotations

import pytest
import torch

from geomot._core import (
    Registry,
    ShapeError,
    ValidationError,
    check_float_tensor,
    check_index_tensor,
    check_int,
    check_lengths,
    check_positive,
    check_weights,
    list_to_padded,
    mask_from_lengths,
    packed_to_padded,
    padded_to_list,
    padded_to_packed,
    to_batched,
)


def test_padded_packed_list_round_trip():
    items = [torch.randn(n, 3) for n in (4, 1, 7)]
    padded, lengths = list_to_padded(items)
    assert padded.shape == (3, 7, 3)
    assert lengths.tolist() == [4, 1, 7]
    assert torch.equal(padded[1, 1:], torch.zeros(6, 3))
    for a, b in zip(padded_to_list(padded, lengths), items):
        assert torch.equal(a, b)
    packed = padded_to_packed(padded, lengths)
    assert torch.equal(packed, torch.cat(items))
    assert torch.equal(packed_to_padded(packed, lengths), padded)


def test_list_to_padded_is_differentiable():
    items = [torch.randn(n, 2, dtype=torch.float64, requires_grad=True) for n in (2, 5)]
    padded, _ = list_to_padded(items)
    padded.sum().backward()
    assert all(torch.equal(t.grad, torch.ones_like(t)) for t in items)


def test_block_rows_budget_per_device():
    from geomot._core.batch import BLOCK_ENTRIES, block_rows

    assert block_rows(1000, torch.device("cpu")) == BLOCK_ENTRIES["cpu"] // 1000
    assert block_rows(1000, torch.device("cuda")) == BLOCK_ENTRIES["cuda"] // 1000
    assert BLOCK_ENTRIES["cuda"] > BLOCK_ENTRIES["cpu"]
    assert block_rows(1000, torch.device("meta")) == BLOCK_ENTRIES["cpu"] // 1000  # other devices: CPU budget
    assert block_rows(10**12, torch.device("cpu")) == 1 and block_rows(0, torch.device("cpu")) == BLOCK_ENTRIES["cpu"]


def test_mask_from_lengths():
    m = mask_from_lengths(torch.tensor([1, 3]), 4)
    assert m.tolist() == [[True, False, False, False], [True, True, True, False]]


def test_to_batched_mirrors_input():
    x = torch.randn(5, 3)
    xb, lb, batched = to_batched(x, "x")
    assert xb.shape == (1, 5, 3) and lb.tolist() == [5] and not batched
    _, lb, batched = to_batched(torch.randn(2, 5, 3), "x", torch.tensor([5, 2]))
    assert batched and lb.tolist() == [5, 2]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: to_batched(torch.randn(5), "x"), r"x: expected a \(N, D\) or \(B, N, D\)"),
        (lambda: to_batched(torch.randn(5, 3), "x", torch.tensor([5])), "x_lengths: only valid with a batched"),
        (lambda: to_batched(torch.randn(2, 5, 3), "x", torch.tensor([5, 6])), r"x_lengths: values must lie in \[1, 5\]"),
        (lambda: to_batched(torch.randn(2, 5, 3), "x", torch.tensor([5])), r"x_lengths: expected an integer tensor of shape \(2,\)"),
        (lambda: check_float_tensor([1.0], "y"), "y: expected a torch.Tensor"),
        (lambda: check_float_tensor(torch.ones(3, dtype=torch.long), "y"), "y: expected a floating-point tensor"),
        (lambda: check_float_tensor(torch.tensor([1.0, float("nan")]), "y"), r"y: contains 1 NaN/Inf"),
        (lambda: check_float_tensor(torch.zeros(0, 3), "y"), "y: expected a non-empty tensor"),
        (lambda: check_float_tensor(torch.zeros(4, 2), "y", last_dim=3), "y: expected last dimension 3"),
        (lambda: check_index_tensor(torch.tensor([[0, 1, -1]]), "faces", size=3), "faces: negative index -1"),
        (lambda: check_index_tensor(torch.tensor([[0, 1, 3]]), "faces", size=3), "faces: index 3 out of range"),
        (lambda: check_index_tensor(torch.tensor([[0.0, 1, 2]]), "faces", size=3), "faces: expected an integer tensor"),
        (lambda: check_positive(0.0, "eps"), "eps: expected a positive value"),
        (lambda: check_positive(float("inf"), "eps"), "eps: expected a finite number"),
        (lambda: check_positive("a", "eps"), "eps: expected a number"),
        (lambda: check_positive(0.5, "p", at_least=1), r"p: expected a value >= 1"),
        (lambda: check_int(0, "rings", at_least=1), r"rings: expected an integer >= 1, got 0"),
        (lambda: check_int(True, "rings", at_least=0), r"rings: expected an integer >= 0, got True"),
        (lambda: check_int(2.0, "rings", at_least=0), r"rings: expected an integer >= 0, got 2.0"),
        (lambda: check_weights(torch.tensor([[0.5, -0.1]]), "w", shape=(1, 2)), "w: weights must be non-negative"),
        (lambda: check_weights(torch.tensor([[0.0, 0.0]]), "w", shape=(1, 2)), "w: every item needs a positive total"),
        (lambda: check_weights(torch.tensor([[0.2, 0.2]]), "w", shape=(1, 2), normalize=False), "w: weights must sum to 1"),
        (lambda: check_weights(torch.tensor([[0.2, 0.2]]), "w", shape=(1, 3)), r"w: expected shape \(1, 3\)"),
        (lambda: check_lengths(torch.tensor([1.0]), "l", batch=1, max_len=2, device=torch.device("cpu")), "l: expected an integer"),
    ],
)
def test_bad_input_messages(call, match):
    with pytest.raises((ShapeError, ValidationError), match=match):
        call()


def test_check_weights_normalises_and_masks():
    w = check_weights(torch.tensor([[1.0, 3.0, 9.0]]), "w", shape=(1, 3), mask=torch.tensor([[True, True, False]]))
    assert torch.allclose(w, torch.tensor([[0.25, 0.75, 0.0]]))


def test_registry_lists_valid_names():
    reg: Registry[int] = Registry("kernel")
    reg.add("b", 2)
    reg.add("a", 1)
    assert reg.get("a") == 1 and list(reg) == ["a", "b"] and "b" in reg
    with pytest.raises(ValidationError, match=r"kernel: unknown kernel 'c'; valid: a, b"):
        reg.get("c")
    with pytest.raises(ValidationError, match="already registered"):
        reg.add("a", 3)


def test_data_checks_switch_off_value_checks_only_in_the_block():
    """``data_checks(False)`` skips the value checks (the ones that read back from a CUDA device), keeps the shape
    checks, restores the previous state on exit (also after an error) and is per thread."""
    import threading

    import geomot
    from geomot._core.checks import check_finite, check_weights, data_checks, data_checks_enabled

    bad = torch.tensor([0.0, float("nan")])
    with pytest.raises(ValidationError, match="NaN/Inf"):
        check_finite(bad, "x")
    with data_checks(False):
        assert not data_checks_enabled()
        check_finite(bad, "x")
        w = check_weights(torch.tensor([[1.0, 3.0]]), "w", shape=(1, 2))
        torch.testing.assert_close(w, torch.tensor([[0.25, 0.75]]))  # still normalised
        with pytest.raises(ShapeError):
            check_weights(torch.ones(3), "w", shape=(1, 2))  # shapes are still checked
        seen = []
        worker = threading.Thread(target=lambda: seen.append(data_checks_enabled()))
        worker.start()
        worker.join()
        assert seen == [True]  # other threads keep their checks
    assert data_checks_enabled()
    with pytest.raises(RuntimeError), data_checks(False):
        raise RuntimeError("boom")
    assert data_checks_enabled()
    x = torch.randn(50, 3)
    with pytest.raises(ValidationError, match="NaN/Inf"):
        geomot.sliced_wasserstein(torch.full((50, 3), float("nan")), x)
    with geomot.data_checks(False):  # not detected: the value is undefined, but nothing raises
        assert geomot.sliced_wasserstein(torch.full((50, 3), float("nan")), x).shape == ()
