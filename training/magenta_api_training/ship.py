"""Copy trained weights into the ``magenta_api_embedded`` plugin: weights, models.yaml, model cards.

``models.yaml`` records each file's real sha256 and size (the store checks them on open);
the cards carry data, licence, training steps, losses and the quality evaluation.
"""

import hashlib
import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / "plugins" / "magenta_api_embedded"

MODEL_IDS = {
    "mel_2bar": "embedded-mel_2bar",
    "drums_2bar": "embedded-drums_2bar",
    "basic_rnn": "embedded-basic_rnn",
    "mel_16bar": "embedded-mel_16bar",
}

DESCRIPTIONS = {
    "mel_2bar": "MusicVAE 2-bar melody model trained by magenta-api on public-domain tune books "
    "(O'Neill's, Ryan's Mammoth, Aird's); offline default",
    "drums_2bar": "MusicVAE 2-bar drum model (9 classes, 512-way) trained by magenta-api on its own "
    "groove library; offline",
    "basic_rnn": "MelodyRNN basic_rnn trained by magenta-api on public-domain tune books; continues a primer; offline",
    "mel_16bar": "MusicVAE 16-bar melody model (hier-mel_16bar: hierarchical encoder and 16-step conductor) "
    "trained by magenta-api on public-domain tune books; offline 16-bar and long-form (bars: 64) music",
}

DATA_TEXT = {
    "melody": """Melodies from the ABC tune books that the `music21` package ships offline (folder
`music21/corpus/`), three collections only:

| collection | book | public-domain status |
|---|---|---|
| `oneills1850` | Francis O'Neill, *The Music of Ireland* (Chicago, 1903), 1850 tunes; ABC transcriptions by volunteers (Norbert Paap, Henrik Norbeck, Bob Safranek, Trish O'Neil and others) | published 1903, public domain |
| `ryansMammoth` | William Bradbury Ryan, *Ryan's Mammoth Collection* (Boston, 1883); ABC contributed by Ray Davies, Bob Puckette, John Walsh and others | published 1883, public domain |
| `airdsAirs` | James Aird, *A Selection of Scotch, English, Irish and Foreign Airs* (Glasgow, 1778-1803); ABC by Jack Campin | published 1778-1803, public domain |

Licence notes: music21's `corpus/license.txt` says the corpus encodings are distributed "with the
permission of the encoders ... and where permitted under United States copyright law", that some
encodings "may not be used for commercial uses or have other restrictions: please see the licenses
embedded in individual compositions or directories", and that "to the best of our knowledge" each piece
is out of copyright or licensed for use. None of the three collections used here carries such an embedded
restriction (checked: their files name the source book and the transcribers, and state no licence terms); the tunes are 18th/19th-century
publications in the public domain. The Essen collection (`essenFolksong`), marked for non-commercial use,
is deliberately **not** used. The model weights are statistics of these melodies, not copies of them, and
are released under the project's Apache-2.0 licence.

Extraction (`training/magenta_api_training/data_music21.py`): tunes whose meters are all `C`, `C|`, `4/4`
or `2/2` are parsed with music21 (ties merged, grace notes and chord symbols dropped, chords reduced to the
top note), put on a 16th-note grid aligned to the bar lines (pickup bars shifted), and turned into
`note_seq.Melody` event lists (-2 hold, -1 note-off, pitch). The split into training and validation is by
tune (10 % of tunes by a seeded hash of the normalised title, so the same tune printed in two books stays on
one side).""",
    "melody16": """The 16-bar model reads the tunes as they are played: music21's `expandRepeats` writes out
repeats and first/second endings (a tune's AABB form), each full bar starts on a bar line (the short
closing bar of a repeated part leaves a rest where its pickup is not played again), and windows are 16
bars (256 steps) at a one-bar hop, each with at least one note in every bar and every pitch in
[21, 108], transposed by -5..5 semitones in training as the 2-bar model.""",
    "drums": """The project's own groove library (`training/magenta_api_training/grooves.py`, Apache-2.0, written
for magenta-api): 21 styles (rock, pop, funk, shuffle, bossa nova, samba, hip-hop, reggae one-drop and
steppers, march, disco, jazz ride, afrobeat, metal, half-time, 12/8 feel on the straight-16 grid,
drum'n'bass, punk, songo, second line, Motown) with kick and snare variants, 15 cymbal layers, 14 second-bar
variations (fills: snare runs, tom descents, flams, unisons; open-hat lifts; kick/snare variants) and
optional crashes, expanded programmatically into distinct 2-bar windows. No permissively licensed drum
corpus ships in a package (those in Debian are GPL or CC-BY-SA), hence this choice. Validation: 12 % of
the (style, kick variant, snare variant) groups, held out with a seeded hash.""",
}

