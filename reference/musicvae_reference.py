"""Make the MusicVAE reference fixtures with Magenta 2.1.4 itself (run in .venv-ref, never in CI).

Builds magenta's own MusicVAE graphs (configs cat-mel_2bar_small / cat-drums_2bar_small, with tiny
dims overridden through hparams, plus the real cat-mel_2bar_small dims), gives every variable random
values, saves them with ``tf.compat.v1.train.Saver`` and records what the NumPy engine must
reproduce: encoder mu/sigma, teacher-forced decoder logits for the same z, argmax decodes, and the
converters' tensors for every MIDI file in ../shared/compat/midi/.

Usage (from the repo root)::

    TF_USE_LEGACY_KERAS=1 .venv-ref/bin/python reference/musicvae_reference.py          # fixtures
    TF_USE_LEGACY_KERAS=1 .venv-ref/bin/python reference/musicvae_reference.py --big    # bench/out/

Outputs go to tests/fixtures/musicvae/ (``<name>.npz`` weights + records, ``<name>.ckpt.*`` for the
tiny TF checkpoints, ``converters.npz`` / ``converters.json``). ``--big`` writes random
cat-mel_2bar_big-shaped (~538 MB) and cat-mel_2bar_small-shaped checkpoints to bench/out/ for the benchmark.
"""

import argparse
import copy
import glob
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import note_seq
import numpy as np
import tensorflow.compat.v1 as tf
from magenta.contrib import seq2seq as contrib_seq2seq
from magenta.models.music_vae import configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "musicvae")
MIDI_DIR = os.path.join(FIXTURES, "midi")  # copies of ../shared/compat/midi/

# name -> (magenta config, hparam overrides, save a TF checkpoint too)
MODELS = {
    "mel_tiny": ("cat-mel_2bar_small", dict(z_size=16, enc_rnn_size=[32], dec_rnn_size=[24, 24]), True),
    "drums_tiny": ("cat-drums_2bar_small", dict(z_size=12, enc_rnn_size=[20, 16], dec_rnn_size=[24, 24, 24]), True),
    "mel_small": ("cat-mel_2bar_small", {}, False),
}


def make_config(name, overrides):
    config = copy.deepcopy(configs.CONFIG_MAP[name])
    config.hparams.batch_size = 1
    for k, v in overrides.items():
        setattr(config.hparams, k, v)
    config.data_converter.set_mode("infer")
    return config


def randomize(sess, rng):
    """Random values for every variable (magenta inits biases to 0 and mu/sigma to 1e-3 scale,
    which would leave much of the maths untested)."""
    for v in tf.global_variables():
        shape = v.shape.as_list()
        if not shape:
            continue
        if len(shape) == 1:
            val = rng.normal(0.0, 0.3, shape)
        else:
            val = rng.normal(0.0, 1.5 / np.sqrt(shape[0]), shape)
        v.load(val.astype(np.float32), sess)


def example_inputs(config, rng, n):
    """Encoder/decoder inputs: converter tensors of the compat MIDI files, then random one-hots."""
    conv = config.data_converter
    ins, outs, lens = [], [], []
    for path in sorted(glob.glob(os.path.join(MIDI_DIR, "*.mid"))):
        ns = note_seq.midi_file_to_note_sequence(path)
        t = conv.to_tensors(ns)
        for i, o in zip(t.inputs, t.outputs):
            if len(ins) < n // 2:
                ins.append(np.asarray(i, np.float32))
                outs.append(np.asarray(o, np.float32))
                lens.append(len(i))
    T = config.hparams.max_seq_len
    while len(ins) < n:
        idx = rng.integers(0, conv.output_depth, T)
        o = np.eye(conv.output_depth, dtype=np.float32)[idx]
        if conv.input_depth == conv.output_depth:
            i = o
        else:  # drums roll input: 9 bits of the class index + NOR bit
            bits = ((idx[:, None] >> np.arange(conv.input_depth - 1)) & 1).astype(np.float32)
            i = np.concatenate([bits, (bits.sum(1, keepdims=True) == 0).astype(np.float32)], 1)
        ins.append(i)
        outs.append(o)
        lens.append(T)
    lens[-1] = T - 7  # one shorter row exercises sequence_length masking in the encoder
    return np.stack(ins), np.stack(outs), np.array(lens, np.int32)


