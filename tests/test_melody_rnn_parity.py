"""NumPy MelodyRNN / DrumsRNN against Magenta 2.1.4's own graph and generator (committed fixtures), on the
reference path and the fast paths, chosen through the engine's public ``fast=`` argument."""

import numpy as np
import pytest
from melody_rnn_support import CONFIGS, FIX, arrays, config_of, from_events, reference, to_events, weights

from magenta_api import nn
from magenta_api.store.readers.mag import read_mag
from magenta_api_melody_rnn.beam import generate
from magenta_api_melody_rnn.encoders import InputEncoder, make_config, make_encoder
from magenta_api_melody_rnn.engine import REFERENCE, EventRnn, FastPaths

CASES = [(name, primer) for name in CONFIGS for primer in reference(name)["primers"]]
PATHS = pytest.mark.parametrize("fast", [FastPaths(), REFERENCE], ids=["fast", "reference"])


def _setup(name, fast=True):
    ref = reference(name)
    model = EventRnn.from_variables(weights(name), ref["attn_length"], fast=fast)
    encoder = InputEncoder(make_encoder(make_config(config_of(name))))
    return ref, model, encoder


@pytest.mark.parametrize("name", CONFIGS)
def test_structure_from_weights(name):
    ref, model, encoder = _setup(name)
    assert model.layer_sizes == ref["layers"]
    assert (model.input_size, model.num_classes) == (encoder.input_size, encoder.num_classes)
    assert (model.attention is not None) == bool(ref["attn_length"])
    if model.attention is not None:
        assert model.attention.length == ref["attn_length"]
        assert model.wrapped == (len(ref["layers"]) if name.endswith("_stacked") else 1)


@pytest.mark.parametrize("name", CONFIGS)
def test_mag_bundle_reads_to_the_dumped_weights(name):
    variables, meta = read_mag(FIX / name / f"{name}.mag")
    dumped = weights(name)
    assert meta["generator_id"] == reference(name)["generator_id"]
    model_vars = {k for k in variables if not k.startswith("global_step")}
    assert model_vars == set(dumped)
    for k in dumped:
        np.testing.assert_array_equal(np.asarray(variables[k]), dumped[k])


@PATHS
@pytest.mark.parametrize("name,primer", CASES)
def test_inputs_and_logits_match_magenta(name, primer, fast):
    ref, model, encoder = _setup(name, fast)
    assert model.path_for(1) == ("single_row" if fast.single_row else "batched")
    entry = ref["primers"][primer]
    events = to_events(name, entry["prepared"])
    inputs = encoder.full(events)
    np.testing.assert_array_equal(inputs, arrays(name)[f"{primer}/inputs"])
    logits, _ = model.run(inputs[None])
    expected = arrays(name)[f"{primer}/logits"]
    assert logits[0].shape == expected.shape
    assert np.abs(logits[0] - expected).max() < 1e-4


@PATHS
@pytest.mark.parametrize("name,primer", CASES)
def test_greedy_continuation_identical(name, primer, fast):
    ref, model, encoder = _setup(name, fast)
    entry = ref["primers"][primer]
    out = generate(model, encoder, to_events(name, entry["prepared"]), ref["num_steps"], 1, 0.0, None)[0]
    assert from_events(name, out.events, entry["transpose"]) == entry["greedy"]


@PATHS
@pytest.mark.parametrize("name,primer", CASES)
def test_seeded_sampling_replays_magentas_draws(name, primer, fast):
    """magenta samples with np.random.choice; the same uniform stream gives the same events."""
    ref, model, encoder = _setup(name, fast)
    entry = ref["primers"][primer]
    for sample in entry["samples"]:
        rng = np.random.RandomState(sample["seed"])
        out = generate(
            model, encoder, to_events(name, entry["prepared"]), ref["num_steps"], 1, sample["temperature"], rng
        )[0]
        assert from_events(name, out.events, entry["transpose"]) == sample["events"]


@PATHS
@pytest.mark.parametrize("name,primer", CASES)
def test_beam_search_matches_magenta(name, primer, fast):
    ref, model, encoder = _setup(name, fast)
    entry = ref["primers"][primer]
    for b in entry["beams"]:
        rng = np.random.RandomState(b["seed"])
        out = generate(
            model,
            encoder,
            to_events(name, entry["prepared"]),
            ref["num_steps"],
            1,
            b["temperature"],
            rng,
            b["beam_size"],
            b["branch_factor"],
            b["steps_per_iteration"],
        )[0]
        assert from_events(name, out.events, entry["transpose"]) == b["events"]
        assert out.score == pytest.approx(b["score"], abs=1e-3)


def test_missing_variables_are_the_kits_weights_error():
    variables = {k: v for k, v in weights("basic_rnn").items() if k != "fully_connected/biases"}
    with pytest.raises(nn.WeightsError, match="fully_connected/bias"):
        EventRnn.from_variables(variables)
    with pytest.raises(nn.WeightsError, match="no rnn/multi_rnn_cell/cell_0"):
        EventRnn.from_variables({"fully_connected/weights": np.zeros((2, 2))})


def test_legacy_variable_names_give_the_same_logits():
    """TF 1.0 checkpoints say weights/biases; Magenta.js says attention_output_projection."""
    name = "attention_rnn_stacked"
    ref, model, encoder = _setup(name)
    renamed = {}
    for k, v in weights(name).items():
        if not k.startswith("fully_connected"):
            k = k.replace("/kernel", "/weights").replace("/bias", "/biases")
        renamed[k.replace("attn_output_projection", "attention_output_projection")] = v
    legacy = EventRnn.from_variables(renamed, ref["attn_length"])
    x = encoder.full(to_events(name, ref["primers"]["twinkle"]["prepared"]))[None]
    np.testing.assert_array_equal(legacy.run(x)[0], model.run(x)[0])


