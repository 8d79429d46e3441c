"""Dynamic batching of the melody_rnn plugin's families (MelodyRNN, DrumsRNN, ImprovRNN): concurrent
one-output requests of one length sample together (``rows.generate_rows``), and each gets exactly the bytes
it gets alone.

The family tests run every config's fixture weights (made by reference/melody_rnn_reference.py) with
primers of different lengths, both modes and several temperatures in one batch; the HTTP test runs the
embedded basic_rnn model behind a real threaded HTTP server on 127.0.0.1 with real concurrent clients,
batching on and off."""

import base64
from pathlib import Path

import numpy as np
import pytest
from batching_support import Servers, assert_same_answers, embedded_model, post_one_by_one, post_together
from melody_rnn_support import CONFIGS, FIX, family, reference, request
from reference_fixtures import fixture_readers

from magenta_api import metrics
from magenta_api.checkpoint import Checkpoint
from magenta_api.errors import Unprocessable
from magenta_api.family import ModelSpec
from magenta_api_melody_rnn import beam, rows

LENGTH = 48


def mixed_requests(name):
    """One batch's worth: every reference primer, no primer, a MIDI primer; continue and sample; three
    temperatures (two rows share one, so a draw for several rows at once is covered)."""
    primers = [entry["primer"] for entry in reference(name)["primers"].values()]
    midi = base64.b64encode((FIX / "midi" / "melody.mid").read_bytes()).decode()
    forms = [(p, "continue") for p in primers] + [(None, "sample"), (None, "continue")]
    if not name.startswith("drum"):
        forms.append((midi, "continue"))
    forms = (forms * 2)[: max(len(forms), rows.MIN_ROWS + 1)]  # enough rows to sample together
    temps = [1.0, 0.5, 1.0, 1.5, 0.9, 1.0]
    return [
        request(primer, mode=mode, length=LENGTH, seed=40 + k, temperature=temps[k % len(temps)])
        for k, (primer, mode) in enumerate(forms)
    ]


def same(a, b) -> bool:
    return [s.SerializeToString() for s in a.sequences] == [s.SerializeToString() for s in b.sequences] and (
        a.extra == b.extra
    )


@pytest.mark.parametrize("name", CONFIGS)
def test_a_batch_gives_every_request_the_bytes_it_gets_alone(name):
    fam = family(name)
    together = fam.generate_batch(mixed_requests(name))
    alone = [fam.generate(r) for r in mixed_requests(name)]
    assert len(together) == len(alone) > rows.MIN_ROWS
    for k, (a, b) in enumerate(zip(alone, together)):
        assert same(a, b), f"request {k}: batched {b.extra.get('log_likelihood')} alone {a.extra.get('log_likelihood')}"
    # the requests drew different numbers: a batch that mixed up the rows' streams would not pass above
    assert len({repr(a.extra["events"][0]) for a in alone}) == len(alone)


IMPROV = ["basic_improv", "attention_improv", "chord_pitches_improv"]
_, _, improv_weights = fixture_readers(Path(__file__).parent / "fixtures" / "improv_rnn")


def improv_family(name):
    """ImprovRNN on the weights of reference/improv_rnn_reference.py."""
    from magenta_api_melody_rnn.improv import ImprovRnnFamily

    spec = ModelSpec(id=name, family="improv_rnn", hparams={"config": name})
    return ImprovRnnFamily(spec, Checkpoint(improv_weights(name), "native", {}))


PROGRESSIONS = [
    ["C", "G", "Am", "F"],
    ["F#", "C#", "D#m", "B"],
    [{"symbol": "Dm7", "step": 0}, {"symbol": "G7", "step": 8}],
]


@pytest.mark.parametrize("name", IMPROV)
def test_improv_rows_each_over_their_own_chords_give_the_bytes_they_get_alone(name):
    fam = improv_family(name)

    def batch():
        primers = [None, [60, -2, 62, -2], [67, -2, -2, 64, -1], [72]]
        return [
            request(
                primers[k % 4], length=LENGTH, seed=70 + k, temperature=[1.0, 0.7][k % 2], chords=PROGRESSIONS[k % 3]
            )
            for k in range(rows.MIN_ROWS + 2)
        ]

    assert len({fam.batch_key(r) for r in batch()}) == 1
    together = fam.generate_batch(batch())
    alone = [fam.generate(r) for r in batch()]
    for k, (a, b) in enumerate(zip(alone, together)):
        assert same(a, b), k
    assert len({repr(a.extra["events"][0]) for a in alone}) == len(alone)
    bad = request(None, length=LENGTH, chords=["C", "H7"])  # no such chord: its own 422, the others go on
    results = fam.generate_batch([bad] + batch()[1:])
    assert isinstance(results[0], Unprocessable) and all(same(a, b) for a, b in zip(alone[1:], results[1:]))


