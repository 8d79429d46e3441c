"""The trainer's PyTorch models export into Magenta's exact layout, and our NumPy engines compute the
same numbers from those exports as torch does (teacher-forced logits, encoder mu/sigma)."""

from pathlib import Path

import numpy as np
import pytest
from embedded_support import magenta_var_list

torch = pytest.importorskip(
    "torch", reason="needs the 'train' extra (pip install -e '.[train]'; make test installs it)"
)
from magenta_api_training.export import export_model, lstm_layer_to_tf, model_variables  # noqa: E402
from magenta_api_training.models_torch import HierMusicVAE, MelodyRNN, MusicVAE, drums_roll_input  # noqa: E402

F = torch.nn.functional


def _randomize(model, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


@pytest.mark.parametrize(
    "config, build, kind",
    [
        ("cat-mel_2bar_small", lambda: MusicVAE(90, 90, [512], [256, 256], 256), "musicvae"),
        ("cat-drums_2bar_small", lambda: MusicVAE(10, 512, [512], [256, 256], 256), "musicvae"),
        ("basic_rnn", lambda: MelodyRNN(38, [128, 128]), "melody_rnn"),
    ],
)
def test_export_has_magentas_variable_names_and_shapes(tmp_path, config, build, kind):
    from safetensors.numpy import load_file

    path = export_model(build(), {"kind": kind, "name": config}, tmp_path / "w.safetensors", global_step=7)
    got = {k: v.shape for k, v in load_file(str(path)).items()}
    assert got == magenta_var_list(config)
    assert all(v.dtype == np.float32 for k, v in load_file(str(path)).items() if k != "global_step")


def test_lstm_conversion_reorders_gates_and_moves_the_forget_bias():
    units, inputs = 3, 2
    rng = np.random.default_rng(0)
    w_ih, w_hh = rng.normal(size=(4 * units, inputs)), rng.normal(size=(4 * units, units))
    b_ih, b_hh = rng.normal(size=4 * units), rng.normal(size=4 * units)
    kernel, bias = lstm_layer_to_tf(w_ih, w_hh, b_ih, b_hh)
    assert kernel.shape == (inputs + units, 4 * units) and bias.shape == (4 * units,)
    b = b_ih + b_hh
    # torch rows i, f, g, o -> TF columns i, j(=g), f, o; TF adds forget_bias 1.0 to f at run time.
    np.testing.assert_allclose(bias[units : 2 * units], b[2 * units : 3 * units], rtol=1e-6)
    np.testing.assert_allclose(bias[2 * units : 3 * units] + 1.0, b[units : 2 * units], rtol=1e-6)
    np.testing.assert_allclose(kernel[:inputs, 3 * units :], w_ih[3 * units :].T, rtol=1e-6)
    np.testing.assert_allclose(kernel[inputs:, :units], w_hh[:units].T, rtol=1e-6)


@pytest.mark.parametrize(
    "dims",
    [
        (90, 90, [32], [24, 24], 8),  # melody, two decoder layers
        (10, 512, [16, 16], [32], 6),  # drums (roll input), two encoder layers
        (90, 90, [256], [256], 64),  # the shipped melody model's dims
        (10, 512, [128], [128, 128], 32),  # the shipped drum model's dims
    ],
)
def test_torch_and_numpy_musicvae_agree(dims):
    from magenta_api_musicvae.engine import MusicVAEEngine

    ind, outd, enc, dec, z = dims
    model = _randomize(MusicVAE(ind, outd, enc, dec, z), scale=0.1)
    engine = MusicVAEEngine(model_variables(model, {"kind": "musicvae"}))
    labels = torch.randint(0, outd, (4, 32), generator=torch.Generator().manual_seed(1))
    onehot = F.one_hot(labels, outd).float()
    x = onehot if ind == outd else drums_roll_input(labels)
    with torch.no_grad():
        mu, sigma = model.encode(x)
        logits = model.decode_logits(mu, onehot)
    mu_np, sigma_np = engine.encode(x.numpy())
    logits_np = engine.decode_logits(mu.numpy(), labels.numpy())
    assert np.abs(mu.numpy() - mu_np).max() < 1e-4
    assert np.abs(sigma.numpy() - sigma_np).max() < 1e-4
    assert np.abs(logits.numpy() - logits_np).max() < 1e-4
    assert np.abs(logits.numpy()).max() > 0.05  # not a trivially zero comparison


@pytest.mark.parametrize("layers", [[16, 16], [128, 128], [20]])
def test_torch_and_numpy_melody_rnn_agree(layers):
    from magenta_api_melody_rnn.engine import EventRnn

    model = _randomize(MelodyRNN(38, layers), scale=0.2)
    engine = EventRnn.from_variables(model_variables(model, {"kind": "melody_rnn"}))
    x = F.one_hot(torch.randint(0, 38, (3, 40), generator=torch.Generator().manual_seed(2)), 38).float()
    with torch.no_grad():
        logits, _ = model(x)
    logits_np, _ = engine.run(x.numpy())
    assert np.abs(logits.numpy() - logits_np).max() < 1e-4
    assert np.abs(logits.numpy()).max() > 0.05


def test_roll_input_matches_magentas_drums_converter():
    """DrumsConverter(roll_input=True): 9 class bits then a NOR bit that is set on silent steps."""
    labels = torch.tensor([[0, 1, 2**8, 3, 511]])
    roll = drums_roll_input(labels)[0].numpy()
    assert roll.shape == (5, 10)
    assert roll[0].tolist() == [0] * 9 + [1]
    assert roll[1].tolist() == [1] + [0] * 9
    assert roll[2].tolist() == [0] * 8 + [1, 0]
    assert roll[3].tolist() == [1, 1] + [0] * 8
    assert roll[4].tolist() == [1] * 9 + [0]


HIER_FIXTURE = Path(__file__).parent / "fixtures" / "musicvae" / "hier_mel.npz"


def test_hier_export_has_the_variable_names_magenta_writes_for_hier_mel_16bar(tmp_path):
    """The names of the checkpoint magenta 2.1.4's own code saved for hier-mel_16bar (the parity
    fixture of reference/musicvae_hier_reference.py), and the shapes those graphs give these dims."""
    from safetensors.numpy import load_file

    magenta = {k[len("var/") :] for k in np.load(HIER_FIXTURE).files if k.startswith("var/")}
    path = export_model(HierMusicVAE(90, 90, [16], [20, 20], 12), {"kind": "hier_musicvae"}, tmp_path / "w.st", 5)
    got = load_file(str(path))
    assert set(got) == magenta
    assert int(got["global_step"]) == 5
    enc0 = "encoder/hierarchical_level_0/cell_0/bidirectional_rnn/fw/multi_rnn_cell/cell_0/lstm_cell/kernel"
    enc1 = enc0.replace("level_0", "level_1")
    assert got[enc0].shape == (90 + 16, 64) and got[enc1].shape == (32 + 16, 64)
    assert got["decoder/hierarchical_level_0/cell_0/lstm_cell/kernel"].shape == (1 + 20, 80)
    assert got["decoder/hierarchical_level_0/initial_state/kernel"].shape == (12, 80)
    assert got["core_decoder/decoder/multi_rnn_cell/cell_0/lstm_cell/kernel"].shape == (90 + 20 + 20, 80)
    assert got["core_decoder/decoder/z_to_initial_state/kernel"].shape == (20, 80)


@pytest.mark.parametrize(
    "enc, dec, z",
    [
        ([16], [20, 20], 12),  # the fixture's dims (decoder layers equal: torch's fused LSTM)
        ([8, 8], [12], 6),  # two encoder layers per level, one decoder layer
    ],
)
def test_torch_and_numpy_hierarchical_musicvae_agree(enc, dec, z):
    """Same weights: the NumPy engine the service runs (conductor, hierarchical encoder) gives
    torch's mu, sigma and teacher-forced logits, across bar boundaries too; and the weights
    round-trip into a fresh twin."""
    from magenta_api_musicvae.hierarchy import VAEModel
    from magenta_api_training.export import load_variables

    model = _randomize(HierMusicVAE(90, 90, enc, dec, z), scale=0.15, seed=4)
    variables = model_variables(model, {"kind": "hier_musicvae"})
    engine = VAEModel(variables, level_lengths=[16, 16])
    labels = torch.randint(0, 90, (3, 256), generator=torch.Generator().manual_seed(5))
    onehot = F.one_hot(labels, 90).float()
    with torch.no_grad():
        mu, sigma = model.encode(onehot)
        logits = model.decode_logits(mu, onehot)
    mu_np, sigma_np = engine.encode(onehot.numpy())
    logits_np = engine.decode_logits(mu.numpy(), onehot.numpy())
    assert np.abs(mu.numpy() - mu_np).max() < 1e-4
    assert np.abs(sigma.numpy() - sigma_np).max() < 1e-4
    assert np.abs(logits.numpy() - logits_np).max() < 1e-4
    assert np.abs(logits.numpy()).max() > 0.05
    twin = HierMusicVAE(90, 90, enc, dec, z).eval()
    load_variables(twin, variables)
    with torch.no_grad():
        np.testing.assert_allclose(twin.decode_logits(mu, onehot).numpy(), logits.numpy(), atol=1e-6)


def test_hierarchical_twin_refuses_other_lengths():
    model = HierMusicVAE(90, 90, [8], [8], 4)
    with pytest.raises(ValueError, match="256 steps"):
        model.encode(torch.zeros(1, 32, 90))
    with pytest.raises(ValueError, match="256 steps"):
        model.decode_logits(torch.zeros(1, 4), torch.zeros(1, 32, 90))
    with pytest.raises(ValueError, match="level_lengths"):
        HierMusicVAE(level_lengths=[4, 4, 16])


@pytest.mark.parametrize("name", ["mel_2bar", "drums_2bar", "basic_rnn", "mel_16bar"])
def test_shipped_weights_give_the_same_logits_in_torch_and_in_the_engine(name):
    """The shipped file round-trips into the torch twin, and torch and the NumPy engine agree on it."""
    import magenta_api_embedded as emb
    from magenta_api.store.readers.native import read_native
    from magenta_api_training.export import load_variables
    from magenta_api_training.train import build_config, build_model

    variables, _ = read_native(emb.HERE / f"embedded-{name}.safetensors")
    cfg = build_config(name)
    model = build_model(cfg).eval()
    load_variables(model, variables)
    again = model_variables(model, cfg)
    for k, v in again.items():
        np.testing.assert_allclose(v, variables[k], atol=1e-6, err_msg=k)
    gen = torch.Generator().manual_seed(3)
    if cfg["kind"] == "hier_musicvae":
        from magenta_api_musicvae.hierarchy import VAEModel

        onehot = F.one_hot(torch.randint(0, 90, (2, 256), generator=gen), 90).float()
        with torch.no_grad():
            mu, sigma = model.encode(onehot)
            logits = model.decode_logits(mu, onehot)
        engine = VAEModel(variables, level_lengths=cfg["arch"]["level_lengths"])
        mu_np, sigma_np = engine.encode(onehot.numpy())
        assert np.abs(mu.numpy() - mu_np).max() < 1e-4 and np.abs(sigma.numpy() - sigma_np).max() < 1e-4
        logits_np = engine.decode_logits(mu.numpy(), onehot.numpy())
    elif cfg["kind"] == "musicvae":
        from magenta_api_musicvae.engine import MusicVAEEngine

        depth = cfg["arch"]["output_depth"]
        labels = torch.randint(0, depth, (4, 32), generator=gen)
        onehot = F.one_hot(labels, depth).float()
        x = onehot if depth == 90 else drums_roll_input(labels)
        with torch.no_grad():
            mu, sigma = model.encode(x)
            logits = model.decode_logits(mu, onehot)
        engine = MusicVAEEngine(variables)
        mu_np, sigma_np = engine.encode(x.numpy())
        assert np.abs(mu.numpy() - mu_np).max() < 1e-4 and np.abs(sigma.numpy() - sigma_np).max() < 1e-4
        logits_np = engine.decode_logits(mu.numpy(), labels.numpy())
    else:
        from magenta_api_melody_rnn.engine import EventRnn

        x = F.one_hot(torch.randint(0, 38, (4, 64), generator=gen), 38).float()
        with torch.no_grad():
            logits, _ = model(x)
        logits_np, _ = EventRnn.from_variables(variables).run(x.numpy())
    assert np.abs(logits.numpy() - logits_np).max() < 1e-4
