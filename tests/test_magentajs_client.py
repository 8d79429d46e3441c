"""Magenta.js (@magenta/music 1.23.1, in Node) as a client: the service's `json_style: magentajs` output goes
into Magenta.js's own functions as is (`sequenceProtoToMidi`, then `midiToSequenceProto`) and comes back with
the same notes. Node and npm are installed by .ci/run; the packages come from tests/js/package-lock.json."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from magenta_api.testing import make_app

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def magentajs():
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "the Magenta.js client test needs node and npm (.ci/run installs them)"
    if not (JS / "node_modules" / "@magenta" / "music").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=JS, check=True, timeout=600)

    def roundtrip(sequences):
        proc = subprocess.run(
            [node, "roundtrip.js"], cwd=JS, input=json.dumps(sequences), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    return roundtrip


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return make_app(tmp_path_factory.mktemp("js"), entry_points=["musicvae", "melody_rnn", "embedded"]).test_client()


@pytest.mark.parametrize(
    "request_body",
    [
        {"model": "embedded-mel_2bar", "num_outputs": 2, "seed": 4},
        {"model": "embedded-drums_2bar", "seed": 4},
        {"model": "embedded-basic_rnn", "primer": [60, -2, 62, -2], "length": 32, "seed": 4},
    ],
)
def test_magentajs_reads_the_magentajs_json_style_as_is(client, magentajs, request_body):
    body = client.post("/v1/generate", json={**request_body, "json_style": "magentajs"}).get_json()
    sequences = body["sequences"]
    assert all(n["startTime"] == 0 for n in sequences[0]["notes"][:1])  # zero times spelt out
    assert all("controlChanges" in s for s in sequences)  # empty lists too
    for ours, theirs in zip(sequences, magentajs(sequences)):
        notes = sorted(ours["notes"], key=lambda n: (n["startTime"], n["pitch"]))
        got = sorted(zip(theirs["starts"], theirs["pitches"], theirs["drums"]))
        assert [n["pitch"] for n in notes] == [p for _, p, _ in got]
        assert [n["startTime"] for n in notes] == pytest.approx([s for s, _, _ in got], abs=1e-3)
        assert [n["isDrum"] for n in notes] == [d for _, _, d in got]


def test_the_default_style_is_the_protobuf_json_mapping(client):
    body = client.post("/v1/generate", json={"model": "embedded-mel_2bar", "seed": 4}).get_json()
    first = body["sequences"][0]
    assert "controlChanges" not in first and "startTime" not in first["notes"][0]
