"""The events RNN's n=1 loop on class indices against the event loop it replaces, on the committed parity
weights: :class:`~magenta_api_melody_rnn.beam.RowSampler` draws as ``beam.sample``; ``beam.sample_indices``
(``FastPaths.index_events``) gives ``beam.sample_single``'s events and score, primer injection included;
the stepper of a stack without attention gives the layer-by-layer ``RowLSTM`` numbers bit for bit; and
PolyphonyRNN's injection table answers as its ``inject`` hook at every step."""

import json
from pathlib import Path

import numpy as np
import pytest
from melody_rnn_support import weights as melody_weights
from performance_rnn_support import to_events as performance_events
from performance_rnn_support import weights as performance_weights

from magenta_api.nn import RowLSTM, step_rows
from magenta_api_melody_rnn.beam import RowSampler, cdf_index, generate, primer_pass, sample, tempered_softmax
from magenta_api_melody_rnn.encoders import InputEncoder, make_config, make_encoder
from magenta_api_melody_rnn.engine import EventRnn, FastPaths
from magenta_api_performance_rnn.configs import CONFIGS as PERF_CONFIGS
from magenta_api_performance_rnn.encoding import make_encoder as performance_encoder
from magenta_api_polyphony_rnn.events import NAMES, STEP_END, PolyphonicEvent, PolyphonyOneHotEncoding, PrimerInjection
from magenta_api_polyphony_rnn.family import InjectingEncoder

POLY = Path(__file__).parent / "fixtures" / "polyphony_rnn"
TYPES = {v: k for k, v in NAMES.items()}
EVENT_LOOP = FastPaths(index_events=False)


def poly_weights():
    return dict(np.load(POLY / "weights.npz"))


def poly_primer():
    ref = json.loads((POLY / "reference.json").read_text())
    pairs = ref["cases"]["two_voices/plain"]["primer"]
    return [PolyphonicEvent(TYPES[p[0]], p[1] if len(p) > 1 else None) for p in pairs]


class FixedDraws:
    """A source of chosen uniform draws (the boundary cases a seeded generator almost never hits)."""

    def __init__(self, values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


def _logits(rng, scale):
    return (rng.standard_normal(259) * scale).astype(np.float32)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 1.7, 0.0])
def test_row_sampler_draws_and_scores_as_sample(temperature):
    source = np.random.default_rng(3)
    a, b = np.random.RandomState(9), np.random.RandomState(9)
    sampler = RowSampler(259, temperature, b)
    for k in range(3000):
        logits = _logits(source, [0.01, 1.0, 5.0, 60.0][k % 4])  # flat to one-hot (zero probabilities)
        if k % 7 == 0:
            logits[source.integers(259, size=5)] = logits.max()  # ties at the maximum
        i, p = sample(logits, temperature, a)
        j, q = sampler.sample(logits)
        assert (i, p) == (j, q) and type(i) is type(j) and q.dtype == np.float32
        np.testing.assert_array_equal(sampler.softmax(logits), tempered_softmax(logits, temperature or 1.0))


def test_row_sampler_on_the_cdf_boundaries():
    """Draws equal to a normalised CDF value, and one float64 step either side of it, pick the class
    numpy.random.choice picks (searchsorted side='right' on cdf / cdf[-1])."""
    logits = _logits(np.random.default_rng(5), 2.0)
    logits[:40] = -200.0  # zero probabilities: flat stretches of the CDF
    cdf = tempered_softmax(logits, 1.0).cumsum(dtype=np.float64)
    cdf /= cdf[-1]
    draws = []
    for k in list(range(0, 259, 7)) + [39, 40, 257, 258]:
        draws += [cdf[k], np.nextafter(cdf[k], 0.0), np.nextafter(cdf[k], 2.0)]
    draws = [float(u) for u in draws if u < 1.0] + [0.0]
    sampler = RowSampler(259, 1.0, FixedDraws(draws))
    reference = FixedDraws(draws)
    for _ in range(len(draws)):
        assert sampler.sample(logits) == sample(logits, 1.0, reference)


def log_to(log: list):
    return lambda output, events: log.append(list(events))


def _both(variables, encoder, primer, steps, temperature, seed, attn_length=0, on_step=False):
    """(index loop, event loop) outputs of one n=1 generation, and what on_step heard on each."""
    outs, heard = [], []
    for fast in (FastPaths(), EVENT_LOOP):
        model = EventRnn.from_variables(variables, attn_length, fast=fast)
        assert model.path_for(1, encoder.one_hot) == ("indices" if fast.index_events else "single_row")
        log: list = []
        listener = log_to(log) if on_step else None
        rng = np.random.RandomState(seed) if temperature else None
        outs.append(generate(model, encoder, primer, steps, 1, temperature, rng, on_step=listener)[0])
        heard.append(log)
    return outs, heard


@pytest.mark.parametrize("start_step", [0, 2])
@pytest.mark.parametrize("temperature,seed", [(1.0, 1), (1.0, 2), (0.7, 3), (0.0, 0)])
def test_polyphony_index_loop_matches_the_event_loop_with_injection(start_step, temperature, seed):
    primer = poly_primer()
    melody = type("Melody", (), {"events": primer})()
    for start in (primer[:1], primer[:7]):  # from START alone, and from inside the primer
        encoder = InjectingEncoder(melody, start_step)
        (fast, slow), (heard_fast, heard_slow) = _both(poly_weights(), encoder, start, 160, temperature, seed, 0, True)
        assert fast.events == slow.events and fast.score == slow.score
        assert heard_fast == heard_slow and len(heard_fast) == 160 - len(start)
        assert len(fast.events) > 160  # the primer's notes went in


