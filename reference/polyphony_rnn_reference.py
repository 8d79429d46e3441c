"""Reference outputs of Magenta 2.1.4's PolyphonyRNN for the polyphony_rnn plugin's tests.

Run in the reference environment (never imported by the service):

    TF_USE_LEGACY_KERAS=1 OMP_NUM_THREADS=1 .venv-ref/bin/python reference/polyphony_rnn_reference.py

Builds magenta's generation graph for config ``polyphony`` with small layers and random weights, writes a
real ``.mag`` bundle with magenta's ``create_bundle_file``, reloads it through
``PolyphonyRnnSequenceGenerator`` and records in tests/fixtures/polyphony_rnn/:

- ``weights.npz``, inputs and teacher-forced logits over fixed primers;
- greedy (temperature 1e-6), seeded (``np.random.seed`` before magenta's ``np.random.choice``) and beam
  continuations of ``generate_polyphonic_sequence``, with and without primer injection
  (``_inject_melody``);
- the sequence generator end to end on a NoteSequence primer for each combination of
  ``condition_on_primer`` and ``inject_primer_during_generation`` (greedy and seeded), and from nothing;
- the polyphonic sequences, inputs and labels magenta extracts from the compat MIDI files.
"""

import copy
import functools
import glob
import json
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()

import note_seq  # noqa: E402
from events_rnn_bundle import bundled_generator, config_seed, with_beam_score  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from magenta.models.polyphony_rnn import polyphony_lib, polyphony_model, polyphony_sequence_generator  # noqa: E402
from magenta.models.polyphony_rnn.polyphony_lib import PolyphonicEvent as E  # noqa: E402
from magenta.models.shared import events_rnn_graph  # noqa: E402
from note_seq.protobuf import generator_pb2, music_pb2  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "polyphony_rnn")
MIDI_DIR = os.path.join(ROOT, "tests", "fixtures", "melody_rnn", "midi")
NAME = "polyphony"
LAYERS = [16, 16]
NUM_STEPS = 60  # RNN steps, the primer included
NAMES = {
    E.START: "start",
    E.END: "end",
    E.STEP_END: "step_end",
    E.NEW_NOTE: "new_note",
    E.CONTINUED_NOTE: "continued_note",
}
SEED_SAMPLES = [(1, 1.0), (7, 0.8)]
BEAMS = [(3, 4, 2, 1, 1.0), (5, 2, 3, 4, 1.0)]


def events_json(events):
    return [
        [NAMES[e.event_type], int(e.pitch)] if e.event_type in (E.NEW_NOTE, E.CONTINUED_NOTE) else [NAMES[e.event_type]]
        for e in events
    ]


def make_config():
    config = copy.deepcopy(polyphony_model.default_configs[NAME])
    config.hparams.rnn_layer_sizes = LAYERS
    config.hparams.batch_size = 1
    config.hparams.dropout_keep_prob = 1.0
    return config


def make_generator(config, checkpoint=None, bundle=None):
    return polyphony_sequence_generator.PolyphonyRnnSequenceGenerator(
        polyphony_model.PolyphonyRnnModel(config),
        config.details,
        steps_per_quarter=config.steps_per_quarter,
        checkpoint=checkpoint,
        bundle=bundle,
    )


def more_step_ends(name, value):
    """STEP_END as likely as a trained model makes it (about one event in four), so that the generator's
    loop fills its steps in a few rounds."""
    if name.startswith("fully_connected"):
        value[2] += 5.0
    return value


def primer_sequence():
    """Two voices (a held bass under a moving upper line), a tempo, 2 bars minus a step."""
    seq = music_pb2.NoteSequence()
    seq.tempos.add(qpm=120)
    seq.ticks_per_quarter = 220
    step = 0.125
    for pitch, s, e in [
        (48, 0, 8),
        (67, 0, 2),
        (69, 2, 4),
        (71, 4, 6),
        (72, 6, 8),
        (43, 8, 15),
        (74, 8, 12),
        (71, 12, 15),
        (62, 12, 15),
    ]:
        seq.notes.add(pitch=pitch, start_time=s * step, end_time=e * step, velocity=80)
    seq.total_time = 15 * step
    return seq


def prepared_primers():
    """Primer PolyphonicSequences as the generator prepares them (set_length, trailing END trimmed)."""
    q = note_seq.quantize_note_sequence(primer_sequence(), 4)
    poly = polyphony_lib.extract_polyphonic_sequences(q)[0][0]
    poly.set_length(16)
    poly.trim_trailing_end_events()
    single = polyphony_lib.PolyphonicSequence(steps_per_quarter=4)
    single.trim_trailing_end_events()
    return {"two_voices": poly, "start": single}


def teacher_forced_logits(model, config, events):
    sess = model._session
    graph = sess.graph
    inputs = config.encoder_decoder.get_inputs_batch([events], full_length=True)
    init = graph.get_collection("initial_state")
    feed = {graph.get_collection("inputs")[0]: inputs, tuple(init): tuple(sess.run(init))}
    temp = graph.get_collection("temperature")
    if temp:
        feed[temp[0]] = 1.0
    return np.asarray(sess.run(graph.get_tensor_by_name("fully_connected/BiasAdd:0"), feed)), np.asarray(inputs[0])


