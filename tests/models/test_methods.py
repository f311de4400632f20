"""Method-specific behaviour beyond the shared forward/gradient references: schedules reach their
end values, learnable parameters get the documented gradients, train-only sampling, weight-decay
exclusions, the residual net, and what each method allows to export."""

from __future__ import annotations

import math

import pytest
import torch

from models.binarize import get_method
from models.binarize.sd_bnn import IRNetTanh, WSDBinaryQuant
from models.binarize.staged_residual import ResidualBinaryQuant
from models.nets import build_net
from models.trainer import TrainConfig, make_optimizer


def net(method: str, name: str = "tfc", **options) -> torch.nn.Module:
    shape = (1, 32, 32) if name == "cnv" else (1, 28, 28)
    return build_net({"net": name, "method": method, "method_options": options,
                      "in_shape": shape, "num_classes": 10})


@pytest.mark.parametrize("epochs", [1, 2, 7, 100])
def test_sd_bnn_t_schedule_reaches_end_values(epochs: int) -> None:
    method = get_method("sd_bnn")
    ts = [method.t_at(e, epochs) for e in range(epochs)]
    assert ts[-1] == pytest.approx(10.0)
    if epochs > 1:
        assert ts[0] == pytest.approx(1e-3)
        ratios = [b / a for a, b in zip(ts, ts[1:])]  # log-linear: constant ratio
        assert all(r == pytest.approx(ratios[0]) for r in ratios) and ratios[0] > 1
    model = net("sd_bnn")
    method.on_epoch_start(model, epochs - 1, epochs)
    sur = [m for m in model.modules() if isinstance(m, IRNetTanh)]
    assert len(sur) == 8 and all(m.t == pytest.approx(10.0) and m.k == 1.0 for m in sur)


@pytest.mark.parametrize("anneal", ["linear", "cosine"])
@pytest.mark.parametrize("epochs", [1, 2, 5, 10, 40])
def test_staged_residual_lam_schedule(anneal: str, epochs: int) -> None:
    method = get_method("staged_residual", anneal=anneal)
    lams = [method.lam_at(e, epochs) for e in range(epochs)]
    assert lams[-1] == 0.0, "stage 2 ends at order 1"
    assert all(b <= a for a, b in zip(lams, lams[1:])), "lam never rises"
    stage1 = min(round(0.5 * epochs), epochs - 1)
    assert lams[:stage1] == [1.0] * stage1
    model = net("staged_residual")
    method.on_epoch_start(model, 0, epochs)
    quants = [m for m in model.modules() if isinstance(m, ResidualBinaryQuant)]
    assert len(quants) == 4 and all(float(q.lam) == lams[0] for q in quants)


def test_staged_residual_order2_values_and_running_stats() -> None:
    q = ResidualBinaryQuant().train()
    x = torch.tensor([[-2.0, -0.5, 0.1, 0.4, 1.5, 3.0]], requires_grad=True)
    y, scale, _, bw = q(x)
    xd = x.detach()
    b1 = xd.abs().mean()
    r = xd - b1 * torch.where(xd >= 0, 1.0, -1.0)
    b2 = r.abs().mean()
    expected = b1 * torch.where(xd >= 0, 1.0, -1.0) + b2 * torch.where(r >= 0, 1.0, -1.0)
    torch.testing.assert_close(y.detach(), expected)
    assert float(scale) == pytest.approx(float(b1)) and int(bw) == 1
    y.sum().backward()
    torch.testing.assert_close(x.grad, (xd.abs() <= 1).float())
    assert float(q.running_b1) == pytest.approx(0.9 + 0.1 * float(b1))
    q.lam.fill_(0.0)
    q.eval()
    y0, scale0, _, _ = q(xd)
    torch.testing.assert_close(y0, q.running_b1 * torch.where(xd >= 0, 1.0, -1.0))
    assert float(scale0) == float(q.running_b1)


def test_staged_residual_export_refused_until_annealed() -> None:
    method = get_method("staged_residual")
    model = net("staged_residual")
    method.on_epoch_start(model, 5, 10)  # mid-annealing
    with pytest.raises(ValueError, match=r"features\.\d+.*order 2 \(lam = 0\.5\)"):
        method.prepare_export(model)
    method.on_epoch_start(model, 9, 10)
    assert method.prepare_export(model) is not model


def test_staged_residual_stochastic_weights_sample_in_train_only() -> None:
    layer = get_method("staged_residual", weights="stochastic").linear(50, 4).train()
    assert not torch.equal(layer.quant_weight().value, layer.quant_weight().value)
    layer.eval()
    assert torch.equal(layer.quant_weight().value, layer.quant_weight().value)
    with pytest.raises(ValueError, match="weights="):
        get_method("staged_residual", weights="ternary")


def test_sd_bnn_wsd_parameter_gradient() -> None:
    layer = get_method("sd_bnn").linear(6, 2)
    wsd = next(m for m in layer.modules() if isinstance(m, WSDBinaryQuant))
    w = torch.tensor([[0.5, -0.25, 1.5, -1.2, 0.0, 0.9], [-0.1, -0.7, 0.3, 0.05, -2.0, 1.0]])
    with torch.no_grad():
        layer.weight.copy_(w)
        wsd.wsd_a.copy_(torch.tensor([0.7, -1.3]).reshape(wsd.wsd_a.shape))
    g = torch.randn(2, 6, generator=torch.Generator().manual_seed(0))
    (layer.quant_weight().value * g).sum().backward()
    a = torch.tensor([0.7, -1.3]).reshape(2, 1)
    mean = w.mean(1, keepdim=True)
    wt = w + torch.sigmoid(a) * 0.01 * mean
    gt = g * (1 - torch.tanh(1e-3 * wt) ** 2)  # k t = 1 at t = 1e-3
    expected = (gt * torch.sigmoid(a) * (1 - torch.sigmoid(a)) * 0.01 * mean).sum(1)
    torch.testing.assert_close(wsd.wsd_a.grad.reshape(-1), expected, rtol=1e-5, atol=1e-9)