def test_tensorflow_0x_variable_names_give_the_same_logits():
    """2016-era checkpoints: CamelCase scopes, Linear/Matrix, AttnW_0 (as TF 0.x's rnn_cell named them)."""
    name = "attention_rnn_stacked"
    ref, model, encoder = _setup(name)
    old = {}
    for k, v in weights(name).items():
        k = (
            k.replace("rnn/", "RNN/", 1)
            .replace("attention_cell_wrapper/", "AttentionCellWrapper/")
            .replace("multi_rnn_cell/", "MultiRNNCell/")
            .replace("cell_0/", "Cell0/")
            .replace("cell_1/", "Cell1/")
            .replace("basic_lstm_cell/", "BasicLSTMCell/")
            .replace("attn_output_projection/", "AttnOutputProjection/")
            .replace("attention/attn_w", "AttnW_0")
            .replace("attention/attn_v", "AttnV_0")
            .replace("attention/", "Attention_0/")
        )
        if not k.startswith("fully_connected"):
            k = k.replace("/kernel", "/Linear/Matrix").replace("/bias", "/Linear/Bias")
        old[k] = v
    assert "RNN/AttentionCellWrapper/MultiRNNCell/Cell0/BasicLSTMCell/Linear/Matrix" in old
    assert "RNN/AttentionCellWrapper/AttnW_0" in old
    legacy = EventRnn.from_variables(old, ref["attn_length"])
    x = encoder.full(to_events(name, ref["primers"]["offs"]["prepared"]))[None]
    np.testing.assert_array_equal(legacy.run(x)[0], model.run(x)[0])


ATTENTION_CASES = [(name, primer) for name, primer in CASES if reference(name)["attn_length"]]


@pytest.mark.parametrize("composed", [True, False])
@pytest.mark.parametrize("name,primer", ATTENTION_CASES)
def test_attention_input_projection_composed_or_not_matches_magenta(name, primer, composed):
    """The fixtures' tiny layers get the wrapper's input projection folded into layer 0's kernel;
    published attention_rnn sizes do not: both routes must match magenta, on the single-row path too."""
    ref, model, encoder = _setup(name, FastPaths(composed_input=composed))
    assert (model.composed is not None) == composed
    assert model.input_map()[0] == ("composed" if composed else "wrapper")
    entry = ref["primers"][primer]
    events = to_events(name, entry["prepared"])
    logits, _ = model.run(encoder.full(events)[None])
    assert np.abs(logits[0] - arrays(name)[f"{primer}/logits"]).max() < 1e-4
    out = generate(model, encoder, events, ref["num_steps"], 1, 0.0, None)[0]
    assert from_events(name, out.events, entry["transpose"]) == entry["greedy"]
    for sample in entry["samples"]:
        out = generate(
            model, encoder, events, ref["num_steps"], 1, sample["temperature"], np.random.RandomState(sample["seed"])
        )[0]
        assert from_events(name, out.events, entry["transpose"]) == sample["events"]


LOOKBACK_CASES = [
    (name, primer, composed)
    for name, primer in CASES
    if config_of(name) in ("lookback_rnn", "drum_kit_rnn")
    for composed in (True, False)
]


@pytest.mark.parametrize("name,primer,composed", LOOKBACK_CASES)
def test_lookback_lookups_equal_the_dense_input_at_every_step(name, primer, composed):
    """n=1 generation feeds lookback inputs as row lookups plus a counter table (SingleRow.step_hots);
    the logits must equal the dense input vector's, through the batched step too, with and without
    the attention input composed into layer 0."""
    ref, model, encoder = _setup(name, FastPaths(composed_input=composed))
    assert encoder.lookback
    events = to_events(name, ref["primers"][primer]["prepared"]) * 3  # long enough to wrap the counter
    offset, bits = encoder.counter_layout
    table = model.counter_rows(offset, bits)
    dense = encoder.full(events)
    by_hots, by_vector = model.single(model.zero_state(1)), model.single(model.zero_state(1))
    state = model.zero_state(1)
    for at in range(len(events)):
        row = np.zeros(encoder.input_size, np.float32)
        row[encoder.lookback_hots(events, at)] = 1.0
        row[offset : offset + bits] = dense[at, offset : offset + bits]
        np.testing.assert_array_equal(row, dense[at])
        a = by_hots.step_hots(encoder.lookback_hots(events, at), table, (at + 1) % (1 << bits))
        b = by_vector.step_input(dense[at])
        c, state = model.step(dense[at][None], state)
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a, c[0], atol=1e-5)
    for x, y in zip(by_hots.state(), state):
        np.testing.assert_allclose(x, y, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in CONFIGS if reference(n)["attn_length"]])
def test_single_sequence_softmax_with_and_without_the_max_agree(name):
    """The n=1 attention softmax skips subtracting the maximum only when the scores are provably
    bounded; both routes give magenta's logits."""
    ref = reference(name)
    entry = next(iter(ref["primers"].values()))
    expected = arrays(name)[f"{next(iter(ref['primers']))}/logits"]
    results = []
    for bounded in (True, False):
        _, model, encoder = _setup(name, FastPaths(bounded_softmax=bounded))
        assert model.attention.scores_bounded and model.bounded_softmax == bounded
        assert model.path_for(1) == "single_row"
        logits, _ = model.run(encoder.full(to_events(name, entry["prepared"]))[None])
        assert np.abs(logits[0] - expected).max() < 1e-4
        results.append(logits)
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)
