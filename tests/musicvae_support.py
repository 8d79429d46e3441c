"""Loading the MusicVAE reference fixtures (made by reference/musicvae_reference.py)."""

import json
from functools import cache
from pathlib import Path

import numpy as np

FIX = Path(__file__).parent / "fixtures" / "musicvae"
MODELS = ("mel_tiny", "drums_tiny", "mel_small")


@cache
def load(name):
    """(variables, reference outputs, meta json) of one fixture model."""
    d = np.load(FIX / f"{name}.npz")
    variables = {k[4:]: d[k] for k in d.files if k.startswith("var/") and k != "var/global_step"}
    ref = {k[4:]: d[k] for k in d.files if k.startswith("ref/")}
    meta = json.loads((FIX / f"{name}.json").read_text())
    return variables, ref, meta


def family(name, hparams=None, meta=None):
    from magenta_api.checkpoint import Checkpoint
    from magenta_api.family import ModelSpec
    from magenta_api_musicvae.family import MusicVAEFamily

    variables, _, _ = load(name)
    spec = ModelSpec(id=name, family="musicvae", hparams=hparams or {})
    return MusicVAEFamily(spec, Checkpoint(variables, "native", meta or {}, "sha"))


def request(mode="sample", num_outputs=1, temperature=0.5, seed=0, inputs=(), primer=None, length=None, **params):
    from magenta_api.family import GenerateRequest

    payload = dict(params, mode=mode, num_outputs=num_outputs, temperature=temperature)
    return GenerateRequest(
        mode=mode,
        num_outputs=num_outputs,
        temperature=temperature,
        length=length,
        qpm=120.0,
        seed=seed,
        rng=np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed))),
        primer=primer,
        inputs=list(inputs),
        params=payload,
    )


def seq_json(notes, qpm=120.0, numerator=4, drums=False):
    """NoteSequence JSON from (pitch, start_step, end_step) 16th-note steps."""
    spq = 60.0 / qpm / 4
    return {
        "ticksPerQuarter": 220,
        "tempos": [{"qpm": qpm}],
        "timeSignatures": [{"numerator": numerator, "denominator": 4}],
        "notes": [
            {
                "pitch": p,
                "velocity": 90,
                "startTime": s * spq,
                "endTime": e * spq,
                "isDrum": drums,
                **({"instrument": 9} if drums else {}),
            }
            for p, s, e in notes
        ],
        "totalTime": max(e for _, _, e in notes) * spq,
    }


def melody(bars=2, offset=0):
    """A monophonic melody of ``bars`` bars, a note every two steps."""
    return seq_json([(60 + offset + (t * 7) % 12, t, t + 2) for t in range(0, bars * 16, 2)])


def drums(bars=2):
    return seq_json(
        [(p, t, t + 1) for t in range(bars * 16) for p in ([36] if t % 4 == 0 else [42] if t % 2 else [38])], drums=True
    )


def tf_tar(name, folder):
    """A .tar laid out like Magenta's published ones (``<folder>/model.ckpt.*``) of a fixture's TF checkpoint."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(FIX.glob(f"{name}.ckpt.*")):
            data = f.read_bytes()
            info = tarfile.TarInfo(f"{folder}/model.ckpt{f.name[len(name) + 5 :]}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def magentajs_files(name, config, quantize=()):
    """{file name: bytes} of a Magenta.js checkpoint of a fixture's weights: weights_manifest.json, 4 MB
    group1-shard files in manifest order, config.json. Weights named in ``quantize`` are stored as uint16
    (``quantization: {dtype, scale, min}``, as the ``_q2`` checkpoints)."""
    variables, _, _ = load(name)
    entries, chunks = [], []
    for k, v in sorted(variables.items()):
        entry = {"name": k, "shape": list(v.shape), "dtype": "float32"}
        if k in quantize:
            lo, hi = float(v.min()), float(v.max())
            scale = (hi - lo) / 65535 or 1.0
            entry["quantization"] = {"dtype": "uint16", "scale": scale, "min": lo}
            chunks.append(np.round((v - lo) / scale).astype("<u2").tobytes())
        else:
            chunks.append(np.asarray(v, "<f4").tobytes())
        entries.append(entry)
    stream = b"".join(chunks)
    shard = 4 << 20
    parts = [stream[i : i + shard] for i in range(0, len(stream), shard)] or [b""]
    paths = [f"group1-shard{i + 1}of{len(parts)}" for i in range(len(parts))]
    files = {"weights_manifest.json": json.dumps([{"paths": paths, "weights": entries}]).encode()}
    files.update(zip(paths, parts))
    files["config.json"] = json.dumps(config).encode()
    return files
