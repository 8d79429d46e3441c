"""Parity fixtures for the MusicVAE architectures beyond the flat 2-bar model, made with Magenta 2.1.4
itself (run in .venv-ref, never in CI): hierarchical decoders (conductor levels, with and without
autoregression), hierarchical encoders, trio decoders (MultiOutCategoricalLstmDecoder,
SplitMultiOutLstmDecoder under a conductor) and chord conditioning (control inputs).

Each fixture builds one of magenta's own configs (configs.py, small dims through hparams), gives every
variable random values and records what the NumPy engine must reproduce on those weights: encoder
mu/sigma, teacher-forced decoder outputs for the same z (``reconstruction_loss``'s rnn_output, inputs
shifted by one step across segments as ``MusicVAE._compute_model_loss`` does), and argmax decoding
(magenta's sample graph with argmax samplers, per output split).

Usage (from the repo root)::

    TF_USE_LEGACY_KERAS=1 .venv-ref/bin/python reference/musicvae_hier_reference.py [--only NAME ...]

Writes tests/fixtures/musicvae/<name>.npz (``var/*`` weights, ``ref/*`` records) and <name>.json; the
``hierdec_mel`` weights are also saved as a TF checkpoint (``hierdec_mel.ckpt.*``). ``converters`` records
magenta's mel_16bar and trio converters on the compat MIDI files and synthetic trios
(``converters_hier.npz`` / ``.json``).
"""

import argparse
import copy
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow.compat.v1 as tf
from magenta.models.music_vae import configs, lstm_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "musicvae")


def _mel_4bar(autoregressive):
    """A 4-bar hierarchical melody config as the Magenta.js mel_4bar models are shaped (4 segments of
    16 steps); ``autoregressive`` keeps the conductor's autoregression (its inputs are the core
    decoder's final states), which no published config uses but the decoder supports."""
    c = copy.deepcopy(configs.CONFIG_MAP["hierdec-mel_16bar"])
    c.model._decoder = lstm_models.HierarchicalLstmDecoder(
        lstm_models.CategoricalLstmDecoder(), level_lengths=[4, 16], disable_autoregression=not autoregressive
    )
    c.model._encoder = lstm_models.HierarchicalLstmEncoder(lstm_models.BidirectionalLstmEncoder, [16, 4])
    c.hparams.max_seq_len = 64
    return c


# name -> (config or factory, hparam overrides, save a TF checkpoint too)
MODELS = {
    "hierdec_mel": ("hierdec-mel_16bar", dict(z_size=16, enc_rnn_size=[24, 16], dec_rnn_size=[20, 20]), True),
    "hier_mel": ("hier-mel_16bar", dict(z_size=12, enc_rnn_size=[16], dec_rnn_size=[20, 18]), False),
    "flat_mel16": ("flat-mel_16bar", dict(z_size=12, enc_rnn_size=[16], dec_rnn_size=[20, 20]), False),
    "hier_mel4_ar": (lambda: _mel_4bar(True), dict(z_size=10, enc_rnn_size=[12], dec_rnn_size=[14, 14]), False),
    "hierdec_trio": ("hierdec-trio_16bar", dict(z_size=16, enc_rnn_size=[16], dec_rnn_size=[20, 20]), False),
    "hier_trio": ("hier-trio_16bar", dict(z_size=12, enc_rnn_size=[14], dec_rnn_size=[16, 16]), False),
    "flat_trio": ("flat-trio_16bar", dict(z_size=12, enc_rnn_size=[16], dec_rnn_size=[20, 20]), False),
    "mel_chords": ("cat-mel_2bar_med_chords", dict(z_size=12, enc_rnn_size=[16], dec_rnn_size=[20, 20, 20]), False),
    "groove_2bar": ("groovae_2bar_humanize", dict(z_size=12, enc_rnn_size=[16], dec_rnn_size=[20, 20]), True),
    "groove_hits": ("groovae_2bar_hits_control_tfds", dict(z_size=10, enc_rnn_size=[14], dec_rnn_size=[16, 16]), False),
}