def build_and_record(name, cfg_name, overrides, save_ckpt, out_dir, seed=1234, n=6):
    config = make_config(cfg_name, overrides)
    hp = config.hparams
    conv = config.data_converter
    rng = np.random.default_rng(seed)
    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        model = config.model
        model.build(hp, conv.output_depth, is_training=False)
        z_ph = tf.placeholder(tf.float32, [n, hp.z_size])
        x_ph = tf.placeholder(tf.float32, [n, None, conv.input_depth])
        y_ph = tf.placeholder(tf.float32, [n, None, conv.output_depth])
        len_ph = tf.placeholder(tf.int32, [n])
        q_z = model.encode(x_ph, len_ph)
        mu, sigma = q_z.loc, q_z.scale.diag
        with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
            # Teacher forcing: input at step t = output one-hot of step t-1 (zeros first) + z.
            x_in = tf.pad(y_ph[:, :-1], [(0, 0), (1, 0), (0, 0)])
            rep_z = tf.tile(tf.expand_dims(z_ph, 1), [1, tf.shape(x_in)[1], 1])
            x_in = tf.concat([x_in, rep_z], axis=2)
            helper = contrib_seq2seq.TrainingHelper(x_in, len_ph)
            tf_res = model.decoder._decode(z_ph, helper=helper, input_shape=x_in.shape[2:])
            # Greedy decoding: magenta's own sample graph with an argmax sampler.
            depth = conv.output_depth
            model.decoder._sample = lambda out, temperature: tf.one_hot(tf.argmax(out, -1), depth)
            greedy, greedy_res = model.decoder.sample(n, max_length=hp.max_seq_len, z=z_ph, temperature=1.0)
        sess = tf.Session(config=tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1))
        sess.run(tf.global_variables_initializer())
        randomize(sess, rng)
        x, y, lens = example_inputs(config, rng, n)
        z = rng.normal(0, 1, (n, hp.z_size)).astype(np.float32)
        feed = {x_ph: x, y_ph: y, len_ph: lens, z_ph: z}
        mu_v, sigma_v, logits, g, g_logits = sess.run(
            [mu, sigma, tf_res.rnn_output, greedy, greedy_res.rnn_output], feed
        )
        variables = {v.name[:-2]: sess.run(v) for v in tf.global_variables()}
        if save_ckpt:
            saver = tf.train.Saver()
            saver.save(sess, os.path.join(out_dir, f"{name}.ckpt"), write_meta_graph=False, write_state=False)
        sess.close()
    greedy_seqs = conv.from_tensors(g)
    record = {
        "inputs": x,
        "targets": y,
        "lengths": lens,
        "z": z,
        "mu": mu_v,
        "sigma": sigma_v,
        "logits": logits,
        "greedy": g.argmax(-1).astype(np.int32),
        "greedy_logits": g_logits,
    }
    np.savez(
        os.path.join(out_dir, f"{name}.npz"),
        **{f"var/{k}": v for k, v in variables.items()},
        **{f"ref/{k}": v for k, v in record.items()},
    )
    meta = {
        "config": cfg_name,
        "hparams": {k: getattr(hp, k) for k in ("z_size", "enc_rnn_size", "dec_rnn_size", "max_seq_len")},
        "greedy_sequences": [note_seq_to_list(s) for s in greedy_seqs],
    }
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(name, {k: v.shape for k, v in record.items()}, file=sys.stderr)


def note_seq_to_list(seq):
    return {
        "notes": [
            [n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6), bool(n.is_drum)] for n in seq.notes
        ],
        "total_time": seq.total_time,
        "qpm": seq.tempos[0].qpm if seq.tempos else None,
    }


def synthetic_sequences(seed=99):
    """Edge cases the compat MIDI files lack: rests, chords, out-of-range pitches, other programs,
    3/4 time, tempo changes, unmapped drum pitches. Deterministic, stored as NoteSequence JSON."""
    rng = np.random.default_rng(seed)
    out = {}

    def seq(qpm=120.0, num=4):
        s = note_seq.NoteSequence(ticks_per_quarter=220)
        s.tempos.add(qpm=qpm)
        s.time_signatures.add(numerator=num, denominator=4)
        return s

    def add(s, pitch, start, end, **kw):
        s.notes.add(
            pitch=int(pitch), velocity=int(kw.pop("velocity", 90)), start_time=float(start), end_time=float(end), **kw
        )
        s.total_time = max(s.total_time, float(end))

    step = 0.125  # a 16th at 120 qpm
    for bars in (1, 2, 3, 4):
        s = seq()
        t = 0
        while t < bars * 16:
            dur = int(rng.integers(1, 5))
            if rng.random() < 0.8:
                add(s, rng.integers(48, 84), t * step, (t + dur) * step)
            t += dur + int(rng.integers(0, 3))
        out[f"mono_{bars}bar"] = s
    s = seq()
    for t in range(0, 32, 4):
        for p in (60, 64, 67):
            add(s, p + t % 5, t * step, (t + 4) * step)
    out["chords_2bar"] = s
    s = seq()
    for t in range(0, 32, 2):
        add(s, [15, 60, 110, 72][t % 4], t * step, (t + 2) * step)
    out["out_of_range_2bar"] = s
    s = seq()
    for t in range(0, 32, 2):
        add(s, 60 + t % 12, t * step, (t + 2) * step, program=40)
    out["program40_2bar"] = s
    s = seq(num=3)
    for t in range(0, 36, 2):
        add(s, 60 + t % 7, t * step, (t + 2) * step)
    out["waltz_3bar"] = s
    s = seq(qpm=90.0)
    for t in range(0, 48, 2):
        add(s, 62 + t % 9, t * (60 / 90 / 4), (t + 2) * (60 / 90 / 4))
    s.tempos.add(qpm=140.0, time=24 * (60 / 90 / 4))
    out["tempo_change_3bar"] = s
    s = seq(qpm=100.0)
    for t in range(40):  # slightly off-grid onsets
        add(s, 55 + (t * 5) % 20, t * 0.15 + 0.01, t * 0.15 + 0.12)
    out["offgrid_qpm100"] = s
    drum_pitches = [36, 35, 38, 40, 42, 44, 46, 45, 48, 50, 49, 51, 53, 39, 56, 22, 26, 13, 100]
    for bars in (1, 2, 4):
        s = seq()
        for t in range(bars * 16):
            for p in rng.choice(drum_pitches, size=int(rng.integers(0, 4)), replace=False):
                add(s, p, t * step, (t + 1) * step, is_drum=True, instrument=9)
        out[f"drums_{bars}bar"] = s
    s = seq()
    for t in range(32):
        add(s, 36 + (t % 3) * 2, t * step, (t + 1) * step, is_drum=False)
    out["drums_not_is_drum"] = s
    return out


