"""Every registered method: forward values on hand-made tensors and autograd against the
backward formula in its docstring (reference implementations below, one per method)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from models.binarize import METHODS, BinarizationMethod, Surrogate, get_method

W = torch.tensor([[0.5, -0.25, 1.5, -1.2, 0.0, 0.9],
                  [-0.1, -0.7, 0.3, 0.05, -2.0, 1.0]])
X = torch.tensor([[-1.5, -1.0, -0.3, 0.0, 0.2, 1.0, 1.01, 3.0]])


def sgn(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t >= 0, 1.0, -1.0)


def window(t: torch.Tensor) -> torch.Tensor:
    return (t.abs() <= 1).float()


def bnn_weight(w, g):
    return sgn(w), g * window(w)


def xnor_weight(w, g):
    alpha = w.abs().mean(1, keepdim=True)
    n = w.shape[1]
    grad = alpha * g * window(w) + torch.sign(w) / n * (g * sgn(w)).sum(1, keepdim=True)
    return alpha * sgn(w), grad


def sign_act(x, g):
    return sgn(x), g * window(x)


#: key -> (weight reference, activation reference): (latent, upstream grad) -> (forward, grad)
REFERENCE: dict[str, tuple[Callable, Callable]] = {
    "bnn": (bnn_weight, sign_act),
    "xnor": (xnor_weight, sign_act),
}


def test_every_method_has_a_reference() -> None:
    assert set(REFERENCE) == set(METHODS)


@pytest.mark.parametrize("key", sorted(METHODS))
def test_weight_forward_and_gradient(key: str) -> None:
    method = get_method(key)
    layer = method.linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        layer.weight.copy_(W)
    g = torch.randn_like(W, generator=torch.Generator().manual_seed(1))
    wq = layer.quant_weight().value
    (wq * g).sum().backward()
    ref_fwd, ref_grad = REFERENCE[key][0](W, g)
    torch.testing.assert_close(wq.detach(), ref_fwd, rtol=0, atol=1e-7)
    torch.testing.assert_close(layer.weight.grad, ref_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("key", sorted(METHODS))
def test_activation_forward_and_gradient(key: str) -> None:
    method = get_method(key)
    act = method.act(X.shape[1])
    x = X.clone().requires_grad_(True)
    g = torch.linspace(-1, 2, X.numel()).reshape(X.shape)
    y = act(x)
    (y * g).sum().backward()
    ref_fwd, ref_grad = REFERENCE[key][1](X, g)
    torch.testing.assert_close(y.detach(), ref_fwd, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, ref_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("key", sorted(METHODS))
def test_surrogates_match_autograd(key: str) -> None:
    """Each Surrogate's documented derivative() is what autograd uses."""
    method = get_method(key)
    mods = [m for m in method.act(4).modules() if isinstance(m, Surrogate)]
    mods += [m for m in method.linear(4, 2).modules() if isinstance(m, Surrogate)]
    assert mods, f"{key}: no Surrogate inside its quantizers"
    for sur in mods:
        x = torch.linspace(-2, 2, 41, requires_grad=True)
        sur(x).sum().backward()
        torch.testing.assert_close(x.grad, sur.derivative(x.detach()))


@pytest.mark.parametrize("key", sorted(METHODS))
def test_method_interface(key: str) -> None:
    method = get_method(key)
    assert isinstance(method, BinarizationMethod) and method.key == key
    assert METHODS[key].__module__.endswith(key), "one file per method, named after its key"
    doc = METHODS[key].__module__
    import importlib
    module_doc = importlib.import_module(doc).__doc__ or ""
    assert "forward" in module_doc and "backward" in module_doc, "docstring states the formulas"
    deployable, how = method.deployment()
    assert isinstance(deployable, bool) and how
    with pytest.raises(ValueError, match="no option"):
        get_method(key, not_an_option=1)


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="registered: bnn"):
        get_method("nope")