GROOVE = ("groovae_2bar_humanize", "groovae_2bar_hits_control_tfds")
NADE = ("nade-drums_2bar_reduced", "nade-drums_2bar_full")
MULTI = ("hier-multiperf_vel_1bar_med", "hier-multiperf_vel_1bar_med_chords")
MODELS["multiperf"] = ("hier-multiperf_vel_1bar_med", dict(z_size=12, enc_rnn_size=[16], dec_rnn_size=[20, 20]), False)
MODELS["multiperf_chords"] = (
    "hier-multiperf_vel_1bar_med_chords",
    dict(z_size=10, enc_rnn_size=[14], dec_rnn_size=[16]),
    False,
)
MODELS["nade_reduced"] = (
    "nade-drums_2bar_reduced",
    dict(z_size=12, enc_rnn_size=[16], dec_rnn_size=[20, 20], nade_num_hidden=8),
    True,
)
MODELS["nade_full"] = (
    "nade-drums_2bar_full",
    dict(z_size=10, enc_rnn_size=[14], dec_rnn_size=[16], nade_num_hidden=6),
    False,
)


def make_config(spec, overrides, n):
    config = copy.deepcopy(configs.CONFIG_MAP[spec]) if isinstance(spec, str) else spec()
    config.hparams.batch_size = n  # the hierarchical decoder reads its batch size from here
    for k, v in overrides.items():
        setattr(config.hparams, k, v)
    config.data_converter.set_mode("infer")
    return config


def randomize(sess, rng):
    """Random values for every variable (magenta's zero biases would leave much untested)."""
    for v in tf.global_variables():
        shape = v.shape.as_list()
        if not shape:
            continue
        scale = 0.3 if len(shape) == 1 else 1.5 / np.sqrt(shape[0])
        v.load(rng.normal(0.0, scale, shape).astype(np.float32), sess)


def output_depths(decoder):
    """The output splits of a decoder (one for a plain categorical decoder)."""
    core = getattr(decoder, "_core_decoder", decoder)
    depths = getattr(core, "_output_depths", None)
    return list(depths) if depths else None


def argmax_samplers(decoder, depth):
    """Replace every categorical sampler with argmax (per output split); GrooVAE's Bernoulli hits with
    hits = logits > 0 (Magenta.js's decoding without a temperature)."""
    if isinstance(decoder, lstm_models.GrooveLstmDecoder):

        def groove(out, temperature):
            hits, vel, off = tf.split(out, 3, axis=1)
            return tf.concat([tf.cast(hits > 0, tf.float32), tf.sigmoid(vel), tf.tanh(off)], axis=1)

        decoder._sample = groove
        return
    core = getattr(decoder, "_core_decoder", None) or decoder
    subs = getattr(core, "_core_decoders", None)
    if subs:  # SplitMultiOutLstmDecoder: one categorical decoder per split
        for sub, d in zip(subs, core._output_depths):
            sub._sample = lambda out, temperature, d=d: tf.one_hot(tf.argmax(out, -1), d)
        return
    splits = getattr(core, "_output_depths", None) or [depth]

    def sample(out, temperature):
        parts = tf.split(out, splits, axis=-1)
        return tf.concat([tf.one_hot(tf.argmax(p, -1), d) for p, d in zip(parts, splits)], axis=-1)

    core._sample = sample


def random_targets(rng, n, steps, splits):
    """One-hot targets [n, steps, sum(splits)], one class per split per step."""
    parts = [np.eye(d, dtype=np.float32)[rng.integers(0, d, (n, steps))] for d in splits]
    return np.concatenate(parts, axis=-1)