ARCH_TEXT = {
    "musicvae": "Flat MusicVAE as Magenta's `cat-*_2bar` configs: BidirectionalLstmEncoder -> mu, "
    "sigma = softplus -> z; CategoricalLstmDecoder with tanh(dense(z)) initial states and "
    "[previous output; z] inputs.",
    "hier_musicvae": "Hierarchical MusicVAE as Magenta's `hier-mel_16bar` config: HierarchicalLstmEncoder "
    "(level 0: a bidirectional LSTM over each bar of 16 steps; level 1: a bidirectional LSTM over the 16 bar "
    "embeddings) -> mu, sigma = softplus -> z; HierarchicalLstmDecoder with one conductor level (tanh(dense(z)) "
    "initial state, 16 steps with a single 0 input, `disable_autoregression`) whose output at step k is bar "
    "k's embedding; a CategoricalLstmDecoder per bar with tanh(dense(embedding)) initial states and "
    "[previous output; embedding] inputs, the previous output running across bar boundaries. Both encoder "
    "levels use `enc_rnn_size`, conductor and core decoder `dec_rnn_size`, as Magenta builds them. Sizes: "
    "LSTM widths 1/8 of Magenta's (encoder 128, decoder 2 x 128 against 1024 and 2 x 1024), z 128 against 512, "
    "so that "
    "the float32 weights stay under 10 MB (1.34 M parameters, 5.3 MB) and an hour of one CPU thread trains "
    "about 3,500 batches of 64; free bits keep Magenta's 0.5 bits per latent dimension (64 for z 128; "
    "Magenta: 256 for z 512) and `max_beta` its 0.2, reached by annealing (`beta_rate` 0.999) as the 2-bar "
    "model; learning rate, decay, clipping and Magenta's N(0, 0.001) init of the initial-state layers are "
    "Magenta's defaults.",
    "melody_rnn": "MelodyRNN `basic_rnn`: one-hot events in MelodyOneHotEncoding(48, 84) (38 classes), "
    "stacked BasicLSTMCells, `fully_connected` output; training tunes transposed to C "
    "major and squashed into [48, 84) as Magenta's `transpose_to_key=0` (the result equals "
    "`note_seq.Melody.squash(48, 84, 0)` on 96 % of the tunes; the rest differ by an octave), "
    "then cut into 4-bar windows.",
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_entry(name: str, cfg: dict, weights: Path) -> dict:
    a = cfg["arch"]
    ck = {"url": weights.name, "format": "native", "sha256": sha256_file(weights), "size": weights.stat().st_size}
    if cfg["kind"] == "hier_musicvae":
        segments, _ = a["level_lengths"]
        return {
            "family": "musicvae",
            "description": DESCRIPTIONS[name],
            "hparams": {
                "config": "hier-mel_16bar",
                "converter": "melody",
                "steps": cfg["max_seq_len"],
                "segments": segments,
                "z_size": a["z_size"],
                "enc_rnn_size": a["enc_rnn_size"],
                "dec_rnn_size": a["dec_rnn_size"],
                "min_pitch": 21,
                "max_pitch": 108,
            },
            "defaults": {"temperature": 0.5, "num_outputs": 1},
            "limits": {"num_outputs": 16, "length": cfg["max_seq_len"]},
            "checkpoint": ck,
        }
    if cfg["kind"] == "musicvae":
        hp = {
            "converter": "drums" if cfg["data"] == "drums" else "melody",
            "steps": 32,
            "steps_per_quarter": 4,
            "quarters_per_bar": 4,
            "z_size": a["z_size"],
            "enc_rnn_size": a["enc_rnn_size"],
            "dec_rnn_size": a["dec_rnn_size"],
        }
        if cfg["data"] != "drums":
            hp.update(min_pitch=21, max_pitch=108)
        return {
            "family": "musicvae",
            "description": DESCRIPTIONS[name],
            "hparams": hp,
            "defaults": {"temperature": 0.5, "num_outputs": 1},
            "limits": {"num_outputs": 64},
            "checkpoint": ck,
        }
    return {
        "family": "melody_rnn",
        "description": DESCRIPTIONS[name],
        "hparams": {"config": "basic_rnn", "min_note": a["min_note"], "max_note": a["max_note"], "transpose_to_key": 0},
        "defaults": {"temperature": 1.0, "length": 64},
        "limits": {"num_outputs": 64, "length": 1024},
        "checkpoint": ck,
    }


def write_models_yaml(entries: dict, path: Path):
    """models.yaml with ``entries``; a partial ship (one model re-trained alone) keeps the other
    models already in the file and its ``default_model``."""
    import yaml

    head = (
        "# Embedded default models, trained by magenta-api (training/) and shipped in this package.\n"
        "# Regenerated by `magenta-api train ship`; checkpoint paths are relative to this file.\n"
    )
    old = yaml.safe_load(path.read_text()) if path.exists() else None
    models = dict((old or {}).get("models") or {})
    models.update(entries)
    doc = {"default_model": MODEL_IDS["mel_2bar"], "models": models}
    if MODEL_IDS["mel_2bar"] not in models:
        del doc["default_model"]
    path.write_text(head + yaml.safe_dump(doc, sort_keys=False, width=110))


def training_seconds(log_path: Path) -> float:
    """Wall-clock seconds over all segments of a (possibly resumed) run, from its log.jsonl."""
    total, last = 0.0, 0.0
    for line in Path(log_path).read_text().splitlines():
        elapsed = json.loads(line).get("elapsed", 0.0)
        if elapsed < last:  # a resumed segment starts its clock again
            total += last
        last = elapsed
    return total + last


def write_card(name: str, summary: dict, evaluation: dict, weights: Path, path: Path, seconds=None):
    from .evaluate import markdown_table

    cfg = summary["config"]
    final = {k: round(v, 4) for k, v in summary["final"].items()}
    last = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary["last"].items()}
    train_cfg = {k: v for k, v in cfg.items() if k not in ("arch", "name", "kind", "data", "steps", "seed")}
    lines = [
        f"# Model card: {MODEL_IDS[name]}",
        "",
        DESCRIPTIONS[name] + ".",
        "",
        "## Architecture",
        "",
        ARCH_TEXT[cfg["kind"]],
        "",
        f"Hyper-parameters: `{json.dumps(cfg['arch'])}`. Weights: `{weights.name}` "
        f"({weights.stat().st_size:,} bytes, float32, Magenta's variable names and shapes, safetensors), "
        f"sha256 `{sha256_file(weights)}`.",
        "",
        "## Data and licence",
        "",
        DATA_TEXT["drums" if cfg["data"] == "drums" else "melody"],
        *(["", DATA_TEXT["melody16"]] if cfg["data"] == "melody16" else []),
        "",
        f"Windows: {summary['train_windows']:,} training, {summary['validation_windows']:,} validation.",
        "",
        "Licence of the weights: Apache-2.0, as the project.",
        "",
        "## Training",
        "",
        f"PyTorch on one CPU thread, Adam, seed {summary['seed']}, **{summary['steps']} steps** of "
        f"{cfg['batch_size']} windows"
        + (f", {seconds / 60:.0f} minutes wall-clock on a shared 2-core machine" if seconds else "")
        + ". "
        f"Settings: `{json.dumps(train_cfg)}`.",
        "",
        *(
            [
                f"The run had a time budget (`--max-minutes`): it stopped after {summary['steps']} of the "
                f"{summary.get('requested_steps', cfg.get('steps'))} steps asked for and exported there.",
                "",
            ]
            if summary.get("stopped_by_budget", summary["steps"] < cfg.get("steps", 0))
            else []
        ),
        "Reproduce: `magenta-api train " + name + f" --steps {summary['steps']} --seed {summary['seed']} "
        f"--out training/runs/{name}` then `magenta-api train ship --models {name}` (see training/README.md).",
        "",
        f"Last training step: `{json.dumps(last)}`",
        "",
        f"Validation (held-out {'grooves' if cfg['data'] == 'drums' else 'tunes'}"
        f"{', z = mu' if cfg['kind'] != 'melody_rnn' else ''}): `{json.dumps(final)}`",
        "",
    ]
    if evaluation:
        lines += [
            "## Quality evaluation",
            "",
            f"{evaluation['samples']} samples drawn by the service's NumPy engine (temperature "
            f"{evaluation['temperature']}"
            + (
                ", z ~ N(0, 1)"
                if cfg["kind"] != "melody_rnn"
                else ", 64 steps from the first event of a held-out window"
            )
            + f"), compared with {evaluation['held_out_windows']:,} held-out windows and with the "
            "same architecture at the trainer's random initial weights (`bench/quality.py`, seed "
            f"{evaluation['seed']}). Each metric is the distance between a statistic of the samples and the "
            "same statistic of the held-out windows (histograms: total variation; scalars: absolute "
            "difference); definitions in `training/magenta_api_training/evaluate.py`.",
            "",
            markdown_table(evaluation),
            "",
            f"Trained model closer to the held-out data than random weights on every metric: "
            f"**{'yes' if evaluation['trained_closer_on_every_metric'] else 'no'}**.",
            "",
        ]
    lines += [
        "## Limitations",
        "",
        "Small model, short CPU training: it knows the idiom of its data (Irish/Scottish fiddle tunes, "
        "or the groove library's styles) and little else. Not comparable with Magenta's published "
        "checkpoints.",
        "",
    ]
    if cfg["kind"] == "hier_musicvae":
        lines += [
            "Long-form (`bars` over 16) joins 16-bar decodes of nearby codes on a slerp path (musicvae "
            "plugin README, Long-form): each 16-bar chunk has the model's form, the piece as a whole "
            "drifts rather than repeats.",
            "",
        ]
    path.write_text("\n".join(lines))


def ship(runs: Path, evaluation_json=None, plugin_dir: Path = PLUGIN_DIR, names=None) -> dict:
    """Copy ``runs/<name>/<name>.safetensors`` into the plugin as ``embedded-<name>.safetensors``,
    write models.yaml (sha256, size) and the model cards. Returns the models.yaml entries."""
    evaluations = json.loads(Path(evaluation_json).read_text()) if evaluation_json else {}
    entries = {}
    for name in names or MODEL_IDS:
        run = Path(runs) / name
        summary = json.loads((run / "summary.json").read_text())
        dest = plugin_dir / f"{MODEL_IDS[name]}.safetensors"
        shutil.copyfile(run / f"{name}.safetensors", dest)
        entries[MODEL_IDS[name]] = model_entry(name, summary["config"], dest)
        write_card(
            name,
            summary,
            evaluations.get(name),
            dest,
            plugin_dir / f"MODEL_CARD-{MODEL_IDS[name]}.md",
            training_seconds(run / "log.jsonl"),
        )
        log.info("shipped %s (%d bytes)", dest.name, dest.stat().st_size)
    write_models_yaml(entries, plugin_dir / "models.yaml")
    return entries
