"""Reference outputs of Magenta 2.1.4's Pianoroll RNN-NADE and of its NADE for the tests.

Run in the reference environment (never imported by the service):

    TF_USE_LEGACY_KERAS=1 OMP_NUM_THREADS=1 .venv-ref/bin/python reference/pianoroll_rnn_nade_reference.py

- ``nade/``: ``magenta.common.Nade`` with random weights (external and internal biases): ``log_prob``,
  the conditionals and the threshold ``sample`` (tests/test_nade.py).
- ``rnn-nade/``, ``rnn-nade_attn/``: magenta's generation graph with small layers and random weights,
  written as a ``.mag`` bundle by ``create_bundle_file`` and reloaded through
  ``PianorollRnnNadeSequenceGenerator``: the NADE biases (``b_enc``, ``b_dec``) the RNN gives after each
  prefix of fixed primers, the graph's sample and log-probability from them, ``generate_pianoroll_sequence``
  (magenta decodes each frame by the 0.5 threshold, so greedy and beam search are deterministic) and the
  sequence generator end to end, and the pianorolls, inputs and labels extracted from the compat MIDI files.
  magenta 2.1.4 cannot generate with current TensorFlow (``loglik[:, 0]`` on a 1-D array); the script
  replaces that one line (``_generate_step_for_batch`` below) and nothing else.

Outputs go to tests/fixtures/pianoroll_rnn_nade/.
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
from events_rnn_bundle import bundled_generator, config_seed  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from magenta.common import Nade  # noqa: E402
from magenta.models.pianoroll_rnn_nade import (  # noqa: E402
    pianoroll_rnn_nade_graph,
    pianoroll_rnn_nade_model,
    pianoroll_rnn_nade_sequence_generator,
)
from magenta.pipelines import pianoroll_pipeline  # noqa: E402
from note_seq.protobuf import generator_pb2, music_pb2  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "pianoroll_rnn_nade")
MIDI_DIR = os.path.join(ROOT, "tests", "fixtures", "melody_rnn", "midi")
CONFIGS = {"rnn-nade": dict(layers=[16, 16], attn_length=0), "rnn-nade_attn": dict(layers=[16, 16], attn_length=6)}
NADE_HIDDEN = 8
NUM_STEPS = 24
PRIMERS = {
    "chords": [(60, 64, 67), (60, 64, 67), (), (62, 65, 69), (62, 65, 69), (59, 62, 67, 71), (), (60, 64, 67)],
    "single": [(60,)],
}
BEAMS = [(2, 2, 1), (3, 2, 4)]


def _generate_step_for_batch(self, event_sequences, inputs, initial_state, temperature):
    """magenta 2.1.4's PianorollRnnNadeModel._generate_step_for_batch, except for its last line: it
    returns ``loglik[:, 0]``, which fails (IndexError) on the 1-D log-probability the graph gives under
    current TensorFlow; here the same values are read as ``loglik.reshape(batch, -1)[:, 0]``."""
    graph = self._session.graph
    sample, loglik, final_state = self._session.run(
        [
            graph.get_collection("sample")[0],
            graph.get_collection("log_prob")[0],
            tuple(graph.get_collection("final_state")),
        ],
        {graph.get_collection("inputs")[0]: inputs, tuple(graph.get_collection("initial_state")): initial_state},
    )
    self._config.encoder_decoder.extend_event_sequences(event_sequences, sample)
    return final_state, np.asarray(loglik).reshape(len(event_sequences), -1)[:, 0]


pianoroll_rnn_nade_model.PianorollRnnNadeModel._generate_step_for_batch = _generate_step_for_batch


def config_for(name):
    config = copy.deepcopy(pianoroll_rnn_nade_model.default_configs[name])
    config.hparams.rnn_layer_sizes = CONFIGS[name]["layers"]
    if CONFIGS[name]["attn_length"]:
        config.hparams.attn_length = CONFIGS[name]["attn_length"]
    config.hparams.nade_hidden_units = NADE_HIDDEN
    config.hparams.batch_size = 1
    config.hparams.dropout_keep_prob = 1.0
    return config


def make_generator(config, checkpoint=None, bundle=None):
    return pianoroll_rnn_nade_sequence_generator.PianorollRnnNadeSequenceGenerator(
        pianoroll_rnn_nade_model.PianorollRnnNadeModel(config),
        config.details,
        steps_per_quarter=config.steps_per_quarter,
        checkpoint=checkpoint,
        bundle=bundle,
    )


def frames_json(seq):
    return [sorted(int(p) for p in frame) for frame in seq]


def nade_fixture():
    out = os.path.join(OUT, "nade")
    os.makedirs(out, exist_ok=True)
    dims, hidden, batch = 6, 5, 4
    rng = np.random.RandomState(3)
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(1)  # before the ops exist, so that the initializers and the sampling are seeded
        nade = Nade(dims, hidden, name="nade")
        internal = Nade(dims, hidden, internal_bias=True, name="internal")
        x = tf.constant(rng.randint(0, 2, (batch, dims)).astype(np.float32))
        b_enc = tf.constant(rng.normal(0, 1, (batch, hidden)).astype(np.float32))
        b_dec = tf.constant(rng.normal(0, 1, (batch, dims)).astype(np.float32))
        log_prob, cond = nade.log_prob(x, b_enc, b_dec)
        sample, sample_lp = nade.sample(b_enc, b_dec)
        isample, isample_lp = internal.sample(n=3)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run(
                dict(
                    x=x,
                    b_enc=b_enc,
                    b_dec=b_dec,
                    log_prob=log_prob,
                    cond_probs=cond,
                    sample=sample,
                    sample_log_prob=sample_lp,
                    internal_sample=isample,
                    internal_sample_log_prob=isample_lp,
                )
            )
            for var in tf.global_variables():
                values[var.op.name] = sess.run(var)
    np.savez(os.path.join(out, "reference.npz"), **values)
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"num_dims": dims, "num_hidden": hidden, "batch": batch}, f, indent=1)
    print("nade ok", sorted(values))


def biases_after(model, config, frames):
    """(b_enc, b_dec) the graph's final state holds for a whole primer (one row per position: the
    RNN-NADE's state flattens time), the primer's inputs, and the graph's sample and log-probability
    when fed the last position's biases and the final RNN state."""
    sess = model._session
    graph = sess.graph
    inputs_t = graph.get_collection("inputs")[0]
    init = tuple(graph.get_collection("initial_state"))
    final = tuple(graph.get_collection("final_state"))
    primer = note_seq.PianorollSequence(events_list=frames, steps_per_quarter=4, min_pitch=21, max_pitch=108)
    inputs = config.encoder_decoder.get_inputs_batch([primer], full_length=True)
    state = sess.run(final, {inputs_t: inputs, init: sess.run(init)})
    last = (state[0][-1:], state[1][-1:]) + tuple(state[2:])
    sample_t = graph.get_collection("sample")[0]
    lp_t = graph.get_collection("log_prob")[0]
    sample, lp = sess.run([sample_t, lp_t], {inputs_t: inputs, init: last})
    return state[0], state[1], np.asarray(inputs[0], np.float32), sample[0], np.atleast_1d(lp)[0]