def build_and_record(name, spec, overrides, save_ckpt, out_dir, seed=4321, n=3):
    config = make_config(spec, overrides, n)
    hp, conv = config.hparams, config.data_converter
    rng = np.random.default_rng(seed)
    T, depth, cdepth = hp.max_seq_len, conv.output_depth, conv.control_depth
    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        model = config.model
        model.build(hp, depth, is_training=False)
        core = getattr(model.decoder, "_core_decoder", None)
        if core is not None and hasattr(core, "_core_decoders"):
            # SplitMultiOutLstmDecoder asserts that its results are max_seq_len long, which under a conductor
            # they never are (each is one segment): magenta's TrainedModel only fetches the samples, which do
            # not depend on that assertion. Fetching rnn_output does, so it checks the segment length here.
            core.hparams = copy.deepcopy(hp)
            core.hparams.max_seq_len = model.decoder._level_lengths[-1]
        splits = output_depths(model.decoder) or [depth]
        x_ph = tf.placeholder(tf.float32, [n, T, conv.input_depth])
        c_ph = tf.placeholder(tf.float32, [n, T, cdepth]) if cdepth else None
        len_ph = tf.placeholder(tf.int32, [n, 8] if spec in MULTI else [n])  # multitrack: a length per track
        z_ph = tf.placeholder(tf.float32, [n, hp.z_size])
        q_z = model.encode(x_ph, len_ph, c_ph)
        mu, sigma = q_z.loc, q_z.scale.diag
        with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
            y_ph = tf.placeholder(tf.float32, [n, T, depth])
            x_input = tf.pad(y_ph[:, :-1], [(0, 0), (1, 0), (0, 0)])
            _, _, tf_res = model.decoder.reconstruction_loss(x_input, y_ph, len_ph, z_ph, c_ph)
            extra = {}
            if spec in NADE:  # NADE conditional probabilities of the targets under the teacher-forced outputs
                h = model.decoder._nade.num_hidden
                flat = tf.reshape(tf_res.rnn_output, [-1, h + depth])
                _, cond = model.decoder._nade.log_prob(
                    tf.reshape(y_ph, [-1, depth]), b_enc=flat[:, :h], b_dec=flat[:, h:]
                )
                extra["nade_probs"] = tf.reshape(cond, [n, T, depth])
                temperature = None  # the NADE thresholds at 0.5: magenta's deterministic decode
            else:
                argmax_samplers(model.decoder, depth)
                temperature = 1.0
            cs_ph = tf.placeholder(tf.float32, [T, cdepth]) if cdepth else None
            greedy, greedy_res = model.decoder.sample(n, max_length=T, z=z_ph, c_input=cs_ph, temperature=temperature)
        sess = tf.Session(config=tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1))
        sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
        randomize(sess, rng)
        if spec in NADE:  # multi-label drum rolls; the encoder reads the roll + a "nothing hit" bit
            y = (rng.random((n, T, depth)) < 0.25).astype(np.float32)
            x = np.concatenate([y, (y.sum(-1, keepdims=True) == 0).astype(np.float32)], -1)
        elif spec in GROOVE:  # hits 0/1, velocities 0..1, offsets -1..1; the input flattened as humanize does
            hits = (rng.random((n, T, depth // 3)) < 0.3).astype(np.float32)
            y = np.concatenate([hits, hits * rng.random(hits.shape), hits * rng.uniform(-1, 1, hits.shape)], -1)
            y = y.astype(np.float32)
            x = np.concatenate([hits, np.zeros_like(hits), np.zeros_like(hits)], -1)
        elif spec in MULTI:  # 8 tracks of 64 steps: a program token, events, the end token, zero padding
            track_len = rng.integers(2, 65, 8)  # the same per track across the batch (TF's outputs are that long)
            track_len[-1] = 1  # an empty track: the end token alone, as the converter pads
            y = np.zeros((n, 8, 64, depth), np.float32)
            for k, L in enumerate(track_len):
                tokens = rng.integers(0, conv.end_token, (n, L))
                tokens[:, 0] = rng.integers(288, conv.end_token, n)  # program tokens
                tokens[:, -1] = conv.end_token
                y[:, k, np.arange(L)] = np.eye(depth, dtype=np.float32)[tokens]
            y = y.reshape(n, T, depth)
            x = y
            lens = np.tile(track_len.astype(np.int32), (n, 1))
        else:
            y = random_targets(rng, n, T, splits)
            x = y if conv.input_depth == depth else None
        if spec not in MULTI:
            lens = np.full(n, T, np.int32)
        z = rng.normal(0, 1, (n, hp.z_size)).astype(np.float32)
        feed = {x_ph: x, y_ph: y, len_ph: lens, z_ph: z}
        record = {"inputs": x, "targets": y, "lengths": lens, "z": z}
        if cdepth and spec in GROOVE:  # hits as controls
            controls = y[..., : depth // 3].astype(np.float32)
            feed[c_ph], feed[cs_ph] = controls, controls[0]
            record["controls"] = controls
        elif cdepth and spec in MULTI:  # a chord per track step; the greedy decode gets one progression
            chords = rng.integers(0, cdepth, (n, T))
            controls = np.eye(cdepth, dtype=np.float32)[chords]
            feed[c_ph], feed[cs_ph] = controls, controls[0]
            record["controls"] = controls
        elif cdepth:  # one chord (a triad one-hot class) per 8 steps, one progression for the greedy decode
            chords = rng.integers(0, cdepth, (n, T // 8)).repeat(8, axis=1)
            controls = np.eye(cdepth, dtype=np.float32)[chords]
            feed[c_ph], feed[cs_ph] = controls, controls[0]
            record["controls"] = controls
        mu_v, sigma_v, logits, g, g_logits, extra_v = sess.run(
            [mu, sigma, tf_res.rnn_output, greedy, greedy_res.rnn_output, extra], feed
        )
        record.update(extra_v)
        variables = {v.name[:-2]: sess.run(v) for v in tf.global_variables()}
        if save_ckpt:
            tf.train.Saver().save(
                sess, os.path.join(out_dir, f"{name}.ckpt"), write_meta_graph=False, write_state=False
            )
        sess.close()
    if spec in GROOVE or spec in NADE:
        greedy_out = g.astype(np.float32)  # [n, T, 27] hits, velocities, offsets / [n, T, D] drum rolls
    else:
        at, greedy_classes = 0, []
        for d in splits:
            greedy_classes.append(g[..., at : at + d].argmax(-1))
            at += d
        greedy_out = np.stack(greedy_classes, -1).astype(np.int32)  # [n, T, splits]
    record.update(mu=mu_v, sigma=sigma_v, logits=logits, greedy=greedy_out, greedy_logits=g_logits)
    np.savez_compressed(
        os.path.join(out_dir, f"{name}.npz"),
        **{f"var/{k}": v for k, v in variables.items()},
        **{f"ref/{k}": v for k, v in record.items()},
    )
    dec = model.decoder
    meta = {
        "config": spec if isinstance(spec, str) else "custom",
        "hparams": {k: getattr(hp, k) for k in ("z_size", "enc_rnn_size", "dec_rnn_size", "max_seq_len")},
        "level_lengths": list(getattr(dec, "_level_lengths", []) or []),
        "encoder_level_lengths": list(getattr(model.encoder, "_level_lengths", []) or []),
        "disable_autoregression": list(getattr(dec, "_disable_autoregression", []) or []),
        "output_depths": splits,
        "control_depth": cdepth,
    }
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(name, {k: v.shape for k, v in record.items()}, file=sys.stderr)


def synthetic_trios(seed=7):
    """Trio edge cases as NoteSequences: a clean 18-bar trio, one with a 3-bar melody gap, two melody
    instruments, a drum part on a pitched program, 3/4 time, a tempo change. Stored as JSON with the records."""
    import note_seq

    rng = np.random.default_rng(seed)

    def trio(bars, gap=None, second_melody=False, num=4, qpm=120.0):
        s = note_seq.NoteSequence(ticks_per_quarter=220)
        s.tempos.add(qpm=qpm)
        s.time_signatures.add(numerator=num, denominator=4)
        sb = 4 * num
        sp = 60.0 / qpm / 4

        def add(inst, prog, pitch, a, b, drum=False):
            s.notes.add(
                instrument=inst,
                program=prog,
                pitch=int(pitch),
                velocity=90,
                start_time=a * sp,
                end_time=b * sp,
                is_drum=drum,
            )
            s.total_time = max(s.total_time, b * sp)

        for t in range(0, bars * sb, 2):
            if gap and gap[0] * sb <= t < gap[1] * sb:
                continue
            add(0, 0, 60 + (t * 5) % 19, t, t + 2)
            if second_melody:
                add(2, 24, 67 + (t * 3) % 11, t, t + 1)
        for t in range(0, bars * sb, 4):
            add(1, 33, 36 + (t // 4) % 12, t, t + 3)
        for t in range(bars * sb):
            for p in rng.choice([36, 38, 42, 46, 49], size=int(rng.integers(0, 3)), replace=False):
                add(9, 0, p, t, t + 1, drum=True)
        return s

    out = {
        "trio_18bar": trio(18),
        "trio_gap": trio(20, gap=(6, 9)),
        "trio_two_melodies": trio(17, second_melody=True),
        "trio_waltz": trio(18, num=3),
        "trio_4bar": trio(5),
    }
    s = trio(18, qpm=100.0)
    s.tempos.add(qpm=140.0, time=8 * 16 * 60.0 / 100 / 4)
    out["trio_tempo_change"] = s
    return out


def synthetic_grooves(seed=11):
    """Drum grooves off the grid with velocities (Roland pitches, a pitch outside the classes, two hits of
    one class in a step, 1, 2, 4 and 5 bars) and a tapped rhythm on a pitched instrument."""
    import note_seq

    rng = np.random.default_rng(seed)
    out = {}
    pitches = [36, 38, 37, 40, 42, 22, 44, 46, 26, 43, 58, 47, 45, 50, 48, 49, 52, 55, 57, 51, 53, 59, 77]
    for bars in (1, 2, 4, 5):
        s = note_seq.NoteSequence(ticks_per_quarter=480)
        s.tempos.add(qpm=120.0)
        s.time_signatures.add(numerator=4, denominator=4)
        for t in range(bars * 16):
            for p in rng.choice(pitches, size=int(rng.integers(0, 4)), replace=False):
                at = max(0.0, t * 0.125 + rng.uniform(-0.05, 0.05))
                s.notes.add(
                    pitch=int(p),
                    velocity=int(rng.integers(20, 128)),
                    start_time=at,
                    end_time=at + 0.1,
                    is_drum=True,
                    instrument=9,
                )
        s.total_time = bars * 2.0
        out[f"groove_{bars}bar"] = s
    s = note_seq.NoteSequence(ticks_per_quarter=480)
    s.tempos.add(qpm=100.0)
    for t in range(0, 32, 3):
        at = t * 0.15 + 0.01
        s.notes.add(pitch=46, velocity=int(40 + 3 * t), start_time=at, end_time=at + 0.1, is_drum=True)
    s.total_time = 4.8
    out["tap_qpm100"] = s
    return out


def record_groove_converters(out_dir):
    """Magenta's GrooveConverter as each GrooVAE config sets it up (inference mode: reduced pitch classes)
    on the drum MIDI files and :func:`synthetic_grooves`: inputs, outputs, controls, from_tensors."""
    import glob

    import note_seq
    from google.protobuf import json_format

    synth = synthetic_grooves()
    meta = {"synthetic": {k: json_format.MessageToDict(v) for k, v in synth.items()}}
    midi = [p for p in sorted(glob.glob(os.path.join(out_dir, "midi", "*.mid"))) if "drum" in p or "complex" in p]
    sources = [(os.path.basename(p), lambda p=p: note_seq.midi_file_to_note_sequence(p)) for p in midi]
    sources += [(f"synthetic:{k}", lambda v=v: copy.deepcopy(v)) for k, v in synth.items()]
    arrays = {}
    for name in (
        "groovae_4bar",
        "groovae_2bar_humanize",
        "groovae_2bar_tap_fixed_velocity",
        "groovae_2bar_add_closed_hh",
        "groovae_2bar_hits_control_tfds",
    ):
        conv = copy.deepcopy(configs.CONFIG_MAP[name].data_converter)
        conv.set_mode("infer")
        for fname, load_ns in sources:
            key = f"{name}/{fname}"
            try:
                t = conv.to_tensors(load_ns())
            except Exception as exc:
                meta[key] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            meta[key] = {"count": len(t.outputs)}
            if t.outputs:
                arrays[f"{key}/inputs"] = np.stack(t.inputs).astype(np.float32)
                arrays[f"{key}/outputs"] = np.stack(t.outputs).astype(np.float32)
                if t.controls is not None and len(t.controls) and t.controls[0] is not None:
                    arrays[f"{key}/controls"] = np.stack(t.controls).astype(np.float32)
                back = conv.from_tensors(np.stack(t.outputs)[:2])
                meta[key]["from_tensors"] = [
                    sorted([n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6)] for n in b.notes)
                    for b in back
                ]
    np.savez_compressed(os.path.join(out_dir, "converters_groove.npz"), **arrays)
    with open(os.path.join(out_dir, "converters_groove.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print(
        "groove converters:",
        {k: v.get("count", v.get("error")) for k, v in meta.items() if k != "synthetic"},
        file=sys.stderr,
    )


def record_nade_converters(out_dir):
    """Magenta's roll-output DrumsConverter (nade-drums_2bar_reduced / _full) on the MIDI files and the
    synthetic drum sequences of musicvae_reference.py: input and output rolls, from_tensors."""
    import glob

    import note_seq
    from musicvae_reference import synthetic_sequences

    sources = [
        (os.path.basename(p), lambda p=p: note_seq.midi_file_to_note_sequence(p))
        for p in sorted(glob.glob(os.path.join(out_dir, "midi", "*.mid")))
    ]
    sources += [(f"synthetic:{k}", lambda v=v: copy.deepcopy(v)) for k, v in synthetic_sequences().items()]
    meta, arrays = {}, {}
    for name in NADE:
        conv = copy.deepcopy(configs.CONFIG_MAP[name].data_converter)
        conv.set_mode("infer")
        conv.max_tensors_per_notesequence = None
        for fname, load_ns in sources:
            key = f"{name}/{fname}"
            t = conv.to_tensors(load_ns())
            meta[key] = {"count": len(t.outputs)}
            if t.outputs:
                arrays[f"{key}/inputs"] = np.stack(t.inputs).astype(np.uint8)
                arrays[f"{key}/outputs"] = np.stack(t.outputs).astype(np.uint8)
                back = conv.from_tensors(np.stack(t.outputs)[:2].astype(np.float32))
                meta[key]["from_tensors"] = [
                    sorted([n.pitch, n.velocity, round(n.start_time, 6), round(n.end_time, 6)] for n in b.notes)
                    for b in back
                ]
    np.savez_compressed(os.path.join(out_dir, "converters_nade.npz"), **arrays)
    with open(os.path.join(out_dir, "converters_nade.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print("nade converters:", {k: v["count"] for k, v in meta.items()}, file=sys.stderr)


def synthetic_multitracks(seed=5):
    """Multi-instrument edge cases: 3 bars of 4 instruments with a sustain pedal, 9 instruments in a bar (too
    many), a dense track (too many events), and a lone instrument (too few); plus the synthetic trios."""
    import note_seq

    rng = np.random.default_rng(seed)
    out = {}

    def seq(qpm=120.0):
        s = note_seq.NoteSequence(ticks_per_quarter=220)
        s.tempos.add(qpm=qpm)
        s.time_signatures.add(numerator=4, denominator=4)
        return s

    def add(s, inst, prog, pitch, a, b, drum=False, vel=None):
        s.notes.add(
            instrument=inst,
            program=prog,
            pitch=int(pitch),
            velocity=int(vel or rng.integers(30, 120)),
            start_time=float(a),
            end_time=float(b),
            is_drum=drum,
        )
        s.total_time = max(s.total_time, float(b))

    s = seq()
    for bar in range(3):
        for k, prog in enumerate((0, 24, 33, 48)):
            for t in range(0, 16, 4 + k):
                at = bar * 2.0 + t * 0.125 + rng.uniform(0, 0.03)
                add(s, k, prog, 40 + 7 * k + t % 5, at, at + 0.3)
        add(s, 9, 0, 36, bar * 2.0, bar * 2.0 + 0.1, drum=True)
    s.control_changes.add(control_number=64, control_value=127, time=0.5, instrument=0, program=0)
    s.control_changes.add(control_number=64, control_value=0, time=1.5, instrument=0, program=0)
    out["four_parts_sustain"] = s
    s = seq()
    for k in range(9):
        add(s, k, k * 8, 50 + k, 0.0, 1.0)
    out["nine_parts"] = s
    s = seq(100.0)
    for t in range(40):
        add(s, 0, 0, 60 + t % 12, t * 0.06, t * 0.06 + 0.05)
    add(s, 1, 33, 40, 0.0, 2.4)
    out["dense_track"] = s
    s = seq()
    add(s, 0, 0, 60, 0.0, 2.0)
    out["one_part"] = s
    for k, v in synthetic_trios().items():
        out[k] = v
    return out


def record_multitrack_converters(out_dir):
    """Magenta's MultiInstrumentPerformanceConverter (hier-multiperf_vel_1bar_med and _med_chords) on the
    MIDI files and :func:`synthetic_multitracks`: per window the class of each of the 512 rows (-1 for the
    zero padding), the chord controls likewise, and from_tensors of the first two."""
    import glob

    import note_seq
    from google.protobuf import json_format
    from magenta.models.music_vae import data_hierarchical

    class _Numpy:
        """numpy, except that np.size of the chord converter's ragged control lists (one array per track)
        answers "not empty" instead of raising (magenta 2.1.4 predates NumPy refusing ragged arrays)."""

        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def size(a):
            try:
                return np.size(a)
            except ValueError:
                return 1

    data_hierarchical.np = _Numpy()
    synth = synthetic_multitracks()
    meta = {"synthetic": {k: json_format.MessageToDict(v) for k, v in synth.items()}}
    sources = [
        (os.path.basename(p), lambda p=p: note_seq.midi_file_to_note_sequence(p))
        for p in sorted(glob.glob(os.path.join(out_dir, "midi", "*.mid")))
    ]
    sources += [(f"synthetic:{k}", lambda v=v: copy.deepcopy(v)) for k, v in synth.items()]
    arrays = {}

    def classes(t):
        t = np.asarray(t, np.float32)
        return np.where(t.any(-1), t.argmax(-1), -1).astype(np.int16)

    for name in MULTI:
        conv = copy.deepcopy(configs.CONFIG_MAP[name].data_converter)
        conv.set_mode("infer")
        for fname, load_ns in sources:
            key = f"{name}/{fname}"
            t = conv.to_tensors(load_ns())
            meta[key] = {"count": len(t.outputs)}
            if not t.outputs:
                continue
            arrays[f"{key}/inputs"] = np.stack([classes(x) for x in t.inputs])
            if conv.control_depth:
                arrays[f"{key}/controls"] = np.stack([classes(c) for c in t.controls])
            back = conv.from_tensors(
                np.stack(t.outputs)[:2].astype(np.float32),
                np.stack(t.controls)[:2].astype(np.float32) if conv.control_depth else None,
            )
            meta[key]["from_tensors"] = [
                sorted(
                    [
                        n.instrument,
                        n.program,
                        n.pitch,
                        n.velocity,
                        round(n.start_time, 6),
                        round(n.end_time, 6),
                        bool(n.is_drum),
                    ]
                    for n in b.notes
                )
                for b in back
            ]
    np.savez_compressed(os.path.join(out_dir, "converters_multitrack.npz"), **arrays)
    with open(os.path.join(out_dir, "converters_multitrack.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print("multitrack converters:", {k: v["count"] for k, v in meta.items() if k != "synthetic"}, file=sys.stderr)


def record_converters(out_dir):
    """Magenta's mel_16bar and trio converters on the compat MIDI files and :func:`synthetic_trios`:
    class indices of every tensor (both max_tensors modes) and ``from_tensors`` of the first ones."""
    import glob

    import note_seq
    from google.protobuf import json_format
    from magenta.models.music_vae import data

    midi_dir = os.path.join(out_dir, "midi")
    synth = synthetic_trios()
    meta = {"synthetic": {k: json_format.MessageToDict(v) for k, v in synth.items()}}
    sources = [
        (os.path.basename(p), lambda p=p: note_seq.midi_file_to_note_sequence(p))
        for p in sorted(glob.glob(os.path.join(midi_dir, "*.mid")))
    ]
    sources += [(f"synthetic:{k}", lambda v=v: copy.deepcopy(v)) for k, v in synth.items()]
    convs = {
        "mel_16bar": copy.deepcopy(configs.CONFIG_MAP["hierdec-mel_16bar"].data_converter),
        "trio_16bar": copy.deepcopy(configs.CONFIG_MAP["hierdec-trio_16bar"].data_converter),
        "trio_4bar": data.TrioConverter(steps_per_quarter=4, slice_bars=4, gap_bars=2),
    }
    arrays = {}
    for kind, conv in convs.items():
        conv.set_mode("infer")
        splits = list(getattr(conv, "_split_output_depths", [conv.output_depth]))
        for mode, max_t in (("default", conv.max_tensors_per_notesequence), ("all", None)):
            conv.max_tensors_per_notesequence = max_t
            for fname, load_ns in sources:
                key = f"{kind}/{mode}/{fname}"
                try:
                    t = conv.to_tensors(load_ns())
                except Exception as exc:
                    meta[key] = {"error": f"{type(exc).__name__}: {exc}"}
                    continue
                meta[key] = {"count": len(t.outputs)}
                if not t.outputs:
                    continue
                y = np.stack(t.outputs).astype(np.float32)
                at, idx = 0, []
                for d in splits:
                    idx.append(y[..., at : at + d].argmax(-1))
                    at += d
                arrays[key] = np.stack(idx, -1).astype(np.int16)
                if mode == "all":
                    back = conv.from_tensors(y[:3])
                    meta[key]["from_tensors"] = [
                        sorted(
                            [
                                n.instrument,
                                n.program,
                                n.pitch,
                                n.velocity,
                                round(n.start_time, 6),
                                round(n.end_time, 6),
                                bool(n.is_drum),
                            ]
                            for n in b.notes
                        )
                        for b in back
                    ]
    np.savez_compressed(os.path.join(out_dir, "converters_hier.npz"), **arrays)
    with open(os.path.join(out_dir, "converters_hier.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    print(
        "converters:", {k: v.get("count", v.get("error")) for k, v in meta.items() if k != "synthetic"}, file=sys.stderr
    )


CONVERTER_FIXTURES = ("converters", "groove_converters", "nade_converters", "multitrack_converters")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--only",
        nargs="*",
        help=f"subset of fixtures ({' '.join(MODELS)} {' '.join(CONVERTER_FIXTURES)})",
    )
    args = ap.parse_args()
    os.makedirs(FIXTURES, exist_ok=True)
    if not args.only or "converters" in args.only:
        record_converters(FIXTURES)
    if not args.only or "groove_converters" in args.only:
        record_groove_converters(FIXTURES)
    if not args.only or "nade_converters" in args.only:
        record_nade_converters(FIXTURES)
    if not args.only or "multitrack_converters" in args.only:
        record_multitrack_converters(FIXTURES)
    for name, (spec, over, ckpt) in MODELS.items():
        if not args.only or name in args.only:
            build_and_record(name, spec, over, ckpt, FIXTURES)


if __name__ == "__main__":
    main()
