"""Every registered method: forward values on hand-made tensors and autograd against the
backward formula in its docstring (reference implementations below, one per method)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from models.binarize import (METHODS, BinarizationMethod, Surrogate, binary_weight_layers,
                             get_method)
from models.binarize.bnn_plus import SignSwish

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


def bnn_plus_weight(w, g):
    """alpha is a parameter (initialised to mean|W|): no gradient through alpha into W."""
    alpha = w.abs().mean(1, keepdim=True)
    return alpha * sgn(w), alpha * g * window(w)


def sign_swish_act(x, g, beta=5.0):
    d = beta * (2 - beta * x * torch.tanh(beta * x / 2)) / (1 + torch.cosh(beta * x))
    return sgn(x), g * d


def irnet(u, t=1e-3):
    """IR-Net estimator at the first epoch's t: k t (1 - tanh^2(t u)), k = max(1/t, 1)."""
    return max(1 / t, 1.0) * t * (1 - torch.tanh(t * u) ** 2)


def sd_bnn_weight(w, g):
    """WSD with a = 0: w~ = w + 0.5 * 0.01 * mean(w_c) (mean detached, so dw~/dw = 1)."""
    wt = w + 0.5 * 0.01 * w.mean(1, keepdim=True)
    return sgn(wt), g * irnet(wt)


def sd_bnn_act(x, g):
    """static ASD with beta = 0: sign(x + sigmoid(0))."""
    return sgn(x + 0.5), g * irnet(x + 0.5)


def si_bnn_act(x, g):
    """theta = 0, s = 1: a = 1{x >= 0}, da/dx = 1{-0.3 < x < 1}."""
    return (x >= 0).float(), g * ((x > -0.3) & (x < 1)).float()


def residual_act(x, g):
    """eval mode with fresh running b1 = b2 = 1 and lam = 1: sign(x) + sign(x - sign(x))."""
    h1 = sgn(x)
    return h1 + sgn(x - h1), g * window(x)


def bbg_weight(w, g):
    """centred W~ = W - mean(W_c), alpha = mean|W~|; gradient of the xnor form at W~, then
    through the centring (I - 1/n)."""
    wt = w - w.mean(1, keepdim=True)
    fwd, grad_t = xnor_weight(wt, g)
    return fwd, grad_t - grad_t.mean(1, keepdim=True)


#: key -> (weight reference, activation reference): (latent, upstream grad) -> (forward, grad)
REFERENCE: dict[str, tuple[Callable, Callable]] = {
    "bnn": (bnn_weight, sign_act),
    "xnor": (xnor_weight, sign_act),
    "stochastic": (xnor_weight, sign_act),  # eval mode; train mode tested below
    "bnn_plus": (bnn_plus_weight, sign_swish_act),
    "staged_residual": (xnor_weight, residual_act),
    "sd_bnn": (sd_bnn_weight, sd_bnn_act),
    "si_bnn": (xnor_weight, si_bnn_act),
    "bbg": (bbg_weight, sign_act),
}


def test_every_method_has_a_reference() -> None:
    assert set(REFERENCE) == set(METHODS)


