"""Reference outputs of Magenta 2.1.4's ImprovRNN for the improv_rnn family's tests.

Run in the reference environment (never imported by the service):

    TF_USE_LEGACY_KERAS=1 OMP_NUM_THREADS=1 .venv-ref/bin/python reference/improv_rnn_reference.py [config ...]

For basic_improv, attention_improv and chord_pitches_improv it builds magenta's generation graph with small
layers and random weights, writes a ``.mag`` bundle with magenta's ``create_bundle_file``, reloads it
through ``ImprovRnnSequenceGenerator`` and records in tests/fixtures/improv_rnn/<config>/: the weights, the
conditional inputs (chords of the next step + melody) and teacher-forced logits over fixed primers and
chord progressions, greedy / seeded / beam results of ``generate_melody``, and the sequence generator end to
end on a primer NoteSequence with chord annotations.
"""

import copy
import functools
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
from google.protobuf import json_format  # noqa: E402
from magenta.models.improv_rnn import improv_rnn_model, improv_rnn_sequence_generator  # noqa: E402
from magenta.models.shared import events_rnn_graph  # noqa: E402
from note_seq.protobuf import generator_pb2, music_pb2  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "improv_rnn")
CONFIGS = {"basic_improv": [16, 16], "attention_improv": [16, 16], "chord_pitches_improv": [16, 16]}
NUM_STEPS = 32
PRIMERS = {
    "twinkle": [60, -2, 60, -2, 67, -2, 67, -2],
    "high": [86, -2, -1, 90, -2],  # squashed down an octave; the chords move with it
}
PROGRESSIONS = {
    "pop": ["C", "G", "Am", "F"],
    "jazz": ["Dm7", "G7", "Cmaj7", "N.C."],
}
SEED_SAMPLES = [(1, 1.0), (7, 0.8)]
BEAMS = [(3, 4, 2, 1, 1.0), (5, 2, 3, 4, 1.0)]


