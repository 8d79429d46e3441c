"""Regenerate the checkpoint-store fixtures with TensorFlow and magenta themselves.

Run in the reference env (never in CI):
    TF_USE_LEGACY_KERAS=1 .venv-ref/bin/python reference/make_checkpoint_fixtures.py

Writes tests/fixtures/checkpoints/:
  v2/model.ckpt.{index,data-00000-of-00001}   tf.compat.v1 Saver, V2 tensor bundle (mixed dtypes, Adam slots)
  v2sharded/ckpt-1.*                          tf.train.Checkpoint split over several data shards
  v1/model.ckpt                               tf.compat.v1 Saver, write_version=V1 (TensorSliceProto table)
  basic_rnn_tiny.mag                          magenta's own create_bundle_file on a tiny melody_rnn basic_rnn
  *.expected.npz                              what tf.train.load_checkpoint reads back (every tensor)
  expected.json                               names, dtypes, shapes + the .mag's generator id / descriptions
"""

import json
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "checkpoints"
RNG = np.random.default_rng(20261124)


def read_back(prefix):
    """Every tensor exactly as TensorFlow's own checkpoint reader returns it."""
    reader = tf.train.load_checkpoint(str(prefix))
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    arrays, listing = {}, {}
    for name in sorted(shapes):
        listing[name] = {"dtype": dtypes[name].name, "shape": list(shapes[name])}
        try:
            value = reader.get_tensor(name)
        except tf.errors.UnimplementedError:
            listing[name]["tf_cannot_read"] = True  # e.g. half in V1: TF itself refuses
            continue
        arrays[name] = np.asarray(value)
    return arrays, listing


def save_npz(path, arrays):
    # npz keys may not contain '/', so store an index of names.
    names = sorted(arrays)
    np.savez(path, __names__=np.array(names), **{f"t{i}": arrays[n] for i, n in enumerate(names)})


def graph_vars():
    """A small graph whose variables cover the dtypes and names the readers must handle."""
    v = tf.compat.v1
    specs = {
        "encoder/mu/kernel": RNG.standard_normal((7, 5)).astype(np.float32),
        "encoder/mu/bias": RNG.standard_normal(5).astype(np.float32),
        "decoder/multi_rnn_cell/cell_0/lstm_cell/kernel": RNG.standard_normal((9, 16)).astype(np.float32),
        "decoder/multi_rnn_cell/cell_0/lstm_cell/kernel/Adam": RNG.standard_normal((9, 16)).astype(np.float32),
        "decoder/multi_rnn_cell/cell_0/lstm_cell/kernel/Adam_1": RNG.standard_normal((9, 16)).astype(np.float32),
        "beta1_power": np.float32(0.9),
        "beta2_power": np.float32(0.999),
        "global_step": np.int64(123456789012),
        "extra/double": RNG.standard_normal((3, 2)).astype(np.float64),
        "extra/int32": RNG.integers(-1000, 1000, (4,)).astype(np.int32),
        "extra/half": RNG.standard_normal((2, 3)).astype(np.float16),
        "extra/bool": np.array([True, False, True]),
        "extra/empty": np.zeros((0, 4), np.float32),
        "extra/big": RNG.standard_normal((64, 70)).astype(np.float32),
    }
    variables = [
        v.get_variable(name, initializer=tf.constant(value), use_resource=False) for name, value in specs.items()
    ]
    return variables


def make_v1_v2():
    v = tf.compat.v1
    for version, sub in ((v.train.SaverDef.V2, "v2"), (v.train.SaverDef.V1, "v1")):
        d = OUT / sub
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        with tf.Graph().as_default():
            variables = graph_vars()
            saver = v.train.Saver(variables, sharded=False, write_version=version)
            with v.Session() as sess:
                sess.run(v.global_variables_initializer())
                saver.save(sess, str(d / "model.ckpt"), write_meta_graph=False, write_state=False)
        arrays, listing = read_back(d / "model.ckpt")
        save_npz(OUT / f"{sub}.expected.npz", arrays)
        yield sub, listing


def make_v2_sharded():
    d = OUT / "v2sharded"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    tensors = {f"layer{i}": tf.Variable(RNG.standard_normal((32, 40)).astype(np.float32)) for i in range(4)}
    ckpt = tf.train.Checkpoint(**tensors)
    policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=6000)
    options = tf.train.CheckpointOptions(experimental_sharding_callback=policy)
    path = ckpt.write(str(d / "ckpt-1"), options=options)
    arrays, listing = read_back(path)
    save_npz(OUT / "v2sharded.expected.npz", arrays)
    return listing


def make_mag():
    from magenta.models.melody_rnn import melody_rnn_model, melody_rnn_sequence_generator
    from note_seq.protobuf import generator_pb2

    config = melody_rnn_model.default_configs["basic_rnn"]
    config.hparams.rnn_layer_sizes = [8, 8]
    config.hparams.batch_size = 1
    model = melody_rnn_model.MelodyRnnModel(config)
    v = tf.compat.v1
    tmpdir = tempfile.mkdtemp()
    # Train-free "checkpoint": the generation graph with random (not zero) weights, saved by TF, which
    # magenta's generator then restores and writes into the bundle with its own code.
    with tf.Graph().as_default():
        model._build_graph_for_generation()
        with v.Session() as sess:
            sess.run(v.global_variables_initializer())
            for var in v.global_variables():
                if var.dtype.base_dtype == tf.float32:
                    sess.run(var.assign(RNG.standard_normal(var.shape.as_list()).astype(np.float32)))
            v.train.Saver().save(sess, os.path.join(tmpdir, "random.ckpt"), write_meta_graph=False)
    generator = melody_rnn_sequence_generator.MelodyRnnSequenceGenerator(
        model=model,
        details=config.details,
        steps_per_quarter=config.steps_per_quarter,
        checkpoint=os.path.join(tmpdir, "random.ckpt"),
    )
    mag = OUT / "basic_rnn_tiny.mag"
    generator.create_bundle_file(str(mag), "Tiny basic_rnn with random weights (test fixture)")
    shutil.rmtree(tmpdir)

    bundle = generator_pb2.GeneratorBundle()
    bundle.ParseFromString(mag.read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = pathlib.Path(tmp) / "model.ckpt"
        ckpt.write_bytes(bundle.checkpoint_file[0])
        arrays, listing = read_back(ckpt)
    save_npz(OUT / "basic_rnn_tiny.expected.npz", arrays)
    return listing, {
        "generator_id": bundle.generator_details.id,
        "generator_description": bundle.generator_details.description,
        "bundle_description": bundle.bundle_details.description,
        "num_checkpoint_files": len(bundle.checkpoint_file),
        "checkpoint_magic": bundle.checkpoint_file[0][-8:].hex(),
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    expected = {"tensorflow": tf.__version__}
    for sub, listing in make_v1_v2():
        expected[sub] = listing
    expected["v2sharded"] = make_v2_sharded()
    listing, info = make_mag()
    expected["basic_rnn_tiny.mag"] = {"tensors": listing, **info}
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(p.relative_to(OUT), p.stat().st_size)


if __name__ == "__main__":
    main()
