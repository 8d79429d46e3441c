"""Reference outputs of Magenta 2.1.4's MelodyRNN / DrumsRNN for the melody_rnn plugin's tests.

Run in the reference environment (never imported by the service):

    TF_USE_LEGACY_KERAS=1 OMP_NUM_THREADS=1 .venv-ref/bin/python reference/melody_rnn_reference.py

For each published config (basic_rnn, mono_rnn, lookback_rnn, attention_rnn, drum_kit) it builds
magenta's own generation graph with small layers and random weights, writes a real ``.mag`` bundle with
magenta's ``create_bundle_file``, reloads the bundle through magenta's sequence generator and records:

- ``weights.npz``: every variable of the bundle's checkpoint (``tf.train.load_checkpoint``);
- logits of magenta's graph teacher-forced over fixed primers (the ``fully_connected/BiasAdd`` tensor);
- greedy continuations (temperature 1e-6 through magenta's generator: the softmax is one-hot);
- seeded samples and beam-search results (``np.random.seed`` before magenta's generator: its
  ``np.random.choice`` draws are what the plugin's tests replay with ``np.random.RandomState``);
- the events and encoder inputs/labels that magenta's pipelines extract from ../shared/compat/midi/*.mid.

Outputs go to tests/fixtures/melody_rnn/.
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
from magenta.models.drums_rnn import drums_rnn_model, drums_rnn_sequence_generator  # noqa: E402
from magenta.models.melody_rnn import melody_rnn_model, melody_rnn_sequence_generator  # noqa: E402
from magenta.models.shared import events_rnn_graph  # noqa: E402
from magenta.pipelines import drum_pipelines, melody_pipelines  # noqa: E402
from note_seq.protobuf import generator_pb2  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "melody_rnn")
MIDI_DIR = os.path.join(OUT, "midi")  # copies of ../shared/compat/midi/*.mid

# config name -> (magenta config id, layer sizes, is_drums)
CONFIGS = {
    "basic_rnn": ("basic_rnn", [16, 16], False),
    "mono_rnn": ("mono_rnn", [16], False),
    "lookback_rnn": ("lookback_rnn", [16, 16], False),
    "attention_rnn": ("attention_rnn", [16, 16], False),
    "drum_kit_rnn": ("drum_kit", [16, 16, 16], True),
    # attention_rnn as older magenta built it (and as the published .mag metagraphs / Magenta.js
    # checkpoints have it): the AttentionCellWrapper around the whole MultiRNNCell.
    "attention_rnn_stacked": ("attention_rnn", [16, 16], False),
}
STACKED = {"attention_rnn_stacked"}


def stacked_make_rnn_cell(
    rnn_layer_sizes,
    dropout_keep_prob=1.0,
    attn_length=0,
    base_cell=tf.nn.rnn_cell.BasicLSTMCell,
    residual_connections=False,
):
    """Older magenta's make_rnn_cell: attention wraps the stack, not the first layer."""
    from magenta.contrib import rnn as contrib_rnn

    cells = [tf.nn.rnn_cell.DropoutWrapper(base_cell(n), output_keep_prob=dropout_keep_prob) for n in rnn_layer_sizes]
    cell = tf.nn.rnn_cell.MultiRNNCell(cells)
    if attn_length:
        cell = contrib_rnn.AttentionCellWrapper(cell, attn_length, state_is_tuple=True)
    return cell


MELODY_PRIMERS = {
    "twinkle": [60, -2, 60, -2, 67, -2, 67, -2, 69, -2, 69, -2, 67, -2, -2, -2],
    "single": [60],
    "offs": [62, -1, -2, 64, -2, -1, 65, 67, -2, -2, -1, -2, 72, -2, -2, -2, 71, -2, -1],
}
DRUM_PRIMERS = {
    "beat": [[36], [], [42], [], [38, 42], [], [42], [], [36], [36], [42], [], [38, 42], [], [42, 46], []],
    "single": [[36]],
}
NUM_STEPS = 40
SEED_SAMPLES = [(1, 1.0), (7, 0.8)]
BEAMS = [  # (seed, beam_size, branch_factor, steps_per_iteration, temperature)
    (3, 4, 2, 1, 1.0),
    (5, 2, 3, 4, 1.0),
]


