"""Magenta's side of bench_melody_rnn.py; runs in the reference environment (TF + magenta 2.1.4).

    TF_USE_LEGACY_KERAS=1 .venv-ref/bin/python bench/melody_rnn_magenta.py OUT_DIR CONFIG [REPEATS] [--serve]

Writes OUT_DIR/CONFIG.mag (random weights at the published layer sizes, batch size 1, made by magenta's
own create_bundle_file), then times magenta's sequence generator loaded from that bundle (and, for
beam search, from a batch-8 bundle of the same weights, as drums_rnn_generate sizes its batch to
beam_size x branch_factor, and from a batch-128 bundle, the configs' default hparams batch size). Prints one JSON object with the (median, min) seconds of each case; with
--serve it prints the set-up JSON, then times one run of the case named on each stdin line.
"""

import copy
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()
tf.logging.set_verbosity(tf.logging.ERROR)

import note_seq  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from magenta.models.drums_rnn import drums_rnn_model, drums_rnn_sequence_generator  # noqa: E402
from magenta.models.melody_rnn import melody_rnn_model, melody_rnn_sequence_generator  # noqa: E402
from magenta.models.shared import events_rnn_graph, sequence_generator_bundle  # noqa: E402
from note_seq.protobuf import generator_pb2  # noqa: E402

PRIMER_MELODY = [60, -2, 60, -2, 67, -2, 67, -2, 69, -2, 69, -2, 67, -2, -2, -2]
PRIMER_DRUMS = [[36], [], [42], [], [38, 42], [], [42], [], [36], [36], [42], [], [38, 42], [], [42, 46], [42]]
GENERATE_STEPS = 64  # 4 bars of 16ths after a 1-bar primer


def _config(name, batch_size):
    drums = name == "drum_kit_rnn"
    base = drums_rnn_model.default_configs["drum_kit"] if drums else melody_rnn_model.default_configs[name]
    config = copy.deepcopy(base)
    config.hparams.batch_size = batch_size
    config.hparams.dropout_keep_prob = 1.0
    return config, drums


def _generator(name, config, drums, **kw):
    if drums:
        return drums_rnn_sequence_generator.DrumsRnnSequenceGenerator(
            drums_rnn_model.DrumsRnnModel(config), config.details, steps_per_quarter=4, **kw
        )
    return melody_rnn_sequence_generator.MelodyRnnSequenceGenerator(
        melody_rnn_model.MelodyRnnModel(config), config.details, steps_per_quarter=4, **kw
    )


def make_bundles(out_dir, name):
    paths = {b: os.path.join(out_dir, f"{name}.b{b}.mag") for b in (1, 8, 128)}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    ckpt = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    config, drums = _config(name, 1)
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(1)
        events_rnn_graph.get_build_graph_fn("generate", config)()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, ckpt)
    for b, path in paths.items():
        config, drums = _config(name, b)
        gen = _generator(name, config, drums, checkpoint=ckpt)
        gen.create_bundle_file(path, f"{name} random weights, published sizes (batch {b})")
        gen.close()
    return paths


def _median_time(fn, repeats):
    """(median, min) seconds over ``repeats`` runs after a warm-up (graph load, first session run)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(np.min(times))


def main(out_dir, name, repeats=5, serve=False):
    os.makedirs(out_dir, exist_ok=True)
    paths = make_bundles(out_dir, name)
    _, drums = _config(name, 1)
    primer = note_seq.DrumTrack([frozenset(p) for p in PRIMER_DRUMS]) if drums else note_seq.Melody(PRIMER_MELODY)
    seq = primer.to_sequence(qpm=120)
    step = 60.0 / 120 / 4
    primer_steps = len(PRIMER_MELODY) + 1  # the primer sequence lasts one step past its last note
    seq.total_time = primer_steps * step

    def options(beam=None):
        opts = generator_pb2.GeneratorOptions()
        # magenta starts at floor(start * steps_per_second) + 1: half a step early = right at the end.
        opts.generate_sections.add(
            start_time=(primer_steps - 0.5) * step, end_time=(primer_steps + GENERATE_STEPS) * step
        )
        opts.args["temperature"].float_value = 1.0
        if beam:
            opts.args["beam_size"].int_value, opts.args["branch_factor"].int_value = beam
        return opts

    result = {
        "config": name,
        "bundle": paths[1],
        "generate_steps": GENERATE_STEPS,
        "primer_sequence": json_format.MessageToDict(seq),
        "length": primer_steps + GENERATE_STEPS,
    }
    config, _ = _config(name, 1)
    gen = _generator(name, config, drums, bundle=sequence_generator_bundle.read_bundle_file(paths[1]))
    config8, _ = _config(name, 8)
    gen8 = _generator(name, config8, drums, bundle=sequence_generator_bundle.read_bundle_file(paths[8]))
    config128, _ = _config(name, 128)
    gen128 = _generator(name, config128, drums, bundle=sequence_generator_bundle.read_bundle_file(paths[128]))
    opts, beam_opts = options(), options((4, 2))
    cases = {
        "n1": lambda: gen.generate(seq, opts),
        "n8": lambda: [gen.generate(seq, opts) for _ in range(8)],  # melody_rnn_generate's num_outputs loop
        "beam_4x2": lambda: gen8.generate(seq, beam_opts),
        # The configs' own hparams batch size (128), which a bundle saved with default hparams keeps.
        "n1_b128": lambda: gen128.generate(seq, opts),
    }
    for fn in cases.values():
        fn()  # warm-up: graph import, first session runs
    if serve:
        # One timed run per request line, so the caller can interleave with its own runs.
        print(json.dumps(result), flush=True)
        for line in sys.stdin:
            case = line.strip()
            if not case:
                break
            t = time.perf_counter()
            cases[case]()
            print(json.dumps({case: time.perf_counter() - t}), flush=True)
    else:
        for key, fn in cases.items():
            result[key] = _median_time(fn, repeats)
        print(json.dumps(result))
    gen.close()
    gen8.close()
    gen128.close()


if __name__ == "__main__":
    serve = "--serve" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--serve"]
    main(args[0], args[1], int(args[2]) if len(args) > 2 else 5, serve=serve)