def run_generator(gen, seq, num_steps, beam=None):
    opts = generator_pb2.GeneratorOptions()
    opts.generate_sections.add(start_time=seq.total_time, end_time=num_steps * 0.125)
    if beam:
        opts.args["beam_size"].int_value, opts.args["branch_factor"].int_value = beam
    out = gen.generate(seq, opts)
    return {
        "num_steps": num_steps,
        "beam": list(beam or (1, 1)),
        "notes": [[n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6)] for n in out.notes],
        "total_time": out.total_time,
    }


def run_config(name):
    out_dir = os.path.join(OUT, name)
    os.makedirs(out_dir, exist_ok=True)
    config = config_for(name)
    bundle, gen, weights = bundled_generator(
        functools.partial(make_generator, config),
        pianoroll_rnn_nade_graph.get_build_graph_fn("generate", config),
        os.path.join(out_dir, f"{name}.mag"),
        f"{name} with random weights",
        config_seed(name),
    )
    model = gen._model
    ref = {
        "generator_id": bundle.generator_details.id,
        "layers": CONFIGS[name]["layers"],
        "attn_length": CONFIGS[name]["attn_length"],
        "nade_hidden": NADE_HIDDEN,
        "num_steps": NUM_STEPS,
        "cases": {},
    }
    arrays = {}
    for pname, frames in PRIMERS.items():
        enc, dec, inputs, sample, lp = biases_after(model, config, frames)
        arrays[f"{pname}/b_enc"], arrays[f"{pname}/b_dec"], arrays[f"{pname}/inputs"] = enc, dec, inputs
        arrays[f"{pname}/sample"] = sample
        primer = note_seq.PianorollSequence(events_list=frames, steps_per_quarter=4, min_pitch=21, max_pitch=108)
        entry = {"primer": [sorted(f) for f in frames], "sample_log_prob": float(lp)}
        entry["greedy"] = frames_json(model.generate_pianoroll_sequence(NUM_STEPS, copy.deepcopy(primer)))
        entry["beams"] = []
        for bsz, bf, spi in BEAMS:
            out = model.generate_pianoroll_sequence(NUM_STEPS, copy.deepcopy(primer), bsz, bf, spi)
            entry["beams"].append(
                {"beam_size": bsz, "branch_factor": bf, "steps_per_iteration": spi, "events": frames_json(out)}
            )
        ref["cases"][pname] = entry
    seq = music_pb2.NoteSequence()
    seq.tempos.add(qpm=120)
    for pitch, s, e in [(60, 0, 4), (64, 0, 4), (67, 2, 6), (48, 4, 8), (72, 6, 7)]:
        seq.notes.add(pitch=pitch, start_time=s * 0.125, end_time=e * 0.125, velocity=90)
    seq.total_time = 8 * 0.125
    ref["primer_sequence"] = json.loads(json_format.MessageToJson(seq))
    ref["sequence_generator"] = [run_generator(gen, seq, 20), run_generator(gen, seq, 16, beam=(2, 2))]
    gen.close()
    midi = []
    for path in sorted(glob.glob(os.path.join(MIDI_DIR, "*.mid"))):
        res = {"file": os.path.basename(path)}
        try:
            q = note_seq.quantize_note_sequence(note_seq.midi_file_to_note_sequence(path), 4)
        except Exception as exc:
            res["error"] = type(exc).__name__
            midi.append(res)
            continue
        rolls, _ = pianoroll_pipeline.extract_pianoroll_sequences(q)
        res["num_sequences"] = len(rolls)
        if rolls:
            res["events"] = frames_json(rolls[0])
            inputs, labels = config.encoder_decoder.encode(rolls[0])
            arrays[f"midi/{res['file']}/inputs"] = np.asarray(inputs, np.float32)
            arrays[f"midi/{res['file']}/labels"] = np.asarray(labels, np.int64)
        midi.append(res)
    ref["midi"] = midi
    np.savez_compressed(os.path.join(out_dir, "reference.npz"), **arrays)
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    print(name, "ok", {k: v.shape for k, v in weights.items()})


def main(argv):
    nade_fixture()
    for name in argv[1:] or CONFIGS:
        run_config(name)


if __name__ == "__main__":
    main(sys.argv)
