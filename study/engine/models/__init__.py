"""Models by name, each declaring its prunable weights, their layer kinds and its output layer."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from study.engine.models.cifar import VGG19, ResNet20
from study.engine.models.conv import PLANS, ConvNet
from study.engine.models.init import initialize
from study.engine.models.lenet import LeNet300100
from study.engine.models.onlstm import RNNLanguageModel, SequenceClassifier
from study.engine.models.slots import Slot

RNN_KINDS = ("embedding", "ih_gates", "ih_master", "hh_gates", "hh_master")
RNN_RATES = {k: 0.2 for k in RNN_KINDS}


def _defaults(cls: type, *fixed: str) -> dict:
    """The keyword arguments of `cls` a spec may set in model_args (those with defaults), with them."""
    params = inspect.signature(cls).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty and p.name not in fixed}


@dataclass(frozen=True)
class ModelInfo:
    factory: Callable[..., nn.Module]  # (input_shape, num_classes, **model_args)
    layer_kinds: tuple[str, ...]
    default_rates: dict[str, float]
    default_init: str
    inputs: str = "image"  # the kind of data it takes: image, text (language model), sequence
    model_args: tuple[str, ...] | None = ()  # what a spec's model_args may set (None: whatever the factory takes)
    model_arg_defaults: dict = field(default_factory=dict)
    # lineages of it train stacked on one device (engine/packed_train: vmap-able, its draws through
    # models/draws); None: decided per built model by `models.external.pack_refusal`
    packs: bool | None = False
    identity: dict[str, Any] | None = None  # a user's model: its import path and source hash (part of lineage ids)


_LM_DEFAULTS = _defaults(RNNLanguageModel, "masters")
_CLASSIFIER_DEFAULTS = _defaults(SequenceClassifier, "masters", "pair")


def _language_model(masters: bool) -> ModelInfo:
    """A recurrent language model: ON-LSTM cells (masters) or plain LSTM cells of the same layout."""
    return ModelInfo(
        lambda s, n, **kw: RNNLanguageModel(n, masters=masters, **kw),
        RNN_KINDS, RNN_RATES, "uniform", "text", tuple(_LM_DEFAULTS), _LM_DEFAULTS, packs=True,
    )  # fmt: skip


def _sequence_classifier(masters: bool) -> ModelInfo:
    return ModelInfo(
        lambda s, n, **kw: SequenceClassifier(s[0], n, masters=masters, **kw),
        (*RNN_KINDS, "fc", "output"), {**RNN_RATES, "fc": 0.2, "output": 0.1}, "uniform", "sequence",
        tuple(_CLASSIFIER_DEFAULTS), _CLASSIFIER_DEFAULTS, packs=True,
    )  # fmt: skip


def _conv(plan: str, conv_rate: float) -> ModelInfo:
    """Conv-2/4/6 of Frankle & Carbin (their Figure 2 prune rates)."""
    return ModelInfo(
        lambda s, n, **kw: ConvNet(PLANS[plan], s, n, **kw),
        ("conv", "fc", "output"), {"conv": conv_rate, "fc": 0.2, "output": 0.1}, "glorot_normal", packs=True,
    )  # fmt: skip


MODELS: dict[str, ModelInfo] = {
    "lenet_300_100": ModelInfo(LeNet300100, ("fc", "output"), {"fc": 0.2, "output": 0.1}, "glorot_normal", packs=True),
    "onlstm_lm": _language_model(masters=True),
    "lstm_lm": _language_model(masters=False),
    "onlstm_classifier": _sequence_classifier(masters=True),
    "lstm_classifier": _sequence_classifier(masters=False),
    "conv2": _conv("conv2", 0.1),
    "conv4": _conv("conv4", 0.1),
    "conv6": _conv("conv6", 0.15),
    "vgg19": ModelInfo(VGG19, ("conv", "output"), {"conv": 0.2, "output": 0.2}, "kaiming_normal", packs=True),
    "resnet20": ModelInfo(ResNet20, ("conv", "output"), {"conv": 0.2, "output": 0.2}, "kaiming_normal", packs=True),
}


NATIVE_INIT = "native"  # the model's own initialisation, drawn from the lineage's seed


def build_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, seed: int, init: str | None = None, **model_args
) -> nn.Module:
    return build_from(MODELS[name], input_shape, num_classes, seed, init, **model_args)


def build_from(
    info: ModelInfo, input_shape: tuple[int, ...], num_classes: int, seed: int, init: str | None = None, **model_args
) -> nn.Module:
    """The model `info` describes, every weight drawn from `seed`: a user's model (`identity`)
    is built under torch's RNG seeded by `seed` (restored afterwards), so its own
    initialisation is the seed's too; an init scheme then redraws what it covers."""
    scheme = init or info.default_init
    if info.identity is None:
        model = info.factory(input_shape, num_classes, **model_args)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = info.factory(input_shape, num_classes, **model_args)
    return model if scheme == NATIVE_INIT else initialize(model, scheme, seed)


def prunable_slots(model: nn.Module, output_layer: str | None = None) -> dict[str, Slot]:
    """Slot name -> Slot. A model may define its own (row blocks); otherwise one slot per
    prunable weight, named after it."""
    if hasattr(model, "prunable_slots") and callable(model.prunable_slots):
        return model.prunable_slots()
    return {name: Slot(name, None, kind) for name, kind in prunable_layers(model, output_layer).items()}


PRUNABLE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding, nn.RNNBase)


def output_layer_of(model: nn.Module, declared: str | None = None) -> str | None:
    """The output layer's module name: `declared`, else the model's own `output_layer`, else its
    last Linear (in registration order; none inside an nn.MultiheadAttention)."""
    if declared is not None:
        return declared
    own = getattr(model, "output_layer", None)
    if isinstance(own, str):
        return own
    linears = [name for name, m in _modules_outside_attention(model) if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _modules_outside_attention(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """named_modules, without the projections nn.MultiheadAttention applies itself (its
    weights are neither pruned nor counted)."""
    inside = [name for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    return [(n, m) for n, m in model.named_modules() if not any(n.startswith(f"{a}.") for a in inside)]


def prunable_layers(model: nn.Module, output_layer: str | None = None) -> dict[str, str]:
    """Parameter name -> layer kind for every prunable weight: 'conv' (Conv1d/2d/3d), 'fc'
    (Linear), 'embedding', 'rnn_ih'/'rnn_hh' (an RNN/LSTM/GRU's input and hidden matrices) and
    'output' (the output layer, `output_layer_of`). Biases and normalisation parameters are never
    prunable; a weight shared by two modules is named once."""
    out_prefix = output_layer_of(model, output_layer)
    names = {id(p): n for n, p in model.named_parameters()}
    kinds: dict[str, str] = {}
    for mod_name, module in _modules_outside_attention(model):
        if not isinstance(module, PRUNABLE_MODULES):
            continue
        if isinstance(module, nn.RNNBase):
            for weight in module._flat_weights_names:
                if weight.startswith("weight_"):
                    kind = "rnn_ih" if weight.startswith("weight_ih") else "rnn_hh"
                    kinds.setdefault(names[id(getattr(module, weight))], kind)
            continue
        if mod_name == out_prefix:
            kind = "output"
        elif isinstance(module, nn.Linear):
            kind = "fc"
        else:
            kind = "embedding" if isinstance(module, nn.Embedding) else "conv"
        kinds.setdefault(names[id(module.weight)], kind)
    return kinds
