"""What every events-RNN reference script does the same way (run in .venv-ref, never by the service).

The MelodyRNN, ImprovRNN, PerformanceRNN, PolyphonyRNN and Pianoroll RNN-NADE parity fixtures are made
alike: magenta's own generation graph with random weights is saved as a checkpoint, written into a real
``.mag`` bundle by the sequence generator's ``create_bundle_file``, and the bundle is read back (its
variables into ``weights.npz``, and a generator initialized from it); beam-search results are recorded
with the log-likelihood score magenta's ``beam_search`` returns. Those steps live here once.

Imported by the scripts after they have set TF_USE_LEGACY_KERAS and disabled TF2 behaviour."""

import os
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf
from magenta.models.shared import sequence_generator_bundle

ONE_THREAD = tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)


def config_seed(name: str) -> int:
    """The seed of a config's random weights: the same for a name in every run."""
    return sum(map(ord, name))


def random_checkpoint(build_graph, path, seed, bias_value=None):
    """Build a generation graph with ``build_graph()``, give it random weights and save it at ``path``.

    Variables get TF's seeded initializers; biases start at zero there, so each gets uniform(-0.5, 0.5)
    values (drawn in graph order from ``RandomState(seed)``) for the tests to see them used.
    ``bias_value(name, value)`` may change a drawn bias (PolyphonyRNN makes STEP_END likelier)."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(seed)
        build_graph()
        rng = np.random.RandomState(seed)
        with tf.Session(config=ONE_THREAD) as sess:
            sess.run(tf.global_variables_initializer())
            for var in tf.global_variables():
                if "bias" in var.op.name:
                    value = rng.uniform(-0.5, 0.5, var.shape).astype(np.float32)
                    if bias_value is not None:
                        value = bias_value(var.op.name, value)
                    sess.run(var.assign(value))
            tf.train.Saver().save(sess, path)


def bundled_generator(make_generator, build_graph, mag_path, description, seed, bias_value=None):
    """Random weights -> ``create_bundle_file(mag_path)`` -> the bundle read back.

    ``make_generator(checkpoint=..., bundle=...)`` makes the config's sequence generator. Writes
    ``weights.npz`` (every variable of the bundle's checkpoint) beside the bundle and returns the
    bundle, a generator initialized from it (as a user of the published bundle would load it) and the
    variables."""
    ckpt = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    random_checkpoint(build_graph, ckpt, seed, bias_value)
    writer = make_generator(checkpoint=ckpt)
    writer.create_bundle_file(mag_path, description)
    writer.close()

    bundle = sequence_generator_bundle.read_bundle_file(mag_path)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "model.ckpt"), "wb") as f:
            f.write(bundle.checkpoint_file[0])
        reader = tf.train.load_checkpoint(os.path.join(d, "model.ckpt"))
        weights = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
    np.savez(os.path.join(os.path.dirname(mag_path), "weights.npz"), **weights)

    gen = make_generator(bundle=bundle)
    gen.initialize()
    return bundle, gen, weights


def with_beam_score(run, seed):
    """``run()`` after ``np.random.seed(seed)``, with the score of the beam search it made.

    Magenta's generators drop the beam's log-likelihood; the parity tests compare it too, so
    ``events_rnn_model.beam_search`` is wrapped for the call to catch it. Returns (result, score)."""
    import magenta.models.shared.events_rnn_model as erm

    captured = {}
    original = erm.beam_search

    def spy(**kwargs):
        seq, state, score = original(**kwargs)
        captured["score"] = float(score)
        return seq, state, score

    erm.beam_search = spy
    try:
        np.random.seed(seed)
        result = run()
    finally:
        erm.beam_search = original
    return result, captured["score"]
