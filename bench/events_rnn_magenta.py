"""Magenta's side of bench_events_rnn.py; runs in the reference environment (TF + magenta 2.1.4).

    TF_USE_LEGACY_KERAS=1 .venv-ref/bin/python bench/events_rnn_magenta.py OUT_DIR --serve

Writes OUT_DIR/performance_with_dynamics.mag (3 x 512 LSTM) and OUT_DIR/polyphony_rnn.mag (3 x 256 LSTM,
the STEP_END output bias raised by 5 so that random weights fill steps at about a trained model's rate),
random weights, batch size 1, by magenta's own create_bundle_file; prints one JSON line with the bundles
and requests, then times one run of the case named on each stdin line (seeded with the given seed):

- ``performance``: PerformanceRnnSequenceGenerator from silence to 30 s (performance_rnn_generate
  --num_steps=3000), temperature 1;
- ``polyphony``: PolyphonyRnnSequenceGenerator on a one-bar two-voice primer to 256 steps (the
  generator's defaults: inject the primer, not conditioned on it), temperature 1.
"""

import copy
import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()
tf.logging.set_verbosity(tf.logging.ERROR)

from google.protobuf import json_format  # noqa: E402
from magenta.models.performance_rnn import performance_model, performance_sequence_generator  # noqa: E402
from magenta.models.polyphony_rnn import polyphony_model, polyphony_sequence_generator  # noqa: E402
from magenta.models.shared import events_rnn_graph  # noqa: E402
from note_seq.protobuf import generator_pb2, music_pb2  # noqa: E402

PERFORMANCE_STEPS = 3000  # 10 ms steps: 30 s
POLYPHONY_STEPS = 256  # 16th steps


def _checkpoint(config, path, seed, step_end_bias=False):
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(seed)
        events_rnn_graph.get_build_graph_fn("generate", config)()
        rng = np.random.RandomState(seed)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for var in tf.global_variables():
                if "bias" in var.op.name:
                    value = rng.uniform(-0.5, 0.5, var.shape).astype(np.float32)
                    if step_end_bias and var.op.name.startswith("fully_connected"):
                        value[2] += 5.0
                    sess.run(var.assign(value))
            tf.train.Saver().save(sess, path)


def performance_generator(out_dir):
    config = copy.deepcopy(performance_model.default_configs["performance_with_dynamics"])
    config.hparams.batch_size = 1
    path = os.path.join(out_dir, "performance_with_dynamics.mag")

    def make(**kw):
        return performance_sequence_generator.PerformanceRnnSequenceGenerator(
            performance_model.PerformanceRnnModel(config),
            config.details,
            steps_per_second=100,
            num_velocity_bins=32,
            fill_generate_section=False,
            **kw,
        )

    if not os.path.exists(path):
        ckpt = os.path.join(out_dir, "perf_ckpt", "model.ckpt")
        os.makedirs(os.path.dirname(ckpt), exist_ok=True)
        _checkpoint(config, ckpt, 1)
        gen = make(checkpoint=ckpt)
        gen.create_bundle_file(path, "performance_with_dynamics, random weights")
        gen.close()
    from magenta.models.shared import sequence_generator_bundle

    gen = make(bundle=sequence_generator_bundle.read_bundle_file(path))
    gen.initialize()
    return gen, path


def polyphony_generator(out_dir):
    config = copy.deepcopy(polyphony_model.default_configs["polyphony"])
    config.hparams.batch_size = 1
    config.hparams.dropout_keep_prob = 1.0
    path = os.path.join(out_dir, "polyphony_rnn.mag")

    def make(**kw):
        return polyphony_sequence_generator.PolyphonyRnnSequenceGenerator(
            polyphony_model.PolyphonyRnnModel(config), config.details, steps_per_quarter=4, **kw
        )

    if not os.path.exists(path):
        ckpt = os.path.join(out_dir, "poly_ckpt", "model.ckpt")
        os.makedirs(os.path.dirname(ckpt), exist_ok=True)
        _checkpoint(config, ckpt, 2, step_end_bias=True)
        gen = make(checkpoint=ckpt)
        gen.create_bundle_file(path, "polyphony, random weights")
        gen.close()
    from magenta.models.shared import sequence_generator_bundle

    gen = make(bundle=sequence_generator_bundle.read_bundle_file(path))
    gen.initialize()
    return gen, path


def poly_primer():
    seq = music_pb2.NoteSequence()
    seq.tempos.add(qpm=120)
    seq.ticks_per_quarter = 220
    for pitch, s, e in [(48, 0, 8), (67, 0, 4), (69, 4, 8), (43, 8, 16), (71, 8, 12), (72, 12, 16)]:
        seq.notes.add(pitch=pitch, start_time=s * 0.125, end_time=e * 0.125, velocity=80)
    seq.total_time = 2.0
    return seq


def main(argv):
    out_dir = argv[1]
    os.makedirs(out_dir, exist_ok=True)
    perf, perf_path = performance_generator(out_dir)
    poly, poly_path = polyphony_generator(out_dir)
    primer = poly_primer()
    print(
        json.dumps(
            {
                "performance": perf_path,
                "polyphony": poly_path,
                "performance_steps": PERFORMANCE_STEPS,
                "polyphony_steps": POLYPHONY_STEPS,
                "poly_primer": json.loads(json_format.MessageToJson(primer)),
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        case, seed = line.split()
        opts = generator_pb2.GeneratorOptions()
        opts.args["temperature"].float_value = 1.0
        np.random.seed(int(seed))
        t = time.perf_counter()
        if case == "performance":
            opts.generate_sections.add(start_time=0.0, end_time=PERFORMANCE_STEPS / 100.0)
            out = perf.generate(music_pb2.NoteSequence(), opts)
        else:
            opts.generate_sections.add(start_time=primer.total_time, end_time=POLYPHONY_STEPS * 0.125)
            out = poly.generate(primer, opts)
        elapsed = time.perf_counter() - t
        print(json.dumps({"seconds": elapsed, "notes": len(out.notes)}), flush=True)


if __name__ == "__main__":
    main(sys.argv)