def generate(model, primer, temperature, melody, beam=(1, 1, 1)):
    kwargs = {}
    if melody is not None:
        kwargs["modify_events_callback"] = functools.partial(polyphony_sequence_generator._inject_melody, melody, 0)
    out = model.generate_polyphonic_sequence(NUM_STEPS, copy.deepcopy(primer), temperature, *beam, **kwargs)
    return events_json(out)


def beam_with_score(model, primer, temperature, melody, beam, seed):
    return with_beam_score(lambda: generate(model, primer, temperature, melody, beam), seed)


def run_generator(gen, seq, num_steps, temperature, seed, condition, inject, beam=(1, 1, 1)):
    qpm = seq.tempos[0].qpm if seq.tempos else 120.0
    opts = generator_pb2.GeneratorOptions()
    opts.generate_sections.add(start_time=seq.total_time, end_time=num_steps * 60.0 / qpm / 4)
    opts.args["temperature"].float_value = temperature
    opts.args["beam_size"].int_value, opts.args["branch_factor"].int_value = beam[0], beam[1]
    opts.args["steps_per_iteration"].int_value = beam[2]
    opts.args["condition_on_primer"].bool_value = condition
    opts.args["no_inject_primer_during_generation"].bool_value = not inject
    np.random.seed(seed)
    out = gen.generate(seq, opts)
    return {
        "num_steps": num_steps,
        "temperature": temperature,
        "seed": seed,
        "condition_on_primer": condition,
        "inject_primer_during_generation": inject,
        "beam": list(beam),
        "notes": [[n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6)] for n in out.notes],
        "total_time": out.total_time,
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    config = make_config()
    bundle, gen, weights = bundled_generator(
        functools.partial(make_generator, config),
        events_rnn_graph.get_build_graph_fn("generate", config),
        os.path.join(OUT, "polyphony_rnn.mag"),
        f"polyphony with random weights, layers {LAYERS}",
        config_seed(NAME),
        more_step_ends,
    )
    model = gen._model
    ref = {"generator_id": bundle.generator_details.id, "layers": LAYERS, "num_steps": NUM_STEPS, "cases": {}}
    arrays = {}
    primers = prepared_primers()
    melody = primers["two_voices"]
    for pname, primer in primers.items():
        logits, inputs = teacher_forced_logits(model, config, primer)
        arrays[f"{pname}/logits"] = logits.reshape(len(primer), -1)
        arrays[f"{pname}/inputs"] = inputs
        for inject in (False, True):
            entry = {"primer": events_json(primer), "inject": inject}
            mel = melody if inject else None
            np.random.seed(0)
            entry["greedy"] = generate(model, primer, 1e-6, mel)
            entry["samples"] = []
            for seed, temp in SEED_SAMPLES:
                np.random.seed(seed)
                entry["samples"].append(
                    {"seed": seed, "temperature": temp, "events": generate(model, primer, temp, mel)}
                )
            entry["beams"] = []
            for seed, bsz, bf, spi, temp in BEAMS:
                ev, score = beam_with_score(model, primer, temp, mel, (bsz, bf, spi), seed)
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
            ref["cases"][f"{pname}/{'inject' if inject else 'plain'}"] = entry

    seq = primer_sequence()
    ref["primer_sequence"] = json.loads(json_format.MessageToJson(seq))
    runs = []
    for condition in (False, True):
        for inject in (False, True):
            runs.append(run_generator(gen, seq, 24, 1e-6, 0, condition, inject))
            runs.append(run_generator(gen, seq, 24, 1.0, 5, condition, inject))
    runs.append(run_generator(gen, seq, 20, 1.0, 9, False, True, beam=(2, 2, 3)))
    empty = music_pb2.NoteSequence()
    empty.tempos.add(qpm=120)
    empty.ticks_per_quarter = 220
    runs.append(dict(run_generator(gen, empty, 8, 1.0, 3, False, True), empty=True))
    ref["sequence_generator"] = runs
    gen.close()

    midi = []
    for path in sorted(glob.glob(os.path.join(MIDI_DIR, "*.mid"))):
        seqm = note_seq.midi_file_to_note_sequence(path)
        res = {"file": os.path.basename(path)}
        try:
            q = note_seq.quantize_note_sequence(seqm, 4)
        except Exception as exc:  # record what magenta refuses
            res["error"] = type(exc).__name__
            midi.append(res)
            continue
        polys, _ = polyphony_lib.extract_polyphonic_sequences(q)
        res["num_sequences"] = len(polys)
        if polys:
            res["events"] = events_json(polys[0])
            inputs, labels = config.encoder_decoder.encode(polys[0])
            arrays[f"midi/{res['file']}/inputs"] = np.asarray(inputs, np.float32)
            arrays[f"midi/{res['file']}/labels"] = np.asarray(labels, np.int64)
        midi.append(res)
    ref["midi"] = midi
    np.savez_compressed(os.path.join(OUT, "reference.npz"), **arrays)
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    print("polyphony ok", {k: v.shape for k, v in weights.items()})


if __name__ == "__main__":
    main()
