"""Models this package does not define: any `nn.Module` a factory builds, named by import path
(`model: mypkg.nets:build`), registered by a plugin, or a classification model of
`torchvision.models` (`model: torchvision:resnet18`, random init: nothing is downloaded).

A factory is called as `factory(input_shape, num_classes, **model_args)` under torch's RNG seeded
by the lineage's seed (its own initialisation is then the seed's; `init:` may redraw it). Its
prunable weights are found by `models.prunable_layers`; whether its lineages may train packed is
decided on the built model by `pack_refusal`."""

from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from study.engine.models import NATIVE_INIT, ModelInfo
from study.errors import SpecError

TORCHVISION = "torchvision:"
# a user's model: the layer kinds discovery can find, with the paper's rates per kind (conv 10%,
# fc 20%, output 10%; embeddings and recurrent matrices as fc)
EXTERNAL_KINDS = ("conv", "fc", "embedding", "rnn_ih", "rnn_hh", "output")
EXTERNAL_RATES = {"conv": 0.1, "fc": 0.2, "embedding": 0.2, "rnn_ih": 0.2, "rnn_hh": 0.2, "output": 0.1}
PACK_PROBE_TOLERANCE = 1e-9  # float64: a stacked forward that is the lone one differs by rounding only


def factory_info(factory: Any, label: str, identity: dict[str, Any]) -> ModelInfo:
    """The registry entry of a user's factory (`label` names it in errors)."""
    if not callable(factory):
        raise SpecError(f"model {label}: {type(factory).__name__} is not callable; name a factory function or class")
    args = _keyword_args(factory)
    return ModelInfo(
        _checked(factory, label),
        EXTERNAL_KINDS,
        EXTERNAL_RATES,
        NATIVE_INIT,
        model_args=None if args is None else tuple(args),
        model_arg_defaults=args or {},
        packs=None,
        identity=identity,
    )


def _keyword_args(factory: Callable[..., Any]) -> dict[str, Any] | None:
    """What model_args a factory takes beyond (input_shape, num_classes), with their defaults
    (None: it takes **kwargs, so anything)."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][2:]
    return {p.name: None if p.default is inspect.Parameter.empty else p.default for p in named}


def _checked(factory: Callable[..., Any], label: str) -> Callable[..., nn.Module]:
    def build(input_shape: tuple[int, ...], num_classes: int, **model_args: Any) -> nn.Module:
        model = factory(input_shape, num_classes, **model_args)
        if not isinstance(model, nn.Module):
            raise SpecError(
                f"model {label}: the factory returned a {type(model).__name__}, not an nn.Module; return the network"
            )
        return model

    return build


def torchvision_info(name: str) -> ModelInfo:
    """`torchvision:<name>`: a classification model of torchvision.models, randomly initialised
    (weights=None: nothing is downloaded), its classifier sized to the dataset's classes."""
    import torchvision
    from torchvision import models as tvm

    known = tvm.list_models(module=tvm)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean 'torchvision:{close[0]}'? " if close else ""
        raise SpecError(
            f"model torchvision:{name}: torchvision {torchvision.__version__} has no classification model {name!r}; "
            f"{hint}see torchvision.models.list_models(module=torchvision.models)"
        )

    def factory(input_shape: tuple[int, ...], num_classes: int, **model_args: Any) -> nn.Module:
        return tvm.get_model(name, weights=None, num_classes=num_classes, **model_args)

    info = factory_info(factory, f"{TORCHVISION}{name}", {"torchvision": torchvision.__version__})
    return info


def check_output(model: nn.Module, label: str, dataset: str, input_shape: tuple[int, ...], num_classes: int) -> None:
    """The model maps a batch of the dataset's inputs to one score per class (a one-line
    SpecError otherwise, naming the shapes and the fix)."""
    was_training = model.training
    model.eval()
    p = next(model.parameters(), None)
    probe = torch.zeros((2, *input_shape), dtype=p.dtype if p is not None else torch.float32)
    try:
        with torch.no_grad():
            out = model(probe.to(p.device) if p is not None else probe)
    except Exception as e:  # noqa: BLE001  (the user's forward: say so in one line)
        first = (str(e).splitlines() or [""])[0]
        raise SpecError(
            f"model {label} cannot take dataset {dataset}'s inputs of shape {tuple(input_shape)} "
            f"({type(e).__name__}: {first}); build it for that input shape (the factory's first argument)"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor):
        raise SpecError(f"model {label} returned a {type(out).__name__}, not a tensor of class scores; return logits")
    if tuple(out.shape) != (2, num_classes):
        raise SpecError(
            f"model {label} outputs shape {tuple(out.shape)} for 2 examples, but dataset {dataset} has "
            f"{num_classes} classes; size its output layer with num_classes (the factory's second argument)"
        )


def pack_refusal(model: nn.Module, input_shape: tuple[int, ...]) -> str | None:
    """Why lineages of `model` may not train packed (None: they may).

    Packing (engine/packed_train) runs K members' weights through `torch.func.vmap` of the model's
    forward, batch-norm statistics stacked per member. That is the lone training exactly when the
    forward is a deterministic function of (weights, buffers, batch). Refused: dropout with p > 0
    (each lone training draws its own masks, which a stacked step cannot reproduce), recurrent
    modules (vmap has no batching rule for their fused kernels), and any model whose stacked
    forward in train mode (outputs and updated buffers, two members, float64) is not its lone
    forward to rounding, or does not run under vmap at all."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return (
                f"{name} is {type(module).__name__}(p={module.p}): each lineage draws its own dropout masks, "
                f"which a packed step cannot reproduce"
            )
        if isinstance(module, nn.RNNBase):
            return f"{name} is a recurrent {type(module).__name__}: vmap cannot batch its fused kernel"
    try:
        gap = _stacked_gap(model, input_shape)
    except Exception as e:  # noqa: BLE001  (whatever the user's forward does under vmap)
        first = (str(e).splitlines() or [""])[0][:160]
        return f"its forward does not run stacked under torch.func.vmap ({type(e).__name__}: {first})"
    if not gap <= PACK_PROBE_TOLERANCE:
        return f"its stacked forward differs from the lone forward by {gap:.1e} (float64): not per-member exact"
    return None


def _stacked_gap(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """The largest relative difference between two members' lone train-mode forwards (outputs
    and buffers after it) and the same forward stacked under vmap, in float64."""
    g = torch.Generator().manual_seed(0)
    members = []
    for _ in range(2):
        m = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).train()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.01)
        members.append(m)
    x = torch.randn((2, 2, *input_shape), generator=g, dtype=torch.float64)
    base = copy.deepcopy(members[0])
    params = {
        n: torch.stack([dict(m.named_parameters())[n].detach() for m in members]) for n, _ in base.named_parameters()
    }
    buffers = {n: torch.stack([dict(m.named_buffers())[n].clone() for m in members]) for n, _ in base.named_buffers()}

    def forward(p: dict[str, Tensor], b: dict[str, Tensor], xb: Tensor) -> Tensor:
        return functional_call(base, (p, b), (xb,))

    with torch.no_grad():
        stacked = vmap(forward)(params, buffers, x)
        gaps = []
        for k, m in enumerate(members):
            lone = m(x[k])
            gaps.append(_relative(stacked[k], lone))
            for n, b in m.named_buffers():
                if b.is_floating_point():
                    gaps.append(_relative(buffers[n][k], b))
    return max(gaps)


def _relative(a: Tensor, b: Tensor) -> float:
    scale = max(float(b.abs().max()), 1.0) if b.numel() else 1.0
    return float((a - b).abs().max()) / scale if b.numel() else 0.0