def test_sd_bnn_dynamic_asd_is_per_image_and_not_deployable() -> None:
    torch.manual_seed(0)  # the branch's weights: with 2 hidden units, some draws are all-dead
    method = get_method("sd_bnn", asd="dynamic")
    act = method.act(32).eval()
    asd = act[0]
    x = torch.randn(3, 32, 5, 5, generator=torch.Generator().manual_seed(0))
    offset = asd(x) - x
    pooled = x.mean((2, 3))
    expected = torch.sigmoid(asd.fc2(torch.relu(asd.fc1(pooled))))[:, :, None, None]
    torch.testing.assert_close(offset, expected.expand_as(x))
    assert not torch.allclose(offset[0], offset[1]), "offsets depend on the image"
    assert method.deployment()[0] is False and "cannot stream" in method.deployment()[1]
    assert get_method("sd_bnn").deployment()[0] is True
    with pytest.raises(ValueError, match="asd="):
        get_method("sd_bnn", asd="both")


def test_si_bnn_threshold_and_scale_gradients() -> None:
    act = get_method("si_bnn").act(4)
    with torch.no_grad():
        act.theta.copy_(torch.tensor([0.0, 0.5, -0.2, 1.0]))
        act.s.copy_(torch.tensor([1.0, 2.0, 0.5, 1.5]))
    x = torch.tensor([[0.3, 0.6, -0.5, 0.1], [-0.1, 0.2, 0.9, 1.2]], requires_grad=True)
    a = act(x)
    y = (x.detach() - act.theta.detach()) * act.s.detach()
    assert torch.equal(a.detach(), (y >= 0).float())
    g = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.25, 1.0, -1.0, 2.0]])
    (a * g).sum().backward()
    m = ((y > -0.3) & (y < 1)).float()
    torch.testing.assert_close(x.grad, g * m * act.s.detach())
    torch.testing.assert_close(act.theta.grad, -(g * m * act.s.detach()).sum(0))
    torch.testing.assert_close(act.s.grad, (g * m * (x.detach() - act.theta.detach())).sum(0))


def test_si_bnn_weight_decay_exclusions_and_padding() -> None:
    method = get_method("si_bnn")
    model = net("si_bnn")
    cfg = TrainConfig(net="tfc", method="si_bnn", dataset="synthetic", in_shape=(1, 28, 28),
                      num_classes=10, weight_decay=1e-4)
    opt = make_optimizer(model, method, cfg)
    no_decay = next(g for g in opt.param_groups if g["weight_decay"] == 0.0)["params"]
    names = {id(p): n for n, p in model.named_parameters()}
    excluded = sorted(names[id(p)].rsplit(".", 1)[-1] for p in no_decay)
    assert excluded == ["s"] * 4 + ["theta"] * 4
    assert method.pad_value == 0.0 and get_method("bnn").pad_value == -1.0


def test_bbg_gate_in_residual_net() -> None:
    from models.binarize.bbg import Gate

    model = net("bbg", "resnet")
    gates = [m for m in model.modules() if isinstance(m, Gate)]
    assert len(gates) == 6 and all(torch.equal(g.g, torch.ones_like(g.g)) for g in gates)
    assert not any(isinstance(m, Gate) for m in net("bnn", "resnet").modules())
    x = torch.randn(2, 16, 4, 4, requires_grad=True)
    gate = Gate(16)
    with torch.no_grad():
        gate.g.copy_(torch.linspace(-1, 1, 16))
    (gate(x) * 2).sum().backward()
    torch.testing.assert_close(gate.g.grad, 2 * x.detach().sum((0, 2, 3)))


@pytest.mark.parametrize("method", ["bnn", "si_bnn", "bbg", "sd_bnn"])
def test_resnet_trains_one_step(method: str) -> None:
    torch.manual_seed(0)
    model = net(method, "resnet").train()
    x = torch.rand(8, 1, 28, 28)
    loss = torch.nn.functional.cross_entropy(model(x), torch.arange(8) % 10)
    loss.backward()
    assert math.isfinite(float(loss.detach()))
    binary = [m for m in model.modules() if getattr(m, "weight", None) is not None
              and m.weight.grad is not None]
    assert len(binary) > 10
    with pytest.raises(ValueError, match="divisible by 4"):
        build_net({"net": "resnet", "method": method, "in_shape": (1, 30, 30), "num_classes": 10})


def test_stochastic_latent_weights_start_on_the_rule_s_scale() -> None:
    """p(w) = clip((w + 1) / 2) must not start at 0.5 for every weight: latent weights start
    uniform in [-init_range, init_range]."""
    for r in (1.0, 0.5):
        method = get_method("stochastic", init_range=r)
        for layer in (method.linear(200, 50), method.conv(16, 32, 3)):
            w = layer.weight.detach().abs()
            assert float(w.max()) <= r and float(w.max()) > 0.95 * r
            assert abs(float(w.mean()) - r / 2) < 0.05 * r  # uniform: mean |w| = r / 2
    with pytest.raises(ValueError, match="init_range"):
        get_method("stochastic", init_range=0)
    # staged residual with stochastic weights shares the quantizer, hence the initialisation
    w = get_method("staged_residual", weights="stochastic").linear(200, 50).weight.detach().abs()
    assert float(w.max()) > 0.95 and abs(float(w.mean()) - 0.5) < 0.05
