"""Reference outputs of Magenta 2.1.4's PerformanceRNN for the performance_rnn plugin's tests.

Run in the reference environment (never imported by the service):

    TF_USE_LEGACY_KERAS=1 OMP_NUM_THREADS=1 .venv-ref/bin/python reference/performance_rnn_reference.py [config ...]

For each config of ``performance_model.default_configs`` that magenta published a bundle of (and the
optionally conditioned one, the only config with ``disable_conditioning``) it builds magenta's own
generation graph with small layers and random weights, writes a real ``.mag`` bundle with magenta's
``create_bundle_file``, reloads it through ``PerformanceRnnSequenceGenerator`` and records:

- ``weights.npz``: every variable of the bundle's checkpoint;
- inputs (controls included, as ``generate_performance`` builds them) and teacher-forced logits over
  fixed primers;
- greedy continuations (temperature 1e-6), seeded samples (``np.random.seed`` before magenta's
  ``np.random.choice`` draws) and beam-search results with their scores, from ``generate_performance``;
- the sequence generator end to end on a NoteSequence primer (greedy and seeded): the output notes;
- the performances, inputs and labels that magenta extracts from the compat MIDI files
  (``quantize_note_sequence_absolute`` at 100 steps per second, ``extract_performances``).

Outputs go to tests/fixtures/performance_rnn/.
"""

import copy
import functools
import glob
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

import note_seq  # noqa: E402
from events_rnn_bundle import bundled_generator, config_seed, with_beam_score  # noqa: E402
from magenta.models.performance_rnn import performance_model, performance_sequence_generator  # noqa: E402
from magenta.models.shared import events_rnn_graph  # noqa: E402
from magenta.pipelines import performance_pipeline  # noqa: E402
from note_seq.performance_lib import PerformanceEvent  # noqa: E402
from note_seq.protobuf import generator_pb2, music_pb2  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "performance_rnn")
MIDI_DIR = os.path.join(ROOT, "tests", "fixtures", "melody_rnn", "midi")  # copies of ../shared/compat/midi

CONFIGS = [
    "performance",
    "performance_with_dynamics",
    "performance_with_dynamics_and_modulo_encoding",
    "density_conditioned_performance_with_dynamics",
    "pitch_conditioned_performance_with_dynamics",
    "multiconditioned_performance_with_dynamics",
    "optional_multiconditioned_performance_with_dynamics",
]
LAYERS = [16, 16]
NUM_STEPS = 40  # RNN steps, the primer included
CONTROL_STEPS = 300  # the time steps the control schedules spread over
ON, OFF, SHIFT, VEL = (
    PerformanceEvent.NOTE_ON,
    PerformanceEvent.NOTE_OFF,
    PerformanceEvent.TIME_SHIFT,
    PerformanceEvent.VELOCITY,
)
PRIMERS = {
    "phrase": [
        (VEL, 20),
        (ON, 60),
        (SHIFT, 50),
        (ON, 64),
        (SHIFT, 25),
        (OFF, 60),
        (OFF, 64),
        (SHIFT, 100),
        (VEL, 5),
        (ON, 67),
        (SHIFT, 10),
    ],
    "single": [(ON, 60)],
}
# control values for the conditioned configs: (notes_per_second, pitch_class_histogram, disable)
CONTROLS = {
    "constant": ([8.0], [[2.0, 0, 1, 0, 1, 1, 0, 2, 0, 1, 0, 1]], [False]),
    "schedule": ([2.0, 30.0], [[1.0] * 12, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]], [False, True]),
}
SEED_SAMPLES = [(1, 1.0), (7, 0.8)]
BEAMS = [(3, 4, 2, 1, 1.0), (5, 2, 3, 4, 1.0)]  # (seed, beam_size, branch_factor, steps_per_iteration, temperature)


def make_config(name):
    config = copy.deepcopy(performance_model.default_configs[name])
    config.hparams.rnn_layer_sizes = LAYERS
    config.hparams.batch_size = 1
    config.hparams.dropout_keep_prob = 1.0
    return config


def make_generator(config, checkpoint=None, bundle=None):
    return performance_sequence_generator.PerformanceRnnSequenceGenerator(
        performance_model.PerformanceRnnModel(config),
        config.details,
        steps_per_second=config.steps_per_second,
        num_velocity_bins=config.num_velocity_bins,
        control_signals=config.control_signals,
        optional_conditioning=config.optional_conditioning,
        fill_generate_section=False,
        note_performance=config.note_performance,
        checkpoint=checkpoint,
        bundle=bundle,
    )


