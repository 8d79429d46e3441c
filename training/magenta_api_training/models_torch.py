"""PyTorch twins of Magenta's MusicVAE (flat, categorical) and MelodyRNN graphs.

They mirror the TensorFlow graphs exactly so that :mod:`.export` can write the weights under
Magenta's names and our NumPy engines run them unchanged:

* MusicVAE ``BidirectionalLstmEncoder``: stacked bidirectional LSTM over the input sequence;
  ``concat(last h fw, last h bw)`` -> ``mu`` (dense) and ``sigma = softplus(dense)``.
* ``CategoricalLstmDecoder``: ``z -> tanh(dense)`` split into the (c, h) of every layer (in
  MultiRNNCell order c0, h0, c1, h1, ...); inputs ``concat(previous one-hot output, z)``
  (zeros before the first step); a stacked LSTM; ``output_projection`` dense to logits.
* MelodyRNN ``basic_rnn``: the one-hot event at step t -> stacked LSTM -> ``fully_connected``
  logits for the event at step t + 1.

Fused ``torch.nn.LSTM`` computes the same function as TF's LSTMCell with ``forget_bias`` 1.0 once
the export re-orders gates (torch i, f, g, o -> TF i, j, f, o) and subtracts 1.0 from the f bias.
To start training where TF starts, the f half of ``bias_ih`` is initialised to 1.0.
"""

import torch
from torch import nn
from torch.nn import functional as F


def _init_forget_bias(lstm: nn.LSTM, value: float = 1.0):
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            if name.startswith("bias_"):
                p.zero_()
                if name.startswith("bias_ih"):
                    h = p.shape[0] // 4
                    p[h : 2 * h] = value


def _flat_initial_state(dense: nn.Linear, x, layers: int, units: int):
    """``lstm_utils.initial_cell_state_from_embedding``: tanh(dense(x)) split as c0, h0, c1, h1, ...
    -> torch's (h0, c0) stacked over layers."""
    s = torch.tanh(dense(x)).view(x.shape[0], layers, 2, units)
    return s[:, :, 1].transpose(0, 1).contiguous(), s[:, :, 0].transpose(0, 1).contiguous()


class _VAE(nn.Module):
    """What both MusicVAE twins share: ``forward`` encodes, draws z = mu + sigma * eps and returns the
    teacher-forced logits with mu and sigma (subclasses give ``encode`` and ``decode_logits``)."""

    def forward(self, x, targets_onehot, eps=None):
        mu, sigma = self.encode(x)
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + sigma * eps
        return self.decode_logits(z, targets_onehot), mu, sigma


class MusicVAE(_VAE):
    """Flat MusicVAE: BidirectionalLstmEncoder + CategoricalLstmDecoder."""

    def __init__(
        self, input_depth: int, output_depth: int, enc_rnn_size=(256,), dec_rnn_size=(256, 256), z_size: int = 64
    ):
        super().__init__()
        if len(set(dec_rnn_size)) != 1 or len(set(enc_rnn_size)) != 1:
            raise ValueError("fused LSTMs need equal layer sizes")
        self.input_depth, self.output_depth, self.z_size = input_depth, output_depth, z_size
        self.enc_rnn_size, self.dec_rnn_size = list(enc_rnn_size), list(dec_rnn_size)
        he, hd = enc_rnn_size[0], dec_rnn_size[0]
        self.encoder = nn.LSTM(input_depth, he, num_layers=len(enc_rnn_size), bidirectional=True, batch_first=True)
        self.mu = nn.Linear(2 * he, z_size)
        self.sigma = nn.Linear(2 * he, z_size)
        self.z_to_initial_state = nn.Linear(z_size, 2 * hd * len(dec_rnn_size))
        self.decoder = nn.LSTM(output_depth + z_size, hd, num_layers=len(dec_rnn_size), batch_first=True)
        self.output_projection = nn.Linear(hd, output_depth)
        _init_forget_bias(self.encoder)
        _init_forget_bias(self.decoder)
        with torch.no_grad():  # Magenta: random_normal_initializer(stddev=0.001), zero bias
            self.z_to_initial_state.weight.normal_(0.0, 0.001)
            self.z_to_initial_state.bias.zero_()

    def encode(self, x):
        """x [B, T, input_depth] -> (mu, sigma) [B, z]."""
        _, (h_n, _) = self.encoder(x)
        last = torch.cat([h_n[-2], h_n[-1]], dim=-1)
        return self.mu(last), F.softplus(self.sigma(last))

    def initial_state(self, z):
        return _flat_initial_state(self.z_to_initial_state, z, len(self.dec_rnn_size), self.dec_rnn_size[0])

    def decode_logits(self, z, targets_onehot):
        """Teacher-forced logits [B, T, output_depth]: step t sees the target of step t - 1."""
        b, t, _ = targets_onehot.shape
        prev = torch.cat([targets_onehot.new_zeros(b, 1, self.output_depth), targets_onehot[:, :-1]], dim=1)
        inputs = torch.cat([prev, z[:, None, :].expand(b, t, self.z_size)], dim=-1)
        out, _ = self.decoder(inputs, self.initial_state(z))
        return self.output_projection(out)


