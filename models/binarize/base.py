"""Building blocks shared by the binarization methods.

* :class:`Surrogate` and its subclasses: ``sign`` in the forward pass, a chosen derivative in the
  backward pass (the "surrogate gradient").
* :class:`SurrogateBinaryQuant`: a Brevitas tensor quantizer ``x -> (sign(x) * scale, scale,
  zero_point, bit_width)`` whose backward is the surrogate. Its bit width is 1, so Brevitas exports
  it as QONNX ``BipolarQuant`` with the scale as second input.
* :class:`BinarizationMethod`: what a method provides to layers, nets and the trainer. A method file
  subclasses it, sets its quantizers and overrides only the hooks it needs.

Convention (shared with qonnx and FINN): sign(x) = +1 for x >= 0, else -1.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from brevitas.core.bit_width import BitWidthConst
from brevitas.core.utils import StatelessBuffer
from torch import Tensor, nn


def sign(x: Tensor) -> Tensor:
    """sign(x) = +1 for x >= 0, else -1 (never 0)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class _SurrogateSignFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, surrogate: Surrogate) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return surrogate.value(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None


class Surrogate(nn.Module):
    """Forward: y = value(x) (sign by default). Backward: dL/dx = dL/dy * derivative(x).

    Subclasses implement :meth:`derivative`; it is also what documentation plots and tests compare
    autograd against. Constructor arguments are explicit (Brevitas' injector resolves them by name).
    """

    def __init__(self) -> None:
        super().__init__()

    def value(self, x: Tensor) -> Tensor:
        """The forward value: sign(x) unless a method samples or shifts it."""
        return sign(x)

    def derivative(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return _SurrogateSignFn.apply(x, self)


class HardTanhSTE(Surrogate):
    """Straight-through estimator with hard-tanh window (Hubara et al. 2016).

    Forward: y = sign(x). Backward: dy/dx = 1{|x| <= 1}.
    """

    def derivative(self, x: Tensor) -> Tensor:
        return (x.abs() <= 1).to(x.dtype)


class SurrogateBinaryQuant(nn.Module):
    """Brevitas tensor quantizer: y = scale * sign(x), backward through ``surrogate_impl``.

    The scale comes from ``scaling_impl`` (constant, or statistics of x such as mean|x| per output
    channel); gradients flow into it by autograd. Returns ``(y, scale, zero_point=0, bit_width=1)``,
    the contract of every Brevitas quantizer, so the export handlers emit ``BipolarQuant``.
    """

    def __init__(self, scaling_impl: nn.Module, surrogate_impl: Surrogate) -> None:
        super().__init__()
        self.scaling_impl = scaling_impl
        self.surrogate_impl = surrogate_impl
        self.bit_width = BitWidthConst(1)
        self.zero_point = StatelessBuffer(torch.tensor(0.0))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        scale = self.scaling_impl(x)
        y = self.surrogate_impl(x) * scale
        return y, scale, self.zero_point(), self.bit_width()


class TransformedBinaryQuant(SurrogateBinaryQuant):
    """y = scale(t(x)) * sign(t(x)) for a differentiable weight transform t (centring, shift).

    ``scale`` comes from ``scaling_impl`` applied to t(x), so statistics scales see the transformed
    weight. Brevitas' QONNX export re-applies ``BipolarQuant`` to the raw latent weight, which would
    drop t; :meth:`bake` therefore replaces the latent weight by sign(t(x)) and freezes the scale,
    after which this quantizer is the identity transform with a constant scale (export only).
    """

    def __init__(self, scaling_impl: nn.Module, surrogate_impl: Surrogate) -> None:
        super().__init__(scaling_impl, surrogate_impl)
        self.baked_scale: Tensor | None = None

    def transform(self, x: Tensor) -> Tensor:
        """t(x); the identity here."""
        return x

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if self.baked_scale is not None:
            return sign(x) * self.baked_scale, self.baked_scale, self.zero_point(), self.bit_width()
        xt = self.transform(x)
        scale = self.scaling_impl(xt)
        return self.surrogate_impl(xt) * scale, scale, self.zero_point(), self.bit_width()

    def bake(self, layer: nn.Module) -> None:
        """Replace ``layer.weight`` by sign(t(W)) and freeze the scale (see class docstring)."""
        with torch.no_grad():
            qw = layer.quant_weight()
            scale = qw.scale.detach().clone()
            layer.weight.copy_(sign(qw.value / scale))
        self.baked_scale = scale


def bake_weight_transforms(model: nn.Module) -> int:
    """Bake every :class:`TransformedBinaryQuant` of ``model`` in place; returns how many."""
    baked = 0
    for layer in binary_weight_layers(model):
        for sub in layer.weight_quant.modules():
            if isinstance(sub, TransformedBinaryQuant):
                sub.bake(layer)
                baked += 1
    return baked


def binary_weight_layers(model: nn.Module) -> list[nn.Module]:
    """Brevitas layers of ``model`` whose weights are quantized to 1 bit."""
    from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer

    return [m for m in model.modules()
            if isinstance(m, QuantWeightBiasInputOutputLayer) and m.weight_quant.is_quant_enabled
            and int(m.weight_quant.bit_width()) == 1]


class BinarizationMethod:
    """A binarization method: its quantizers, the layers it builds and its training hooks.

    Layers and nets ask the method for binary linear/conv layers and activations, so a method that
    needs its own layer (a weight transform, a {0,1} activation) overrides those factories. The
    trainer calls the hooks; the defaults do nothing.
    """

    key: ClassVar[str]  #: registry name
    title: ClassVar[str]  #: one line naming the method
    paper: ClassVar[str]  #: citation
    weight_quant: ClassVar[type]  #: Brevitas weight quantizer (1 bit)
    act_quant: ClassVar[type]  #: Brevitas activation quantizer (1 bit)
    clip_weights: ClassVar[bool] = True  #: clip latent weights to [-1, 1] after each step
    #: latent weights start uniform in [-r, r] (None: PyTorch's default initialisation); for
    #: weight quantizers whose rule reads w on the clip range's scale (stochastic weights)
    latent_init_range: float | None = None
    #: options with their defaults; instances accept these as keyword arguments
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise ValueError(f"method {self.key!r} has no option(s) {sorted(unknown)}; "
                             f"known: {sorted(self.defaults) or 'none'}")
        for name, value in options.items():
            self.options_error(name, value)
        self.options = {**self.defaults, **options}

    def options_error(self, name: str, value: Any) -> None:
        """Refuse ``value`` for option ``name`` unless it has its default's type: a finite
        number where the default is a number, a string where it is a string (ValueError naming
        the option; ranges are the method's own checks)."""
        default = self.defaults[name]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value))
        else:
            ok = isinstance(value, type(default))
        if not ok:
            kind = ("a finite number" if isinstance(default, (int, float))
                    and not isinstance(default, bool) else type(default).__name__)
            raise ValueError(f"{self.key} option {name}={value!r}: expected {kind} "
                             f"(default {default!r})")

    # -- layer factories ------------------------------------------------------------------
    def linear(self, in_features: int, out_features: int) -> nn.Module:
        """A binary-weight fully connected layer without bias."""
        from brevitas.nn import QuantLinear
        return self._init_latent(QuantLinear(in_features, out_features, bias=False,
                                             weight_quant=self.weight_quant))

    def conv(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
             padding: int = 0) -> nn.Module:
        """A binary-weight 2D convolution without bias."""
        from brevitas.nn import QuantConv2d
        return self._init_latent(QuantConv2d(in_channels, out_channels, kernel_size,
                                             stride=stride, padding=padding, bias=False,
                                             weight_quant=self.weight_quant))

    def _init_latent(self, layer: nn.Module) -> nn.Module:
        r = self.latent_init_range
        if r is not None:
            with torch.no_grad():
                layer.weight.uniform_(-r, r)
        return layer

    def act(self, channels: int) -> nn.Module:
        """The binary activation placed after each BatchNorm (``channels`` for per-channel ones)."""
        from brevitas.nn import QuantIdentity
        return QuantIdentity(act_quant=self.act_quant, return_quant_tensor=False)

    # -- training hooks ----------------------------------------------------------------------
    def on_epoch_start(self, model: nn.Module, epoch: int, epochs: int) -> None:
        """Called before each training epoch (``epoch`` counts from 0): schedules go here."""

    def extra_loss(self, model: nn.Module) -> Tensor | None:
        """A term added to the task loss (a regularizer), or None."""
        return None

    def no_weight_decay(self, name: str, param: nn.Parameter) -> bool:
        """True for parameters that must be excluded from weight decay."""
        return False

    # -- residual nets --------------------------------------------------------------------------
    #: value that padding of a binary activation must use: the value that bit 0 encodes
    pad_value: ClassVar[float] = -1.0

    def shortcut(self, channels: int) -> nn.Module:
        """The shortcut branch of a residual binary conv (identity unless the method gates it)."""
        return nn.Identity()

    # -- deployment ---------------------------------------------------------------------------
    def deployment(self) -> tuple[bool, str]:
        """(deployable now, how it maps to XNOR-popcount + thresholds or what it lacks)."""
        return True, "XNOR-popcount + integer thresholds"

    def prepare_export(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` ready for QONNX export: weight transforms baked into the weights.

        Methods whose trained state cannot be exported raise ValueError saying why.
        """
        import copy
        exported = copy.deepcopy(model).eval()
        bake_weight_transforms(exported)
        return exported

    def describe(self) -> dict[str, Any]:
        """JSON-able summary: key, title, paper, options."""
        return {"key": self.key, "title": self.title, "paper": self.paper,
                "options": dict(self.options)}