def to_performance(config, events):
    perf = note_seq.Performance(steps_per_second=100, num_velocity_bins=config.num_velocity_bins)
    for kind, value in events:
        if kind == VEL and not config.num_velocity_bins:
            continue
        perf.append(PerformanceEvent(kind, value))
    return perf


def events_json(perf):
    names = {ON: "note_on", OFF: "note_off", SHIFT: "time_shift", VEL: "velocity"}
    return [[names[e.event_type], int(e.event_value)] for e in perf]


def control_fns(config, controls):
    """generate_performance's control_signal_fns / disable_conditioning_fn for a CONTROLS entry."""
    if not config.control_signals:
        return {}
    density, histogram, disable = controls
    values = {"notes_per_second": density, "pitch_class_histogram": histogram}
    fns = [
        functools.partial(performance_sequence_generator._step_to_value, num_steps=CONTROL_STEPS, values=values[c.name])
        for c in config.control_signals
    ]
    out = {"control_signal_fns": fns}
    if config.optional_conditioning:
        out["disable_conditioning_fn"] = functools.partial(
            performance_sequence_generator._step_to_value, num_steps=CONTROL_STEPS, values=disable
        )
    return out


def full_inputs(config, perf, fns):
    """The first step's inputs as _generate_events builds them (controls extended over the primer)."""
    if not fns:
        return config.encoder_decoder.get_inputs_batch([perf], full_length=True)
    signal_fns, disable_fn = fns["control_signal_fns"], fns.get("disable_conditioning_fn")
    event = tuple(f(0) for f in signal_fns)
    if disable_fn is not None:
        event = (disable_fn(0), event)
    controls = [event]
    performance_model._extend_control_events(
        signal_fns, disable_fn, controls, perf, performance_model.PerformanceControlState(0, 0)
    )
    return config.encoder_decoder.get_inputs_batch([controls], [perf], full_length=True)


def teacher_forced_logits(model, inputs):
    sess = model._session
    graph = sess.graph
    init = graph.get_collection("initial_state")
    feed = {graph.get_collection("inputs")[0]: inputs, tuple(init): tuple(sess.run(init))}
    temp = graph.get_collection("temperature")
    if temp:
        feed[temp[0]] = 1.0
    return np.asarray(sess.run(graph.get_tensor_by_name("fully_connected/BiasAdd:0"), feed))


def generate(model, config, primer, temperature, fns, beam=(1, 1, 1)):
    out = model.generate_performance(NUM_STEPS, copy.deepcopy(primer), temperature, *beam, **fns)
    return events_json(out)


def beam_with_score(model, config, primer, temperature, fns, beam, seed):
    return with_beam_score(lambda: generate(model, config, primer, temperature, fns, beam), seed)


def primer_sequence():
    seq = music_pb2.NoteSequence()
    seq.tempos.add(qpm=120)
    for pitch, start, end, velocity in [(60, 0.0, 0.5, 80), (64, 0.25, 0.75, 40), (67, 0.5, 1.23, 110)]:
        seq.notes.add(pitch=pitch, start_time=start, end_time=end, velocity=velocity)
    seq.total_time = 1.23
    return seq


def run_generator(gen, config, seq, end_time, temperature, seed, controls):
    opts = generator_pb2.GeneratorOptions()
    opts.generate_sections.add(start_time=seq.total_time, end_time=end_time)
    opts.args["temperature"].float_value = temperature
    request = {}
    if config.control_signals:
        density, histogram, disable = controls
        values = {"notes_per_second": density, "pitch_class_histogram": histogram}
        for c in config.control_signals:
            opts.args[c.name].string_value = repr(values[c.name])
            request[c.name] = values[c.name]
        if config.optional_conditioning:
            opts.args["disable_conditioning"].string_value = repr(disable)
            request["disable_conditioning"] = disable
    np.random.seed(seed)
    out = gen.generate(seq, opts)
    return {
        "temperature": temperature,
        "seed": seed,
        "end_time": end_time,
        "params": request,
        "notes": [[n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6)] for n in out.notes],
        "total_time": out.total_time,
    }


