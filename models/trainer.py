"""The training loop: epochs with progress, method hooks, weight clipping, checkpoints, metrics.

Reproducibility: the batch order and augmentation of epoch e come from a generator seeded with
(seed, e); dropout uses torch's global RNG, whose state is saved in every checkpoint. Resuming
from the checkpoint of epoch e therefore continues bit-identically to an uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from models.binarize import BinarizationMethod, binary_weight_layers, get_method
from models.checkpoint import load_checkpoint, save_checkpoint, write_json
from models.data import ImageDataset, batches
from models.nets import build_net
from models.plots import plot_curves

log = logging.getLogger(__name__)

LOSSES = ("ce", "sqr_hinge")
SCHEDULES = ("cosine", "step", "none")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint as ``config``)."""

    net: str  #: tfc, sfc, lfc or cnv
    method: str  #: key in models.binarize.METHODS
    dataset: str  #: key in models.data.DATASETS
    in_shape: tuple[int, int, int]  #: (C, H, W) the net sees, padding included
    num_classes: int  #: number of classes
    method_options: dict[str, Any] = field(default_factory=dict)  #: method keyword options
    epochs: int = 10  #: total epochs
    batch_size: int = 100  #: minibatch size
    lr: float = 0.02  #: Adam learning rate
    lr_schedule: str = "cosine"  #: cosine (to 0 over epochs), step (halve every 40), none
    weight_decay: float = 0.0  #: Adam weight decay (methods may exclude parameters)
    loss: str = "ce"  #: ce (cross-entropy) or sqr_hinge (squared hinge on +-1 targets)
    seed: int = 0  #: seeds initialization, batch order, augmentation and dropout
    train_subset: int = 0  #: train on the first N training images (0: all)
    test_subset: int = 0  #: test on the first N test images (0: all)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["in_shape"] = list(self.in_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config a checkpoint recorded (fields it predates take their defaults)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training config field(s) {unknown}")
        return cls(**{**d, "in_shape": tuple(d["in_shape"])})


def sqr_hinge_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """mean over batch and classes of max(0, 1 - t * y)^2 with t = +1 for the label, -1 else."""
    target = -torch.ones_like(logits)
    target.scatter_(1, labels[:, None], 1.0)
    return torch.clamp(1.0 - target * logits, min=0.0).pow(2).mean()


def task_loss(kind: str, logits: Tensor, labels: Tensor) -> Tensor:
    """The task loss ``kind`` (see :data:`LOSSES`)."""
    if kind == "ce":
        return F.cross_entropy(logits, labels)
    if kind == "sqr_hinge":
        return sqr_hinge_loss(logits, labels)
    raise ValueError(f"unknown loss {kind!r}; choose from {', '.join(LOSSES)}")


def clip_weights(layers: list[nn.Module]) -> None:
    """Clip latent weights to [-1, 1] in place."""
    with torch.no_grad():
        for m in layers:
            m.weight.clamp_(-1.0, 1.0)