@pytest.mark.parametrize("key", sorted(METHODS))
def test_weight_forward_and_gradient(key: str) -> None:
    method = get_method(key)
    layer = method.linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        layer.weight.copy_(W)
    if key == "bnn_plus":  # alpha was initialised from the random weights: re-initialise
        layer = method._init_alpha(_reinit(layer))
    layer.eval()
    g = torch.randn_like(W, generator=torch.Generator().manual_seed(1))
    wq = layer.quant_weight().value
    (wq * g).sum().backward()
    ref_fwd, ref_grad = REFERENCE[key][0](W, g)
    torch.testing.assert_close(wq.detach(), ref_fwd, rtol=0, atol=1e-7)
    torch.testing.assert_close(layer.weight.grad, ref_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("key", sorted(METHODS))
def test_activation_forward_and_gradient(key: str) -> None:
    method = get_method(key)
    act = method.act(X.shape[1]).eval()
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


def _reinit(layer):
    """A fresh bnn_plus layer holding ``layer``'s latent weights (alpha not yet initialised)."""
    from brevitas.nn import QuantLinear

    new = QuantLinear(layer.in_features, layer.out_features, bias=False,
                      weight_quant=get_method("bnn_plus").weight_quant)
    with torch.no_grad():
        new.weight.copy_(layer.weight)
    return new


def test_stochastic_weights_sample_in_train_only() -> None:
    method = get_method("stochastic")
    layer = method.linear(400, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(-1, 1, 1200).reshape(3, 400))
    layer.train()
    torch.manual_seed(0)
    draws = torch.stack([layer.quant_weight().value.detach() for _ in range(1000)])
    assert not torch.equal(draws[0], draws[1])
    alpha = layer.weight.abs().mean(1, keepdim=True)
    # E[s(w)] = 2 p(w) - 1 = w on [-1, 1]
    torch.testing.assert_close((draws / alpha).mean(0), layer.weight.detach(), atol=0.2, rtol=0)
    layer.eval()
    a, b = layer.quant_weight().value, layer.quant_weight().value
    assert torch.equal(a, b) and torch.equal(a.detach(), alpha * sgn(layer.weight.detach()))


def test_stochastic_train_gradient_formula() -> None:
    layer = get_method("stochastic").linear(W.shape[1], W.shape[0]).train()
    with torch.no_grad():
        layer.weight.copy_(W)
    g = torch.randn_like(W, generator=torch.Generator().manual_seed(2))
    wq = layer.quant_weight().value
    (wq * g).sum().backward()
    alpha = W.abs().mean(1, keepdim=True)
    s = (wq / alpha).detach()
    expected = alpha * g * window(W) + torch.sign(W) / W.shape[1] * (g * s).sum(1, keepdim=True)
    torch.testing.assert_close(layer.weight.grad, expected, rtol=1e-6, atol=1e-7)


def test_bnn_plus_alpha_gradient_and_beta_option() -> None:
    method = get_method("bnn_plus", beta=2.0)
    layer = method._init_alpha(_reinit(method.linear(W.shape[1], W.shape[0])))
    with torch.no_grad():
        layer.weight.copy_(W)
    g = torch.randn_like(W, generator=torch.Generator().manual_seed(4))
    (layer.quant_weight().value * g).sum().backward()
    log_alpha = layer.weight_quant.tensor_quant.scaling_impl.value
    alpha = 2 ** log_alpha.detach().reshape(-1, 1)
    expected = (g * sgn(W)).sum(1, keepdim=True) * alpha * math.log(2)  # alpha = 2^p
    torch.testing.assert_close(log_alpha.grad.reshape(-1, 1), expected, rtol=1e-5, atol=1e-7)
    act = method.act(4)
    x = X.clone().requires_grad_(True)
    act(x).sum().backward()
    torch.testing.assert_close(x.grad, sign_swish_act(X, torch.ones_like(X), beta=2.0)[1])


@pytest.mark.parametrize("beta", [2.0, 5.0])
def test_sign_swish_window_as_documented(beta: float) -> None:
    """SignSwish' peaks at beta, integrates to 2 (as the hard-tanh window) and is positive only
    for |x| < 2.3994 / beta, negative beyond: the window the bnn_plus docstring describes."""
    d = SignSwish(beta).derivative
    u0 = 2.3993572805
    assert float(d(torch.tensor(0.0))) == pytest.approx(beta)
    x = torch.linspace(-20, 20, 400001, dtype=torch.float64)
    assert float(torch.trapezoid(d(x), x)) == pytest.approx(2.0, rel=1e-6)
    inside, outside = x.abs() < u0 / beta * (1 - 1e-6), x.abs() > u0 / beta * (1 + 1e-6)
    assert bool((d(x[inside]) > 0).all())
    assert bool((d(x[outside & (x.abs() < 30 / beta)]) < 0).all())


@pytest.mark.parametrize("reg", ["l1", "l2"])
def test_bnn_plus_regularizer_value_and_gradient(reg: str) -> None:
    from models.nets import build_net

    torch.manual_seed(0)
    cfg = {"net": "tfc", "method": "bnn_plus", "method_options": {"reg": reg, "lam": 0.5},
           "in_shape": (1, 28, 28), "num_classes": 10}
    model = build_net(cfg)
    method = get_method("bnn_plus", reg=reg, lam=0.5)
    layers = binary_weight_layers(model)
    with torch.no_grad():  # move alpha away from mean|W| so the L1 term is not degenerate
        for layer in layers:
            layer.weight_quant.tensor_quant.scaling_impl.value.add_(0.3)
    reg_value = method.extra_loss(model)
    expected = 0.0
    grads = []
    for layer in layers:
        w = layer.weight.detach()
        alpha = layer.quant_weight().scale.detach().reshape(-1, 1)
        dev = alpha - w.abs()
        expected += float(dev.abs().sum() if reg == "l1" else dev.pow(2).sum())
        d = torch.sign(dev) if reg == "l1" else 2 * dev
        grads.append(0.5 * (-d * torch.sign(w)))
    assert float(reg_value.detach()) == pytest.approx(0.5 * expected, rel=1e-5)
    reg_value.backward()
    for layer, grad in zip(layers, grads):
        torch.testing.assert_close(layer.weight.grad, grad, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="reg="):
        get_method("bnn_plus", reg="l3")


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="registered: bnn"):
        get_method("nope")