def make_config(name):
    cid, layers, drums = CONFIGS[name]
    base = (drums_rnn_model if drums else melody_rnn_model).default_configs[cid]
    config = copy.deepcopy(base)
    config.hparams.rnn_layer_sizes = layers
    config.hparams.batch_size = 1
    config.hparams.dropout_keep_prob = 1.0
    return config


def make_generator(name, config, checkpoint=None, bundle=None):
    drums = CONFIGS[name][2]
    if drums:
        return drums_rnn_sequence_generator.DrumsRnnSequenceGenerator(
            drums_rnn_model.DrumsRnnModel(config),
            config.details,
            steps_per_quarter=config.steps_per_quarter,
            checkpoint=checkpoint,
            bundle=bundle,
        )
    return melody_rnn_sequence_generator.MelodyRnnSequenceGenerator(
        melody_rnn_model.MelodyRnnModel(config),
        config.details,
        steps_per_quarter=config.steps_per_quarter,
        checkpoint=checkpoint,
        bundle=bundle,
    )


def to_events(name, primer):
    if CONFIGS[name][2]:
        return note_seq.DrumTrack([frozenset(p) for p in primer])
    return note_seq.Melody(primer)


def events_json(name, events):
    if CONFIGS[name][2]:
        return [sorted(int(p) for p in e) for e in events]
    return [int(e) for e in events]


def prepared(name, config, primer):
    """The primer as the model sees it (melodies squashed as generate_melody does)."""
    events = to_events(name, primer)
    transpose = 0
    if not CONFIGS[name][2]:
        events = copy.deepcopy(events)
        transpose = events.squash(config.min_note, config.max_note, config.transpose_to_key)
    return events, transpose


def teacher_forced_logits(model, config, events):
    sess = model._session
    graph = sess.graph
    inputs = config.encoder_decoder.get_inputs_batch([events], full_length=True)
    init = graph.get_collection("initial_state")
    zero = sess.run(init)
    logits = graph.get_tensor_by_name("fully_connected/BiasAdd:0")
    feed = {graph.get_collection("inputs")[0]: inputs, tuple(init): tuple(zero)}
    temp = graph.get_collection("temperature")
    if temp:
        feed[temp[0]] = 1.0
    return np.asarray(sess.run(logits, feed)), np.asarray(inputs[0], np.float32)


def generate_events(name, model, config, primer, temperature, beam=(1, 1, 1)):
    beam_size, branch_factor, steps_per_iteration = beam
    if CONFIGS[name][2]:
        out = model.generate_drum_track(
            NUM_STEPS, to_events(name, primer), temperature, beam_size, branch_factor, steps_per_iteration
        )
    else:
        out = model.generate_melody(
            NUM_STEPS, to_events(name, primer), temperature, beam_size, branch_factor, steps_per_iteration
        )
    return events_json(name, out)


def beam_loglik(model, config, name, primer, temperature, beam, seed):
    """Magenta's beam search result with its log-likelihood score (calls the private
    _generate_events on the prepared primer, the same call generate_melody makes)."""
    events, transpose = prepared(name, config, primer)
    out, score = with_beam_score(lambda: model._generate_events(NUM_STEPS, events, temperature, *beam), seed)
    if not CONFIGS[name][2]:
        out.transpose(-transpose)
    return events_json(name, out), score


def extract_midi(name, config, path):
    """Events and encoder inputs/labels as magenta's sequence generators extract them."""
    seq = note_seq.midi_file_to_note_sequence(path)
    result = {"file": os.path.basename(path)}
    try:
        q = note_seq.quantize_note_sequence(seq, config.steps_per_quarter)
        if CONFIGS[name][2]:
            tracks, _ = drum_pipelines.extract_drum_tracks(
                q, search_start_step=0, min_bars=0, gap_bars=float("inf"), ignore_is_drum=True
            )
            tracks = list(tracks)
        else:
            tracks, _ = melody_pipelines.extract_melodies(
                q,
                search_start_step=0,
                min_bars=0,
                min_unique_pitches=1,
                gap_bars=float("inf"),
                ignore_polyphonic_notes=True,
            )
    except Exception as exc:  # record what magenta refuses
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result, None
    result["num_tracks"] = len(tracks)
    result["total_quantized_steps"] = int(q.total_quantized_steps)
    if len(tracks) != 1:
        return result, None
    events = tracks[0]
    result["start_step"] = int(events.start_step)
    result["events"] = events_json(name, events)
    arrays = {}
    model_events = copy.deepcopy(events)
    if not CONFIGS[name][2]:
        result["transpose"] = int(model_events.squash(config.min_note, config.max_note, config.transpose_to_key))
        result["squashed"] = events_json(name, model_events)
    inputs, labels = config.encoder_decoder.encode(model_events)
    arrays["inputs"] = np.asarray(inputs, np.float32)
    arrays["labels"] = np.asarray(labels, np.int64)
    return result, arrays