def record_converters(out_dir):
    """Tensors of magenta's two converters (as configured in configs.py) for each compat MIDI file
    and for :func:`synthetic_sequences`."""
    from google.protobuf import json_format

    arrays, meta = {}, {}
    synth = synthetic_sequences()
    meta["synthetic"] = {k: json_format.MessageToDict(v) for k, v in synth.items()}
    sources = [
        (os.path.basename(p), lambda p=p: note_seq.midi_file_to_note_sequence(p))
        for p in sorted(glob.glob(os.path.join(MIDI_DIR, "*.mid")))
    ]
    sources += [(f"synthetic:{k}", lambda v=v: copy.deepcopy(v)) for k, v in synth.items()]
    convs = {
        "melody": copy.deepcopy(configs.CONFIG_MAP["cat-mel_2bar_small"].data_converter),
        "drums": copy.deepcopy(configs.CONFIG_MAP["cat-drums_2bar_small"].data_converter),
    }
    for kind, conv in convs.items():
        conv.set_mode("infer")
        for mode, max_t in (("default", conv.max_tensors_per_notesequence), ("all", None)):
            conv.max_tensors_per_notesequence = max_t
            for fname, load in sources:
                key = f"{kind}/{mode}/{fname}"
                try:
                    t = conv.to_tensors(load())
                except Exception as exc:  # record failures too
                    meta[key] = {"error": f"{type(exc).__name__}: {exc}"}
                    continue
                meta[key] = {"count": len(t.inputs), "lengths": [int(x) for x in t.lengths]}
                if t.inputs:
                    arrays[f"{key}/inputs"] = np.stack([np.asarray(i, np.uint8) for i in t.inputs])
                    arrays[f"{key}/outputs"] = np.stack([np.asarray(o, np.uint8) for o in t.outputs])
                    if mode == "all":
                        back = conv.from_tensors(np.stack(t.outputs).astype(np.float32))
                        meta[key]["from_tensors"] = [note_seq_to_list(s) for s in back]
    np.savez_compressed(os.path.join(out_dir, "converters.npz"), **arrays)
    with open(os.path.join(out_dir, "converters.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print(
        "converters:", {k: v.get("count", v.get("error")) for k, v in meta.items() if k != "synthetic"}, file=sys.stderr
    )


def make_bench_checkpoint(config_name, out_dir, seed=7):
    """Random weights in the exact shapes of a magenta config, saved as a TF checkpoint."""
    os.makedirs(out_dir, exist_ok=True)
    config = make_config(config_name, {})
    with tf.Graph().as_default():
        model = config.model
        model.build(config.hparams, config.data_converter.output_depth, is_training=False)
        z_ph = tf.placeholder(tf.float32, [1, config.hparams.z_size])
        model.sample(1, max_length=32, z=z_ph, temperature=1.0)
        x_ph = tf.placeholder(tf.float32, [1, None, config.data_converter.input_depth])
        model.encode(x_ph, tf.placeholder(tf.int32, [1]))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            randomize(sess, np.random.default_rng(seed))
            tf.train.Saver().save(sess, os.path.join(out_dir, "model.ckpt"), write_meta_graph=False)
    print(config_name, "checkpoint written to", out_dir, file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--big",
        action="store_true",
        help="write the bench checkpoints (cat-mel_2bar_big and cat-mel_2bar_small shapes) to bench/out/",
    )
    ap.add_argument("--only", nargs="*", help="subset of fixture names (mel_tiny drums_tiny mel_small converters)")
    args = ap.parse_args()
    if args.big:
        for name in ("cat-mel_2bar_small", "cat-mel_2bar_big"):
            make_bench_checkpoint(name, os.path.join(ROOT, "bench", "out", name))
        return
    os.makedirs(FIXTURES, exist_ok=True)
    only = set(args.only or list(MODELS) + ["converters"])
    if "converters" in only:
        record_converters(FIXTURES)
    for name, (cfg, over, ckpt) in MODELS.items():
        if name in only:
            build_and_record(name, cfg, over, ckpt, FIXTURES)


if __name__ == "__main__":
    main()
