"""ON-LSTM (Shen et al., ICLR 2019), a plain LSTM of the same layout, and the models built on
them: a stacked language model with a tied embedding and locked dropout, and a sequence
(or sentence-pair) classifier.

Fused weight layout of a layer, input-to-hidden and hidden-to-hidden alike (rows):
    [0, n)          master forget logits     (n = hidden / chunk_size)
    [n, 2n)         master input logits
    [2n, 2n+4H)     gates: output, cell, input, forget (H rows each)
A plain LSTM layer has only the 4H gate rows. Pruning addresses these row blocks as groups.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.engine.models.draws import GLOBAL
from study.engine.models.slots import Slot


def cumax(x: Tensor, dim: int = -1) -> Tensor:
    """cumsum(softmax(x)): monotone non-decreasing in [0, 1] along `dim`."""
    return torch.cumsum(torch.softmax(x, dim=dim), dim=dim)


class LockedDropout(nn.Module):
    """One dropout mask per sequence, shared by every time step (inputs are (T, B, F))."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.draws = GLOBAL  # where its random numbers come from (models/draws.py)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = self.draws.uniform((1, x.shape[1], x.shape[2]), x.device) >= self.p
        return x * keep / (1 - self.p)


class RecurrentLayer(nn.Module):
    """One ON-LSTM (masters=True) or LSTM (masters=False) layer over a whole sequence."""

    def __init__(
        self, input_size: int, hidden_size: int, chunk_size: int, masters: bool = True, dropconnect: float = 0.0
    ) -> None:
        super().__init__()
        if hidden_size % chunk_size:
            raise ValueError(f"hidden size {hidden_size} is not a multiple of chunk size {chunk_size}")
        self.hidden_size, self.chunk_size, self.masters = hidden_size, chunk_size, masters
        self.n_chunks = hidden_size // chunk_size
        self.n_master = 2 * self.n_chunks if masters else 0
        rows = self.n_master + 4 * hidden_size
        self.ih = nn.Linear(input_size, rows)
        self.hh = nn.Linear(hidden_size, rows)
        self.dropconnect = dropconnect
        self.draws = GLOBAL  # where DropConnect's random numbers come from (models/draws.py)

    def row_blocks(self) -> dict[str, slice]:
        """The weight rows of each pruning group: master rows (ON-LSTM only) and gate rows."""
        blocks = {"gates": slice(self.n_master, self.n_master + 4 * self.hidden_size)}
        if self.masters:
            blocks["master"] = slice(0, self.n_master)
        return blocks

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None, force_master_ones: bool = False
    ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor]:
        """x: (T, B, input). Returns outputs (T, B, H), the final (h, c), and the per-token
        master-forget distances d_t = 1 - mean(f̃_t) (T, B) (zeros for a plain LSTM)."""
        B = x.shape[1]
        H, n, cs, m = self.hidden_size, self.n_chunks, self.chunk_size, self.n_master
        # the input-to-hidden map (and both biases) for the whole sequence at once
        pre = F.linear(x, self.ih.weight, self.ih.bias + self.hh.bias)
        w_hh = self.hh.weight
        if self.training and self.dropconnect > 0:
            keep = (
                self.draws.uniform(w_hh.shape, w_hh.device, w_hh.dtype) >= self.dropconnect
            )  # DropConnect, a bool mask
            w_hh = w_hh * keep / (1 - self.dropconnect)
        if state is None:
            h = x.new_zeros(B, H)
            c = x.new_zeros(B, n, cs)
        else:
            h, c = state
            c = c.view(B, n, cs)
        outputs, distances = [], []
        # unbind/split rather than indexing: an indexed tensor's backward writes a zero tensor
        # of the whole source per index, which made the backward pass quadratic in T
        for pre_t in pre.unbind(0):
            g = pre_t + F.linear(h, w_hh)  # F.linear: engine/cost.py prices every linear map it sees
            master_f, master_i, gate_rows = g.split([m // 2, m // 2, 4 * H], dim=1)
            gates = gate_rows.view(B, 4, n, cs)
            o, _, i, f = torch.sigmoid(gates).unbind(1)  # one sigmoid call beats three
            cell = torch.tanh(gates.unbind(1)[1])
            if self.masters and not force_master_ones:
                mf = cumax(master_f)
                mi = 1 - cumax(master_i)
                distances.append(1 - mf.mean(-1))
                mf, mi = mf[:, :, None], mi[:, :, None]
                overlap = mf * mi
                f = f * overlap + (mf - overlap)
                i = i * overlap + (mi - overlap)
            else:
                distances.append(h.new_zeros(B))
            c = f * c + i * cell
            h = (o * torch.tanh(c)).view(B, H)
            outputs.append(h)
        return torch.stack(outputs), (h, c.view(B, H)), torch.stack(distances)


class StackedRNN(nn.Module):
    def __init__(
        self,
        input_size: int,
        sizes: list[int],
        chunk_size: int,
        masters: bool,
        dropconnect: float,
        dropout_between: float,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for size in sizes:
            self.layers.append(RecurrentLayer(input_size, size, chunk_size, masters, dropconnect))
            input_size = size
        self.drop = LockedDropout(dropout_between)

    def slots(self, prefix: str) -> dict[str, Slot]:
        """Pruning slots: input-to-hidden and hidden-to-hidden x {gate rows, master rows}."""
        out = {}
        for i, layer in enumerate(self.layers):
            for which in ("ih", "hh"):
                for block, rows in layer.row_blocks().items():  # type: ignore[operator]
                    out[f"layer{i}.{which}.{block}"] = Slot(
                        f"{prefix}.layers.{i}.{which}.weight", rows, f"{which}_{block}"
                    )
        return out

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        distances = []
        for i, layer in enumerate(self.layers):
            x, _, d = layer(x)
            distances.append(d)
            if i < len(self.layers) - 1:
                x = self.drop(x)
        return x, distances


class RNNLanguageModel(nn.Module):
    """Embedding -> stacked ON-LSTM/LSTM -> decoder tied to the embedding (one shared weight)."""

    output_layer = "decoder"

    def __init__(
        self,
        vocab: int,
        embedding: int = 200,
        hidden: int = 400,
        layers: int = 3,
        chunk_size: int = 10,
        masters: bool = True,
        dropout: float = 0.3,
        dropout_hidden: float = 0.2,
        dropout_input: float = 0.2,
        dropconnect: float = 0.2,
    ) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, embedding)
        sizes = [hidden] * (layers - 1) + [embedding]  # the top layer feeds the tied decoder
        self.rnn = StackedRNN(embedding, sizes, chunk_size, masters, dropconnect, dropout_hidden)
        self.drop_in, self.drop_out = LockedDropout(dropout_input), LockedDropout(dropout)
        self.decoder = nn.Linear(embedding, vocab)
        self.decoder.weight = self.encoder.weight

    def prunable_slots(self) -> dict[str, Slot]:
        # The decoder shares the embedding's weight: one slot, masked once, staying tied.
        return {"embedding": Slot("encoder.weight", None, "embedding"), **self.rnn.slots("rnn")}

    def distances(self, tokens: Tensor) -> list[Tensor]:
        return self.rnn(self.encoder(tokens))[1]

    def forward(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        """tokens (T, B) -> logits (T, B, V) and per-layer distances [(T, B)]."""
        x = self.drop_in(self.encoder(tokens))
        out, distances = self.rnn(x)
        return self.decoder(self.drop_out(out)), distances


class SequenceClassifier(nn.Module):
    """Encodes a sequence (or a pair, for logical inference: [u, v, u*v, |u-v|]) with a stacked
    ON-LSTM/LSTM, reads the state at each sequence's last token, classifies with an MLP."""

    output_layer = "head.2"

    def __init__(
        self,
        vocab: int,
        num_classes: int,
        embedding: int = 128,
        hidden: int = 128,
        layers: int = 2,
        chunk_size: int = 8,
        masters: bool = True,
        pair: bool = False,
        dropout: float = 0.1,
        dropconnect: float = 0.1,
    ) -> None:
        super().__init__()
        self.pair = pair
        self.encoder = nn.Embedding(vocab, embedding, padding_idx=0)
        self.rnn = StackedRNN(embedding, [hidden] * layers, chunk_size, masters, dropconnect, dropout)
        features = 4 * hidden if pair else hidden
        self.head = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def prunable_slots(self) -> dict[str, Slot]:
        return {
            "embedding": Slot("encoder.weight", None, "embedding"),
            **self.rnn.slots("rnn"),
            "head.fc": Slot("head.0.weight", None, "fc"),
            "head.output": Slot("head.2.weight", None, "output"),
        }

    def distances(self, tokens: Tensor) -> list[Tensor]:
        return self.rnn(self.encoder(tokens))[1]

    def encode(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, list[Tensor]]:
        out, distances = self.rnn(self.encoder(tokens))
        last = out[lengths - 1, torch.arange(out.shape[1], device=out.device)]
        return last, distances

    def forward(
        self, tokens: Tensor, lengths: Tensor, tokens2: Tensor | None = None, lengths2: Tensor | None = None
    ) -> Tensor:
        if not self.pair:
            return self.head(self.encode(tokens, lengths)[0])
        assert tokens2 is not None and lengths2 is not None, "a pair classifier takes two sequences"
        # Both sides in one pass (half the sequential steps); padding after a sequence's last
        # token cannot reach the state read at that token.
        steps = max(tokens.shape[0], tokens2.shape[0])
        both = torch.cat([F.pad(t, (0, 0, 0, steps - t.shape[0])) for t in (tokens, tokens2)], dim=1)
        u, v = self.encode(both, torch.cat([lengths, lengths2]))[0].split(tokens.shape[1])
        return self.head(torch.cat([u, v, u * v, (u - v).abs()], dim=-1))