def run_config(name):
    original = events_rnn_graph.make_rnn_cell
    if name in STACKED:
        events_rnn_graph.make_rnn_cell = stacked_make_rnn_cell
    try:
        _run_config(name)
    finally:
        events_rnn_graph.make_rnn_cell = original


def _run_config(name):
    out_dir = os.path.join(OUT, name)
    os.makedirs(out_dir, exist_ok=True)
    config = make_config(name)
    bundle, gen, weights = bundled_generator(
        functools.partial(make_generator, name, config),
        events_rnn_graph.get_build_graph_fn("generate", config),
        os.path.join(out_dir, f"{name}.mag"),
        f"{name} with random weights, layers {config.hparams.rnn_layer_sizes}",
        config_seed(name),
    )
    model = gen._model
    ref = {
        "config": name,
        "generator_id": bundle.generator_details.id,
        "layers": config.hparams.rnn_layer_sizes,
        "attn_length": config.hparams.attn_length,
        "num_steps": NUM_STEPS,
        "primers": {},
    }
    arrays = {}
    primers = DRUM_PRIMERS if CONFIGS[name][2] else MELODY_PRIMERS
    for pname, primer in primers.items():
        events, transpose = prepared(name, config, primer)
        logits, inputs = teacher_forced_logits(model, config, events)
        arrays[f"{pname}/logits"] = logits.reshape(len(events), -1)
        arrays[f"{pname}/inputs"] = inputs
        entry = {"primer": primer, "prepared": events_json(name, events), "transpose": transpose}
        np.random.seed(0)
        entry["greedy"] = generate_events(name, model, config, primer, 1e-6)
        entry["samples"] = []
        for seed, temp in SEED_SAMPLES:
            np.random.seed(seed)
            entry["samples"].append(
                {"seed": seed, "temperature": temp, "events": generate_events(name, model, config, primer, temp)}
            )
        entry["beams"] = []
        for seed, bsz, bf, spi, temp in BEAMS:
            ev, score = beam_loglik(model, config, name, primer, temp, (bsz, bf, spi), seed)
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
        ref["primers"][pname] = entry

    # The sequence generator end to end on a NoteSequence primer (greedy).
    primer = next(iter(primers.values()))
    # The primer sequence lasts two steps past its events; magenta's generator starts at
    # quantize_to_step(start_time, cutoff=0) = floor(start_time * steps_per_second) + 1, so asking for
    # half a step before the end starts exactly where the primer sequence ends (what the plugin does).
    seq = to_events(name, primer).to_sequence(qpm=120)
    step = 60.0 / 120 / config.steps_per_quarter
    end_steps = len(primer) + 2
    seq.total_time = end_steps * step
    opts = generator_pb2.GeneratorOptions()
    opts.generate_sections.add(start_time=(end_steps - 0.5) * step, end_time=NUM_STEPS * step)
    opts.args["temperature"].float_value = 1e-6
    out = gen.generate(seq, opts)
    ref["sequence_generator"] = {
        "primer_sequence": json.loads(__import__("google.protobuf.json_format", fromlist=["x"]).MessageToJson(seq)),
        "notes": [[n.pitch, round(n.start_time, 6), round(n.end_time, 6), bool(n.is_drum)] for n in out.notes],
        "total_time": out.total_time,
        "start_step": end_steps,
    }
    gen.close()

    midi = []
    for path in sorted(glob.glob(os.path.join(MIDI_DIR, "*.mid"))):
        res, arr = extract_midi(name, config, path)
        midi.append(res)
        if arr:
            for k, v in arr.items():
                arrays[f"midi/{res['file']}/{k}"] = v
    ref["midi"] = midi
    np.savez_compressed(os.path.join(out_dir, "reference.npz"), **arrays)
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    print(name, "ok", {k: v.shape for k, v in weights.items()})


def main(argv):
    names = argv[1:] or list(CONFIGS)
    for name in names:
        run_config(name)


if __name__ == "__main__":
    main(sys.argv)