def extract_midi(config, path):
    seq = note_seq.midi_file_to_note_sequence(path)
    result = {"file": os.path.basename(path)}
    q = note_seq.quantize_note_sequence_absolute(seq, 100)
    perfs, _ = performance_pipeline.extract_performances(q, num_velocity_bins=config.num_velocity_bins)
    result["num_performances"] = len(perfs)
    result["programs"] = sorted({n.program for n in seq.notes})
    if len(perfs) != 1:
        return result, None
    perf = perfs[0]
    result["events"] = events_json(perf)
    result["num_steps"] = int(perf.num_steps)
    arrays = {}
    if config.control_signals:
        fns = control_fns(config, CONTROLS["constant"])
        arrays["inputs"] = np.asarray(full_inputs(config, perf, fns)[0], np.float32)
        arrays["labels"] = np.asarray(
            [config.encoder_decoder.events_to_label(perf, i) for i in range(len(perf))], np.int64
        )
    else:
        inputs, labels = config.encoder_decoder.encode(perf)
        arrays["inputs"] = np.asarray(inputs, np.float32)
        arrays["labels"] = np.asarray(labels, np.int64)
    return result, arrays


def run_config(name):
    out_dir = os.path.join(OUT, name)
    os.makedirs(out_dir, exist_ok=True)
    config = make_config(name)
    bundle, gen, weights = bundled_generator(
        functools.partial(make_generator, config),
        events_rnn_graph.get_build_graph_fn("generate", config),
        os.path.join(out_dir, f"{name}.mag"),
        f"{name} with random weights, layers {LAYERS}",
        config_seed(name),
    )
    model = gen._model
    ref = {
        "config": name,
        "generator_id": bundle.generator_details.id,
        "layers": LAYERS,
        "num_steps": NUM_STEPS,
        "control_steps": CONTROL_STEPS,
        "controls": {
            k: {"notes_per_second": v[0], "pitch_class_histogram": v[1], "disable_conditioning": v[2]}
            for k, v in CONTROLS.items()
        },
        "cases": {},
    }
    arrays = {}
    control_cases = list(CONTROLS) if config.control_signals else [None]
    for pname, events in PRIMERS.items():
        primer = to_performance(config, events)
        for cname in control_cases:
            fns = control_fns(config, CONTROLS[cname]) if cname else {}
            key = f"{pname}/{cname}" if cname else pname
            inputs = full_inputs(config, primer, fns)
            arrays[f"{key}/inputs"] = np.asarray(inputs[0], np.float32)
            arrays[f"{key}/logits"] = teacher_forced_logits(model, inputs).reshape(len(primer), -1)
            entry = {"primer": events_json(primer), "controls": cname}
            np.random.seed(0)
            entry["greedy"] = generate(model, config, primer, 1e-6, fns)
            entry["samples"] = []
            for seed, temp in SEED_SAMPLES:
                np.random.seed(seed)
                entry["samples"].append(
                    {"seed": seed, "temperature": temp, "events": generate(model, config, primer, temp, fns)}
                )
            entry["beams"] = []
            for seed, bsz, bf, spi, temp in BEAMS:
                ev, score = beam_with_score(model, config, primer, temp, fns, (bsz, bf, spi), seed)
                entry["beams"].append(
                    {
                        "seed": seed,
                        "beam_size": bsz,
                        "branch_factor": bf,
                        "steps_per_iteration": spi,
                        "temperature": temp,
                        "events": ev,
                        "score": score,
                    }
                )
            ref["cases"][key] = entry

    seq = primer_sequence()
    ref["primer_sequence"] = json.loads(__import__("google.protobuf.json_format", fromlist=["x"]).MessageToJson(seq))
    ref["sequence_generator"] = [
        run_generator(gen, config, seq, 2.5, 1e-6, 0, CONTROLS["constant"]),
        run_generator(gen, config, seq, 3.0, 1.0, 11, CONTROLS["schedule"]),
        run_generator(gen, config, music_pb2.NoteSequence(), 1.5, 1.0, 4, CONTROLS["constant"]),
    ]
    gen.close()

    midi = []
    for path in sorted(glob.glob(os.path.join(MIDI_DIR, "*.mid"))):
        res, arr = extract_midi(config, path)
        midi.append(res)
        for k, v in (arr or {}).items():
            arrays[f"midi/{res['file']}/{k}"] = v
    ref["midi"] = midi
    np.savez_compressed(os.path.join(out_dir, "reference.npz"), **arrays)
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    print(name, "ok", {k: v.shape for k, v in weights.items()})


def main(argv):
    for name in argv[1:] or CONFIGS:
        run_config(name)


if __name__ == "__main__":
    main(sys.argv)
