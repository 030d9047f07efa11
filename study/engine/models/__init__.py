"""Models by name, each declaring its prunable weights, their layer kinds and its output layer."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

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
    model_args: tuple[str, ...] = ()  # what a spec's model_args may set
    model_arg_defaults: dict = field(default_factory=dict)
    packs: bool = False  # lineages of it train stacked on one device (engine/packed_train: vmap-able, its draws through models/draws)


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


def build_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, seed: int, init: str | None = None, **model_args
) -> nn.Module:
    info = MODELS[name]
    return initialize(info.factory(input_shape, num_classes, **model_args), init or info.default_init, seed)


def prunable_slots(model: nn.Module) -> dict[str, Slot]:
    """Slot name -> Slot. A model may define its own (row blocks); otherwise one slot per
    prunable weight, named after it."""
    if hasattr(model, "prunable_slots"):
        return model.prunable_slots()  # type: ignore[operator]
    return {name: Slot(name, None, kind) for name, kind in prunable_layers(model).items()}


def prunable_layers(model: nn.Module) -> dict[str, str]:
    """Parameter name -> layer kind ('conv', 'fc' or 'output') for every prunable weight.
    Biases and normalisation parameters are never prunable."""
    out_prefix = model.output_layer
    kinds: dict[str, str] = {}
    for mod_name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            kind = "output" if mod_name == out_prefix else ("conv" if isinstance(module, nn.Conv2d) else "fc")
            kinds[f"{mod_name}.weight"] = kind
    return kinds