@pytest.mark.parametrize("name", ["basic_rnn", "attention_rnn"])
def test_rows_of_different_lengths_leave_the_batch_at_their_own_end(name):
    """generate_rows itself takes rows of any lengths (the family keys batches by length, so that a short
    request does not wait for a long one); each ends where it ends alone."""
    fam = family(name)
    primer = reference(name)["primers"]["twinkle"]["primer"]
    lengths = [20, 64, 33, 17]
    jobs = [rows.Row(fam.encoder, list(primer), n, 1.0, np.random.default_rng(n)) for n in lengths]
    got = rows.generate_rows(fam.model, jobs)
    for n, g in zip(lengths, got):
        want = beam.generate(fam.model, fam.encoder, list(primer), n, 1, 1.0, np.random.default_rng(n))[0]
        assert len(g.events) == n and g.events == want.events and g.score == want.score


def test_a_primer_as_long_as_its_length_fails_alone_and_the_others_go_on():
    fam = family("basic_rnn")
    primer = reference("basic_rnn")["primers"]["twinkle"]["primer"]
    jobs = [rows.Row(fam.encoder, list(primer), n, 1.0, np.random.default_rng(0)) for n in (len(primer), 30)]
    short, fine = rows.generate_rows(fam.model, jobs)
    assert isinstance(short, ValueError) and len(fine.events) == 30
    for size in (2, rows.MIN_ROWS):  # one after another, and sampled together
        bad = request([60, 200], mode="continue", length=LENGTH)  # 200 is no MIDI pitch: its own 422
        results = fam.generate_batch([bad] + [request(primer, length=LENGTH, seed=s) for s in range(size - 1)])
        assert isinstance(results[0], Unprocessable)
        for s, result in enumerate(results[1:]):
            assert same(result, fam.generate(request(primer, length=LENGTH, seed=s)))


def test_batch_keys_group_one_output_sampling_by_length_and_leave_the_rest_alone():
    fam = family("lookback_rnn")
    assert fam.batch_key(request(length=32)) == fam.batch_key(request(length=32, temperature=0.3, seed=9))
    assert fam.batch_key(request(length=32)) != fam.batch_key(request(length=33))
    assert fam.batch_key(request(length=32, num_outputs=3)) is None  # already a batch of its own
    assert fam.batch_key(request(length=32, beam_size=2)) is None  # a beam search runs alone
    assert fam.batch_key(request(length=32, branch_factor=2)) is None


# -- through HTTP, with the embedded basic_rnn model ------------------------------------------------------


MODEL = "embedded-basic_rnn"


@pytest.fixture
def serve(tmp_path):
    with Servers(tmp_path) as servers:

        def start(name, batching):
            serving = {"max_batch_size": 64, "max_wait_ms": 300} if batching else {}
            return servers.start(name, "melody_rnn", embedded_model(MODEL, serving), batching).url

        yield start


TWINKLE = [60, -2, 60, -2, 67, -2, 67, -2, 69, -2, 69, -2, 67, -2, -2, -2]
PAYLOADS = [
    *({"seed": s, "length": 64} for s in range(6)),
    *({"seed": 10 + s, "primer": TWINKLE[: 4 + 3 * s], "length": 64, "temperature": 0.8} for s in range(4)),
    {"seed": 20, "mode": "sample", "length": 64, "format": "midi"},
    {"seed": 21, "length": 32},  # another length: its own batch
    {"seed": 22, "num_outputs": 3, "length": 64},  # runs alone
    {"seed": 23, "beam_size": 2, "length": 64},  # runs alone
    {"seed": 24, "primer": [60, 999], "length": 64},  # 422 in the batch's company
]


def rnn_batches() -> float:
    return metrics.REGISTRY.get_sample_value("magenta_api_batch_size_count", {"model": MODEL}) or 0.0


def test_concurrent_seeded_requests_give_the_same_bytes_batched_or_not(serve):
    plain, batched = serve("plain", False), serve("batched", True)
    alone = post_one_by_one(plain, MODEL, PAYLOADS)
    assert [r.status_code for r in alone] == [200] * (len(PAYLOADS) - 1) + [422]
    before = rnn_batches()
    together = post_together(batched, MODEL, PAYLOADS)
    assert_same_answers(PAYLOADS, alone, together)
    ran = rnn_batches() - before
    assert ran <= len(PAYLOADS) - 6, f"{ran} passes for {len(PAYLOADS)} concurrent requests: nothing was batched"
