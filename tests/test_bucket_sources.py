"""Checkpoints in a private S3 bucket, served by a real S3 API on 127.0.0.1 (moto's server, with IAM
authentication on): fetched with the credentials in the environment, verified, resumed, mirrors in order,
a refused credential a 503 that says so."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import pytest
import requests
import toy_plugin
from conftest import free_port

from magenta_api.store import CheckpointStore, CheckpointUnavailable, save_native, sources
from magenta_api.store.buckets import handles
from magenta_api.store.download import download, part_path
from magenta_api.testing import make_app

POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 + IAM server; the first 3 calls (making a user, its key and its policy) need no
    credentials, every later one is checked against that key."""
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{endpoint}/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline and proc.poll() is None, "moto_server did not start"
            time.sleep(0.1)
    anon = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "x",
        "aws_secret_access_key": "y",
    }
    iam = boto3.client("iam", **anon)
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    iam.put_user_policy(UserName="reader", PolicyName="s3", PolicyDocument=POLICY)
    creds = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds)
    client.create_bucket(Bucket="private")
    native = tmp_path_factory.mktemp("s3") / "w.safetensors"
    save_native(native, {"offset": np.array([7], np.float32)})
    client.put_object(Bucket="private", Key="ckpt/w.safetensors", Body=native.read_bytes())
    big = np.random.default_rng(0).bytes(3 << 20)
    client.put_object(Bucket="private", Key="big.bin", Body=big)
    yield {
        "endpoint": endpoint,
        "env": {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        "native": native.read_bytes(),
        "big": big,
    }
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def aws_env(s3, monkeypatch):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3["env"].items():
        monkeypatch.setenv(name, value)
    return s3


def scaled(url, sha="", mirrors=()):
    checkpoint = {"url": url, "format": "native", "sha256": sha, "mirrors": list(mirrors)}
    return {"scaled-s3": {"family": "scaled", "checkpoint": checkpoint}}


def app(tmp_path, models):
    store = CheckpointStore(tmp_path / "models", retries=1, backoff=0.01)
    return make_app(tmp_path, plugins=[toy_plugin], models=models, store=store).test_client()


def test_a_private_bucket_checkpoint_fetches_verifies_and_generates(tmp_path, aws_env):
    sha = hashlib.sha256(aws_env["native"]).hexdigest()
    client = app(tmp_path, scaled("s3://private/ckpt/w.safetensors", sha))
    assert client.get("/v1/models/scaled-s3").get_json()["state"] == "missing"
    resp = client.post("/v1/generate", json={"model": "scaled-s3", "seed": 1})
    assert resp.status_code == 200, resp.get_json()
    assert {n["pitch"] for n in resp.get_json()["notes"]} == {67}  # offset 7 read from the bucket's file
    info = client.get("/v1/models/scaled-s3").get_json()
    assert info["state"] == "ready" and info["checkpoint"]["sha256"] == sha


def test_a_wrong_credential_is_a_503_that_says_so(tmp_path, aws_env, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    client = app(tmp_path, scaled("s3://private/ckpt/w.safetensors"))
    resp = client.post("/v1/generate", json={"model": "scaled-s3"})
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    err = resp.get_json()["error"]
    assert err["code"] == "checkpoint_unavailable"
    assert "access to s3://private/ckpt/w.safetensors was refused" in err["message"]
    assert "AWS_ACCESS_KEY_ID" in err["message"]
    leftovers = [p for p in (tmp_path / "models").rglob("*") if p.is_file() and p.suffix in (".part", ".safetensors")]
    assert leftovers == []


def test_mirrors_are_tried_in_order(tmp_path, aws_env):
    models = scaled(
        "s3://private/gone/w.safetensors",
        mirrors=["s3://no-such-bucket/w.safetensors", "s3://private/ckpt/w.safetensors"],
    )
    client = app(tmp_path, models)
    resp = client.post("/v1/generate", json={"model": "scaled-s3", "seed": 1})
    assert resp.status_code == 200, resp.get_json()
    assert {n["pitch"] for n in resp.get_json()["notes"]} == {67}


def test_missing_everywhere_is_a_503_naming_each_url(tmp_path, aws_env):
    client = app(tmp_path, scaled("s3://private/gone.safetensors", mirrors=["s3://private/also-gone.safetensors"]))
    err = client.post("/v1/generate", json={"model": "scaled-s3"}).get_json()["error"]
    assert err["code"] == "checkpoint_unavailable"
    assert "s3://private/gone.safetensors does not exist" in err["message"] and "also-gone" in err["message"]


def test_a_cut_download_resumes_from_the_bytes_on_disk(tmp_path, aws_env):
    big = aws_env["big"]
    dest = tmp_path / "big.bin"
    part_path(dest).write_bytes(big[: 2 << 20])  # an earlier attempt stopped after 2 MiB
    seen = []
    sha, size = download(
        "s3://private/big.bin",
        dest,
        expected_sha256=hashlib.sha256(big).hexdigest(),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert (sha, size) == (hashlib.sha256(big).hexdigest(), len(big)) and dest.read_bytes() == big
    assert seen[0][0] > 2 << 20 and seen[-1] == (len(big), len(big))  # it went on from 2 MiB
    assert not part_path(dest).exists()


def test_a_part_longer_than_the_object_starts_over(tmp_path, aws_env):
    dest = tmp_path / "w.safetensors"
    part_path(dest).write_bytes(b"x" * (len(aws_env["native"]) + 10))
    sha, _ = download("s3://private/ckpt/w.safetensors", dest)
    assert dest.read_bytes() == aws_env["native"] and sha == hashlib.sha256(aws_env["native"]).hexdigest()


def test_schemes():
    assert handles("s3://b/k") and handles("az://c/k") and not handles("https://x/y") and not handles("file:///x")
    assert sources.normalize("s3://b/k.tar") == "s3://b/k.tar"
    assert sources.basename("s3://b/dir/k.tar") == "k.tar"
    # without gcsfs, gs:// stays the public https address of the object
    assert not handles("gs://magentadata/x.tar")
    assert sources.normalize("gs://magentadata/x.tar") == "https://storage.googleapis.com/magentadata/x.tar"


def test_a_bucket_library_that_is_not_installed_says_which_extra(tmp_path):
    with pytest.raises(
        CheckpointUnavailable, match=r"az:// checkpoints need adlfs: pip install 'magenta-api\[azure\]'"
    ):
        download("az://container/w.safetensors", tmp_path / "w.safetensors")


def test_an_unreachable_endpoint_is_retried_then_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(CheckpointUnavailable, match="failed after 1 retries: cannot reach s3://private/w"):
        download("s3://private/w", tmp_path / "w", retries=1, backoff=0.01)
