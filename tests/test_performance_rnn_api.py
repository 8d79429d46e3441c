"""PerformanceRNN through the HTTP API: magenta-written .mag bundles served from file:// URLs by the real
checkpoint store; MIDI primers, generation from silence, the control signals and their 422s."""

import base64

import note_seq
import pytest
from melody_rnn_support import FIX as MELODY_FIX
from performance_rnn_support import FIX, weights

import magenta_api_performance_rnn
from magenta_api.store import save_native

MODELS = {
    "perf": "performance_with_dynamics",
    "plain": "performance",
    "density": "density_conditioned_performance_with_dynamics",
    "multi": "multiconditioned_performance_with_dynamics",
    "optional": "optional_multiconditioned_performance_with_dynamics",
}


def density_responsive(path):
    """The random density-conditioned weights with one path made to listen to the control, as a trained
    model does: the notes_per_second bin drives unit 0 of both layers (open gates, no memory), and unit 0
    raises the note-on logits and lowers the time-shift ones. Saved as a native checkpoint."""
    w = {k: v.copy() for k, v in weights("density_conditioned_performance_with_dynamics").items()}
    cells = "rnn/multi_rnn_cell/cell_{}/basic_lstm_cell/"
    units = 16
    gates = [0, units, 2 * units, 3 * units]  # unit 0 of gates i, j, f, o
    for layer in (0, 1):
        kernel, bias = w[cells.format(layer) + "kernel"], w[cells.format(layer) + "bias"]
        kernel[:, gates] = 0.0
        bias[gates] = [10.0, 0.0, -10.0, 10.0]
        if layer == 0:
            kernel[:8, units] = [-5.0] * 4 + [5.0] * 4  # the 8 density bins lead the inputs
        else:
            kernel[0, units] = 5.0  # layer 0's unit 0
    fc = w["fully_connected/weights"]
    fc[0] = 0.0
    fc[0, :128], fc[0, 256:356] = 4.0, -4.0  # note-on classes up, time shifts down
    save_native(path, w)
    return path


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from magenta_api.testing import make_app

    native = density_responsive(tmp_path_factory.mktemp("weights") / "density.safetensors")

    def model(name):
        return {
            "family": "performance_rnn",
            "description": f"tiny random {name}",
            "limits": {"num_outputs": 4, "length": 6000},
            "checkpoint": {"url": (FIX / name / f"{name}.mag").as_uri(), "sha256": "", "size": None, "format": "mag"},
        }

    app = make_app(
        tmp_path_factory.mktemp("performance_rnn"),
        plugins=[magenta_api_performance_rnn],
        models={
            **{mid: model(name) for mid, name in MODELS.items()},
            "listening": {
                "family": "performance_rnn",
                "hparams": {"config": "density_conditioned_performance_with_dynamics"},
                "checkpoint": {"url": native.as_uri(), "sha256": "", "size": None, "format": "native"},
            },
        },
    )
    return app.test_client()


def gen(client, **payload):
    return client.post("/v1/generate", json=payload)


def _midi(name="melody.mid"):
    return base64.b64encode((MELODY_FIX / "midi" / name).read_bytes()).decode()


def test_the_config_comes_from_the_bundle(client):
    body = client.get("/v1/models/perf").get_json()
    assert body["family"] == "performance_rnn" and body["default_mode"] == "continue"


def test_continues_a_midi_primer_keeping_it_at_the_start(client):
    primer = note_seq.midi_to_note_sequence((MELODY_FIX / "midi" / "melody.mid").read_bytes())
    first = min(primer.notes, key=lambda n: (n.start_time, n.pitch))
    end = max(n.end_time for n in primer.notes)
    r = gen(client, model="perf", primer=_midi(), seconds=end + 2.0, seed=3)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    notes = body["sequences"][0]["notes"]
    assert notes[0]["pitch"] == first.pitch
    assert body["start_step"] == int(end * 100) + 1 and body["rnn_steps"] > 0
    assert body["sequences"][0]["totalTime"] == pytest.approx((body["end_step"]) / 100)
    again = gen(client, model="perf", primer=_midi(), seconds=end + 2.0, seed=3).get_json()
    assert again["events"] == body["events"]