def vae_loss(logits, targets, mu, sigma, beta: float, free_bits: float):
    """Magenta's ELBO: per-sequence summed cross-entropy + beta * max(KL - free nats, 0)."""
    r_loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").sum(dim=1)
    kl = (0.5 * (mu**2 + sigma**2) - torch.log(sigma) - 0.5).sum(dim=-1)
    free_nats = free_bits * torch.log(torch.tensor(2.0))
    kl_cost = torch.clamp(kl - free_nats, min=0.0)
    loss = r_loss.mean() + beta * kl_cost.mean()
    return loss, r_loss.mean(), kl.mean() / torch.log(torch.tensor(2.0))


class MelodyRNN(nn.Module):
    """MelodyRNN basic_rnn: one-hot events -> stacked LSTM -> fully_connected."""

    def __init__(self, num_classes: int = 38, rnn_layer_sizes=(128, 128), dropout: float = 0.0):
        super().__init__()
        if len(set(rnn_layer_sizes)) != 1:
            raise ValueError("fused LSTMs need equal layer sizes")
        self.num_classes = num_classes
        self.rnn_layer_sizes = list(rnn_layer_sizes)
        self.rnn = nn.LSTM(
            num_classes,
            rnn_layer_sizes[0],
            num_layers=len(rnn_layer_sizes),
            batch_first=True,
            dropout=dropout if len(rnn_layer_sizes) > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.fully_connected = nn.Linear(rnn_layer_sizes[0], num_classes)
        _init_forget_bias(self.rnn)

    def forward(self, inputs_onehot, state=None):
        out, state = self.rnn(inputs_onehot, state)
        return self.fully_connected(self.dropout(out)), state


def drums_roll_input(labels):
    """DrumsConverter(roll_input=True) input from 512-way labels [B, T]: 9 drum bits + NOR bit."""
    bits = (labels[..., None] >> torch.arange(9, device=labels.device)) & 1
    nor = (labels == 0).long()[..., None]
    return torch.cat([bits, nor], dim=-1).float()


class HierMusicVAE(_VAE):
    """MusicVAE ``hier-mel_16bar``: ``HierarchicalLstmEncoder`` + ``HierarchicalLstmDecoder`` with one
    conductor level and ``disable_autoregression`` (as every published hierarchical config).

    * Encoder: level 0 is a stacked bidirectional LSTM over each segment of ``level_lengths[0]`` steps
      (``[h fw; h bw]`` of the last step of the top layer is the segment's embedding); level 1 the same
      over the ``level_lengths[1]`` segment embeddings; then ``mu`` and ``sigma = softplus``.
    * Conductor: ``initial_state`` tanh dense of z -> (c, h) per layer; ``segments`` steps of a stacked
      LSTM whose input is a single 0; the top layer's h at step k is segment k's embedding.
    * Core decoder (``CategoricalLstmDecoder``): per segment, its initial state from the embedding
      (``z_to_initial_state``), inputs [previous one-hot output; embedding], where the previous output
      runs across segment boundaries (zeros only before step 0). Without autoregression the segments
      do not depend on each other given their embeddings, so teacher forcing runs them as one batch.

    Both levels of the encoder use ``enc_rnn_size`` and conductor and core decoder ``dec_rnn_size``,
    as Magenta's ``HierarchicalLstmEncoder`` / ``HierarchicalLstmDecoder`` build them.
    """

    def __init__(
        self,
        input_depth: int = 90,
        output_depth: int = 90,
        enc_rnn_size=(128,),
        dec_rnn_size=(128, 128),
        z_size: int = 128,
        level_lengths=(16, 16),
    ):
        super().__init__()
        if len(set(dec_rnn_size)) != 1 or len(set(enc_rnn_size)) != 1:
            raise ValueError("fused LSTMs need equal layer sizes")
        self.input_depth, self.output_depth, self.z_size = input_depth, output_depth, z_size
        self.enc_rnn_size, self.dec_rnn_size = list(enc_rnn_size), list(dec_rnn_size)
        self.level_lengths = list(level_lengths)
        if len(self.level_lengths) != 2:
            raise ValueError("one conductor level: level_lengths is [segments, steps per segment]")
        he, hd, layers = enc_rnn_size[0], dec_rnn_size[0], len(dec_rnn_size)
        self.encoder_levels = nn.ModuleList(
            [
                nn.LSTM(input_depth, he, num_layers=len(enc_rnn_size), bidirectional=True, batch_first=True),
                nn.LSTM(2 * he, he, num_layers=len(enc_rnn_size), bidirectional=True, batch_first=True),
            ]
        )
        self.mu = nn.Linear(2 * he, z_size)
        self.sigma = nn.Linear(2 * he, z_size)
        self.conductor_initial_state = nn.Linear(z_size, 2 * hd * layers)
        self.conductor = nn.LSTM(1, hd, num_layers=layers, batch_first=True)
        self.z_to_initial_state = nn.Linear(hd, 2 * hd * layers)
        self.decoder = nn.LSTM(output_depth + hd, hd, num_layers=layers, batch_first=True)
        self.output_projection = nn.Linear(hd, output_depth)
        for lstm in (*self.encoder_levels, self.conductor, self.decoder):
            _init_forget_bias(lstm)
        with torch.no_grad():  # Magenta: random_normal_initializer(stddev=0.001), zero bias
            for dense in (self.conductor_initial_state, self.z_to_initial_state):
                dense.weight.normal_(0.0, 0.001)
                dense.bias.zero_()

    @property
    def steps(self) -> int:
        return self.level_lengths[0] * self.level_lengths[1]

    def encode(self, x):
        """x [B, T, input_depth] (T = the product of the level lengths) -> (mu, sigma) [B, z]."""
        b, t, _ = x.shape
        if t != self.steps:
            raise ValueError(f"the hierarchical encoder reads {self.steps} steps, not {t}")
        # level lengths are listed bottom first for the encoder: [steps per segment, segments]
        seg = self.level_lengths[1]
        for level in self.encoder_levels:
            splits = x.shape[1] // seg
            _, (h_n, _) = level(x.reshape(b * splits, seg, x.shape[-1]))
            x = torch.cat([h_n[-2], h_n[-1]], dim=-1).view(b, splits, -1)
            seg = self.level_lengths[0]
        last = x[:, 0]
        return self.mu(last), F.softplus(self.sigma(last))

    def embeddings(self, z):
        """The conductor's output [B, segments, dec units]: one embedding per segment."""
        layers, hd = len(self.dec_rnn_size), self.dec_rnn_size[0]
        state = _flat_initial_state(self.conductor_initial_state, z, layers, hd)
        zeros = z.new_zeros(z.shape[0], self.level_lengths[0], 1)
        out, _ = self.conductor(zeros, state)
        return out

    def decode_logits(self, z, targets_onehot):
        """Teacher-forced logits [B, T, output_depth]: step t sees the target of step t - 1."""
        b, t, d = targets_onehot.shape
        segments, seg = self.level_lengths
        if t != self.steps:
            raise ValueError(f"the hierarchical decoder writes {self.steps} steps, not {t}")
        layers, hd = len(self.dec_rnn_size), self.dec_rnn_size[0]
        emb = self.embeddings(z).reshape(b * segments, hd)
        prev = torch.cat([targets_onehot.new_zeros(b, 1, d), targets_onehot[:, :-1]], dim=1)
        prev = prev.reshape(b * segments, seg, d)
        inputs = torch.cat([prev, emb[:, None, :].expand(b * segments, seg, hd)], dim=-1)
        out, _ = self.decoder(inputs, _flat_initial_state(self.z_to_initial_state, emb, layers, hd))
        return self.output_projection(out).reshape(b, t, d)