def make_optimizer(model: nn.Module, method: BinarizationMethod,
                   cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam with two parameter groups: with and without weight decay (the method decides)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if method.no_weight_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.Adam([g for g in groups if g["params"]], lr=cfg.lr)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=40, gamma=0.5)
    if cfg.lr_schedule == "none":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise ValueError(f"unknown lr schedule {cfg.lr_schedule!r}; choose from {', '.join(SCHEDULES)}")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when a CUDA device is usable, else ``cpu``; other names are checked.

    Raises ValueError for an unknown name, or for ``cuda`` when torch sees no CUDA device.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(f"--device {spec!r} is not a torch device name (cpu, cuda, cuda:N, auto)"
                         ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: this torch ({torch.__version__}) sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {spec}: only cpu and cuda are supported")
    return dev


def evaluate(model: nn.Module, ds: ImageDataset, loss_kind: str, batch_size: int = 500,
             device: torch.device | None = None) -> tuple[float, float]:
    """(mean loss, accuracy as a fraction) of ``model`` in eval mode on ``ds``."""
    device = device or next(model.parameters()).device
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.no_grad():
        for x, y in batches(ds, batch_size):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = model(x)
            total_loss += task_loss(loss_kind, logits, y).double() * len(y)
            correct += (logits.argmax(1) == y).sum()
    return float(total_loss) / len(ds), int(correct) / len(ds)


def rng_state(device: torch.device) -> dict[str, Any]:
    """The RNG states a run draws from: torch's CPU generator, plus the CUDA device's."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(saved: Any, device: torch.device) -> None:
    """Restore :func:`rng_state`'s output (or an older checkpoint's CPU state alone)."""
    if isinstance(saved, torch.Tensor):
        torch.set_rng_state(saved)
        return
    torch.set_rng_state(saved["cpu"])
    if device.type == "cuda" and "cuda" in saved:
        torch.cuda.set_rng_state(saved["cuda"], device)


def train(cfg: TrainConfig, train_ds: ImageDataset, test_ds: ImageDataset, out: str | Path,
          resume: bool = False, progress: bool = True, stop_after: int | None = None,
          device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train (or resume) into ``out``; returns the metrics dict also written to metrics.json.

    ``cfg.train_subset`` / ``cfg.test_subset`` select the first images of each split.

    Writes ``checkpoint.pt`` after every epoch, plus ``metrics.json`` and ``curves.png``.
    ``stop_after`` ends this call after that many epochs (as an interruption would); a later
    call with ``resume=True`` continues the run. ``device`` (see :func:`resolve_device`) is
    where the model and batches live; checkpoints are device-independent, so a run can resume
    on another device (bit-identity holds only on the device that wrote the checkpoint).
    """
    train_ds, test_ds = train_ds.subset(cfg.train_subset), test_ds.subset(cfg.test_subset)
    dev = resolve_device(device)
    if dev.type == "cuda":  # cuDNN's fastest convolution algorithms are not deterministic
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    torch.manual_seed(cfg.seed)
    method = get_method(cfg.method, **cfg.method_options)
    model = build_net(cfg.to_dict())
    ckpt = load_checkpoint(ckpt_path) if resume else None
    if ckpt is not None:
        # before the optimizer exists: Brevitas re-creates a weight quantizer's tensor_quant
        # (and the parameters inside it, e.g. learned scales) when a state dict is loaded
        try:
            model.load_state_dict(ckpt["model"])
        except (KeyError, RuntimeError, TypeError) as exc:
            raise ValueError(f"{ckpt_path}: its weights do not fit the recorded "
                             f"{cfg.net}/{cfg.method} net ({str(exc).splitlines()[0]})") from None
    model.to(dev)  # after loading, so that parameters Brevitas re-created move too
    opt = make_optimizer(model, method, cfg)
    sched = make_scheduler(opt, cfg)
    # before the RNG state is restored: probing a quantizer's bit width runs it (stochastic
    # quantizers draw random numbers)
    clip_layers = binary_weight_layers(model) if method.clip_weights else []
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"], dev)
        history = ckpt["history"]
        start_epoch = ckpt["epoch"]
        log.info("resuming %s after epoch %d of %d", ckpt_path, start_epoch, cfg.epochs)
    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, start_epoch + stop_after)
    metrics = write_metrics(out, cfg, history) if start_epoch >= end_epoch else {}
    for epoch in range(start_epoch, end_epoch):
        t0 = time.time()
        method.on_epoch_start(model, epoch, cfg.epochs)
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        n_batches = (len(train_ds) + cfg.batch_size - 1) // cfg.batch_size
        bar = tqdm(batches(train_ds, cfg.batch_size, train=True, generator=gen), total=n_batches,
                   desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False,
                   mininterval=1.0)
        # running sums stay on the device: a host sync per step would stall a GPU
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        seen = 0
        for step, (x, y) in enumerate(bar):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            logits = model(x)
            loss = task_loss(cfg.loss, logits, y)
            extra = method.extra_loss(model)
            total = loss if extra is None else loss + extra
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            clip_weights(clip_layers)
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if progress and step % 20 == 0:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}",
                                acc=f"{int(correct) / seen:.3f}")
        lr = opt.param_groups[0]["lr"]
        sched.step()
        test_loss, test_acc = evaluate(model, test_ds, cfg.loss, device=dev)
        train_loss, train_acc = float(loss_sum) / seen, int(correct) / seen
        history.append({"epoch": epoch + 1, "train_loss": train_loss,
                        "train_accuracy": train_acc, "test_loss": test_loss,
                        "test_accuracy": test_acc, "lr": lr, "seconds": time.time() - t0,
                        "device": dev.type})
        log.info("epoch %d/%d: train loss %.4f acc %.4f | test loss %.4f acc %.4f | %.1f s",
                 epoch + 1, cfg.epochs, train_loss, train_acc, test_loss, test_acc,
                 history[-1]["seconds"])
        save_checkpoint(ckpt_path, {
            "config": cfg.to_dict(), "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "epoch": epoch + 1, "history": history,
            "rng": rng_state(dev)})
        metrics = write_metrics(out, cfg, history)
    if start_epoch >= cfg.epochs:
        log.info("%s already holds %d epochs; nothing to train", ckpt_path, start_epoch)
    return metrics


def write_metrics(out: Path, cfg: TrainConfig, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Write metrics.json and curves.png for ``history``; return the metrics dict."""
    metrics = {
        "test_accuracy": history[-1]["test_accuracy"] if history else None,
        "best_test_accuracy": max((h["test_accuracy"] for h in history), default=None),
        "epochs_completed": len(history),
        "seconds_per_epoch": (sum(h["seconds"] for h in history) / len(history)
                              if history else None),
        "config": cfg.to_dict(),
        "history": history,
    }
    write_json(out / "metrics.json", metrics)
    if history:
        plot_curves(history, out / "curves.png",
                    f"{cfg.net.upper()} {cfg.method} on {cfg.dataset}")
    return metrics