def test_samples_from_silence_and_writes_midi(client):
    r = gen(client, model="plain", mode="sample", length=400, seed=1, num_outputs=2)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert len(body["sequences"]) == 2 and body["events"][0][0] == ["time_shift", 100]
    assert all("velocity" not in [e[0] for e in ev] for ev in body["events"])  # no dynamics in `performance`
    midi = gen(client, model="plain", mode="sample", length=400, seed=1, format="midi")
    assert midi.status_code == 200 and midi.mimetype == "audio/midi"


def test_notes_per_second_high_gives_denser_output_than_low(client):
    counts = {}
    for density in (1, 30):
        r = gen(client, model="listening", mode="sample", seconds=6, seed=9, notes_per_second=density)
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        counts[density] = len(body["sequences"][0].get("notes", []))
    print("notes per 6 s", counts)
    assert counts[30] > 3 * max(1, counts[1]), counts


def test_beam_search_is_seeded(client):
    payload = dict(
        model="multi",
        mode="sample",
        length=300,
        seed=4,
        beam_size=2,
        branch_factor=2,
        notes_per_second=[2, 10],
        pitch_class_histogram=[1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1],
    )
    a, b = gen(client, **payload), gen(client, **payload)
    assert a.status_code == 200, a.get_json()
    assert a.get_json()["events"] == b.get_json()["events"]


@pytest.mark.parametrize(
    "model,payload,field,code",
    [
        ("perf", {"notes_per_second": 5}, "/notes_per_second", "invalid_control"),
        ("density", {"notes_per_second": -1}, "/notes_per_second", "invalid_control"),
        ("density", {"notes_per_second": [1, "x"]}, "/notes_per_second", "invalid_control"),
        ("density", {"pitch_class_histogram": [1] * 12}, "/pitch_class_histogram", "invalid_control"),
        ("multi", {"pitch_class_histogram": [1] * 11}, "/pitch_class_histogram", "invalid_control"),
        ("multi", {"pitch_class_histogram": [[1] * 12, [1, -1] * 6]}, "/pitch_class_histogram", "invalid_control"),
        ("multi", {"disable_conditioning": True}, "/disable_conditioning", "invalid_control"),
        ("optional", {"disable_conditioning": "yes"}, "/disable_conditioning", "invalid_control"),
        ("perf", {"primer": [["note_on", 200]]}, "/primer", "invalid_primer"),
        ("plain", {"primer": [["velocity", 3]]}, "/primer", "invalid_primer"),
        ("perf", {"primer": [["time_shift", 100]], "length": 50}, "/length", "invalid_primer"),
        ("perf", {"primer": _midi("example_complex.mid")}, "/primer", "invalid_primer"),
        ("perf", {"mode": "sample", "primer": [["note_on", 60]]}, "/primer", "invalid_primer"),
        ("perf", {"beam_size": 16, "branch_factor": 8}, "/beam_size", "over_limit"),
        ("perf", {"seconds": 61, "length": None}, "/seconds", "over_limit"),
        ("density", {"notes_per_second": 1e308}, "/notes_per_second", "invalid_control"),
    ],
)
def test_unusable_requests_are_422_naming_the_field(client, model, payload, field, code):
    length = payload.pop("length", 300)
    r = gen(client, model=model, **({"length": length} if length else {}), **payload)
    assert r.status_code == 422, r.get_json()
    err = r.get_json()["error"]
    assert err["code"] == code and err["details"]["field"] == field and err["message"]


def test_disable_conditioning_on_the_optional_model(client):
    on = gen(client, model="optional", mode="sample", length=300, seed=2, temperature=0).get_json()
    off = gen(client, model="optional", mode="sample", length=300, seed=2, temperature=0, disable_conditioning=True)
    assert off.status_code == 200, off.get_json()
    assert off.get_json()["events"] != on["events"]


def test_length_and_seconds_together_are_refused(client):
    assert gen(client, model="perf", length=300, seconds=3).status_code == 400