def per_step(symbols, steps, per=8):
    return [symbols[min(i // per, len(symbols) - 1)] for i in range(steps)]


def make_config(name):
    config = copy.deepcopy(improv_rnn_model.default_configs[name])
    config.hparams.rnn_layer_sizes = CONFIGS[name]
    config.hparams.batch_size = 1
    config.hparams.dropout_keep_prob = 1.0
    return config


def make_generator(config, checkpoint=None, bundle=None):
    return improv_rnn_sequence_generator.ImprovRnnSequenceGenerator(
        improv_rnn_model.ImprovRnnModel(config),
        config.details,
        steps_per_quarter=config.steps_per_quarter,
        checkpoint=checkpoint,
        bundle=bundle,
    )


def prepared(config, primer, symbols):
    """Melody squashed and chords transposed with it, as generate_melody prepares them."""
    melody = note_seq.Melody(primer)
    chords = note_seq.ChordProgression(symbols)
    transpose = melody.squash(config.min_note, config.max_note, config.transpose_to_key)
    chords.transpose(transpose)
    return melody, chords, transpose


def teacher_forced(model, config, melody, chords):
    sess = model._session
    graph = sess.graph
    inputs = config.encoder_decoder.get_inputs_batch([chords], [melody], full_length=True)
    init = graph.get_collection("initial_state")
    feed = {graph.get_collection("inputs")[0]: inputs, tuple(init): tuple(sess.run(init))}
    temp = graph.get_collection("temperature")
    if temp:
        feed[temp[0]] = 1.0
    return np.asarray(sess.run(graph.get_tensor_by_name("fully_connected/BiasAdd:0"), feed)), np.asarray(inputs[0])


def generate(model, primer, symbols, temperature, beam=(1, 1, 1)):
    out = model.generate_melody(note_seq.Melody(primer), note_seq.ChordProgression(symbols), temperature, *beam)
    return [int(e) for e in out]


def beam_with_score(model, primer, symbols, temperature, beam, seed):
    return with_beam_score(lambda: generate(model, primer, symbols, temperature, beam), seed)


def lead_sheet_primer():
    """A primer melody (7 steps of notes) with chord annotations over the 32 steps (the generator takes its
    backing chords from the input sequence up to the end of the generate section)."""
    seq = note_seq.Melody([62, -2, 64, -2, 65, 67, -2]).to_sequence(qpm=120)
    seq.total_time = NUM_STEPS * 0.125
    for time, symbol in [(0.0, "Dm"), (1.0, "G"), (2.0, "C"), (3.0, "A")]:
        a = seq.text_annotations.add(time=time, text=symbol)
        a.annotation_type = music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL
    return seq


def run_generator(gen, seq, temperature, seed, beam=(1, 1, 1)):
    opts = generator_pb2.GeneratorOptions()
    opts.generate_sections.add(start_time=7.5 * 0.125, end_time=NUM_STEPS * 0.125)  # starts at step 8
    opts.args["temperature"].float_value = temperature
    opts.args["beam_size"].int_value, opts.args["branch_factor"].int_value = beam[0], beam[1]
    opts.args["steps_per_iteration"].int_value = beam[2]
    np.random.seed(seed)
    out = gen.generate(seq, opts)
    kind = music_pb2.NoteSequence.TextAnnotation.CHORD_SYMBOL
    return {
        "temperature": temperature,
        "seed": seed,
        "beam": list(beam),
        "start_step": 8,
        "notes": [[n.pitch, round(n.start_time, 6), round(n.end_time, 6)] for n in out.notes],
        "chords": [[round(a.time, 6), a.text] for a in out.text_annotations if a.annotation_type == kind],
        "total_time": out.total_time,
    }


def run_config(name):
    out_dir = os.path.join(OUT, name)
    os.makedirs(out_dir, exist_ok=True)
    config = make_config(name)
    bundle, gen, weights = bundled_generator(
        functools.partial(make_generator, config),
        events_rnn_graph.get_build_graph_fn("generate", config),
        os.path.join(out_dir, f"{name}.mag"),
        f"{name} with random weights, layers {CONFIGS[name]}",
        config_seed(name),
    )
    model = gen._model
    ref = {
        "generator_id": bundle.generator_details.id,
        "layers": CONFIGS[name],
        "attn_length": config.hparams.attn_length,
        "num_steps": NUM_STEPS,
        "cases": {},
    }
    arrays = {}
    for pname, primer in PRIMERS.items():
        for cname, progression in PROGRESSIONS.items():
            key = f"{pname}/{cname}"
            symbols = per_step(progression, NUM_STEPS)
            melody, chords, transpose = prepared(config, primer, symbols)
            logits, inputs = teacher_forced(model, config, melody, chords)
            arrays[f"{key}/logits"], arrays[f"{key}/inputs"] = logits.reshape(len(melody), -1), inputs
            entry = {
                "primer": primer,
                "chords": symbols,
                "prepared": [int(e) for e in melody],
                "transposed_chords": list(chords),
                "transpose": transpose,
            }
            np.random.seed(0)
            entry["greedy"] = generate(model, primer, symbols, 1e-6)
            entry["samples"] = []
            for seed, temp in SEED_SAMPLES:
                np.random.seed(seed)
                entry["samples"].append(
                    {"seed": seed, "temperature": temp, "events": generate(model, primer, symbols, temp)}
                )
            entry["beams"] = []
            for seed, bsz, bf, spi, temp in BEAMS:
                ev, score = beam_with_score(model, primer, symbols, temp, (bsz, bf, spi), seed)
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
    seq = lead_sheet_primer()
    ref["primer_sequence"] = json.loads(json_format.MessageToJson(seq))
    ref["sequence_generator"] = [
        run_generator(gen, seq, 1e-6, 0),
        run_generator(gen, seq, 1.0, 3),
        run_generator(gen, seq, 1.0, 5, beam=(2, 2, 2)),
    ]
    gen.close()
    np.savez_compressed(os.path.join(out_dir, "reference.npz"), **arrays)
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    print(name, "ok", {k: v.shape for k, v in weights.items()})


def main(argv):
    for name in argv[1:] or CONFIGS:
        run_config(name)


if __name__ == "__main__":
    main(sys.argv)