@pytest.mark.parametrize("temperature,seed", [(1.0, 4), (1.3, 5), (0.0, 0)])
def test_melody_and_performance_index_loops_match_the_event_loop(temperature, seed):
    encoder = InputEncoder(make_encoder(make_config("basic_rnn")))
    (fast, slow), _ = _both(melody_weights("basic_rnn"), encoder, [60, -2, 62], 80, temperature, seed)
    assert fast.events == slow.events and fast.score == slow.score
    config = PERF_CONFIGS["performance_with_dynamics"]
    encoder = performance_encoder(config, None)
    primer = performance_events([["velocity", 10], ["note_on", 60], ["time_shift", 20]])
    (fast, slow), _ = _both(performance_weights("performance_with_dynamics"), encoder, primer, 120, temperature, seed)
    assert fast.events == slow.events and fast.score == slow.score


def test_plain_stack_step_is_the_layer_by_layer_step():
    """SingleRow of a stack without attention runs its layers in one function: the numbers of stepping
    each RowLSTM in turn, bit for bit, and the batched reference step's up to rounding."""
    model = EventRnn.from_variables(poly_weights())
    assert model.attention is None and len(model.layers) > 1
    runner = model.single(model.zero_state(1))
    state = model.zero_state(1)
    table = model.one_hot_rows()
    rows = [
        RowLSTM(lay.kernel if k else lay.w_h, lay.units, np.zeros(lay.units), np.zeros(lay.units))
        for k, lay in enumerate(model.layers)
    ]
    for i in np.random.default_rng(0).integers(model.num_classes, size=50):
        got = runner.step_index(int(i)).copy()
        rows[0].step(table[i])
        step_rows(rows, 1, len(rows))
        np.testing.assert_array_equal(got, np.dot(rows[-1].h1, model.fc_wb))
        logits, state = model.step(None, state, index=np.array([i]))
        np.testing.assert_allclose(got, logits[0], atol=1e-5)
    for ours, ref in zip(runner.state(), state):
        np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("start_step", [0, 1, 3, 40])
def test_primer_injection_table_answers_as_the_inject_hook(start_step):
    primer = poly_primer()
    encoder = InjectingEncoder(type("Melody", (), {"events": primer})(), start_step)
    index = PolyphonyOneHotEncoding().encode_event
    table = PrimerInjection(primer, start_step, index)
    rng = np.random.default_rng(start_step)
    events = [PolyphonicEvent(0)]  # START
    events += encoder.inject(list(events))
    after = encoder.index_injector(events)
    for _ in range(300):
        i = int(rng.choice([2, 3 + 60, 3 + 128 + 64, 1]))  # STEP_END, a new note, a held note, END
        events.append(encoder.to_event(i, events))
        expected = encoder.inject(list(events))
        got = after(i)
        assert [e for _, e in got] == expected and [k for k, _ in got] == [index(e) for e in expected]
        events += expected
    assert sum(e.event_type == STEP_END for e in events) > 40 and table.step_end == 2


def test_single_row_index_step_with_attention_is_the_batched_step():
    """step_index on a model with attention (no plain stack) steps the attention path on the one-hot
    row: the batched reference step's logits, every step."""
    model = EventRnn.from_variables(melody_weights("attention_rnn"), 40)
    assert model.attention is not None
    runner, state = model.single(model.zero_state(1)), model.zero_state(1)
    for i in np.random.default_rng(1).integers(model.input_size, size=45):
        got = runner.step_index(int(i))
        logits, state = model.step(None, state, index=np.array([i]))
        np.testing.assert_allclose(got, logits[0], atol=1e-5)


def test_cdf_index_is_searchsorted_on_the_normalised_cdf():
    """The search on the raw CDF, where u * total rounds to either side of a class's boundary: the
    draws just past fl(u * total), and the draws at and just below a normalised value."""
    rng = np.random.default_rng(7)
    moved = 0
    for _ in range(4000):
        total, u = float(rng.uniform(0.3, 3.0)), float(rng.uniform(0.0, 1.0))
        edge = float(np.nextafter(u * total, np.inf))  # the first value searchsorted(u * total) leaves out
        cdf = np.sort(np.concatenate([rng.uniform(0, total, 5), [edge if edge < total else total / 2]]))
        cdf = np.append(cdf, total)
        for v in (u, float(np.nextafter(cdf[3] / total, 0.0)), float(cdf[3] / total)):
            expected = min(int(np.searchsorted(cdf / cdf[-1], v, side="right")), len(cdf) - 1)
            assert cdf_index(cdf, v) == expected
            moved += expected != int(cdf.searchsorted(v * total, "right"))
    assert moved > 100  # the correction was needed, both ways


def test_primer_pass_on_class_indices_is_the_vector_pass():
    """A one-hot primer read by class index (index_events) gives the logits and state of reading its
    input vectors (the dense product for narrow inputs, the nonzero rows for wide ones), bit for bit."""
    cases = [
        (poly_weights(), InjectingEncoder(None, 0), poly_primer() * 2),
        (melody_weights("basic_rnn"), InputEncoder(make_encoder(make_config("basic_rnn"))), [60, -2, 62, -1, 64] * 8),
    ]
    for variables, encoder, primer in cases:
        by_index = primer_pass(EventRnn.from_variables(variables), encoder, primer)
        by_vector = primer_pass(EventRnn.from_variables(variables, fast=EVENT_LOOP), encoder, primer)
        np.testing.assert_array_equal(by_index[0], by_vector[0])
        for a, b in zip(by_index[1], by_vector[1]):
            np.testing.assert_array_equal(a, b)
