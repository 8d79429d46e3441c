"""API keys: hashed in API_KEYS_FILE, Bearer or X-API-Key, 401 JSON otherwise, probes open, the keys CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import toy_plugin

from magenta_api.auth import KeysFileError, KeyStore, Unauthorized, hash_key, presented_key
from magenta_api.cli import main
from magenta_api.config import Settings
from magenta_api.testing import make_app

CLI = [str(Path(sys.executable).parent / "magenta-api")]
BODY = {"model": "toy-a", "seed": 3}


def app_with_keys(tmp_path, keys_file, **settings):
    return make_app(
        tmp_path, plugins=[toy_plugin], models=dict(toy_plugin.TOY_MODELS), api_keys_file=keys_file, **settings
    ).test_client()


def test_no_keys_file_means_no_keys(client):
    assert client.post("/v1/generate", json=BODY).status_code == 200
    assert Settings.from_env({}).api_keys_file is None


def test_401_without_or_with_a_wrong_key_200_with_a_good_one(tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    good = keys.add("alice")
    client = app_with_keys(tmp_path, keys.path)

    missing = client.post("/v1/generate", json=BODY)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    err = missing.get_json()["error"]
    assert err["code"] == "unauthorized" and "Authorization: Bearer" in err["message"] and err["request_id"]

    wrong = client.post("/v1/generate", json=BODY, headers={"Authorization": f"Bearer {good}x"})
    assert wrong.status_code == 401 and "not valid" in wrong.get_json()["error"]["message"]
    assert client.get("/v1/models", headers={"X-API-Key": "mk_nope"}).status_code == 401

    assert client.post("/v1/generate", json=BODY, headers={"Authorization": f"Bearer {good}"}).status_code == 200
    assert client.get("/v1/models", headers={"X-API-Key": good}).status_code == 200
    for path in ("/healthz", "/readyz", "/metrics"):  # probes and scrapes stay open
        assert client.get(path).status_code in (200, 503)
        assert client.get(path).status_code != 401
    assert client.options("/v1/generate").status_code != 401  # CORS preflights carry no key


def test_keys_are_stored_hashed_and_revocation_is_read_on_the_next_request(tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    key = keys.add("bob", rate_limit="5/minute")
    text = (tmp_path / "keys.json").read_text()
    assert key not in text and hash_key(key) in text
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    replicas = [app_with_keys(tmp_path / n, keys.path) for n in ("a", "b")]
    for client in replicas:
        assert client.get("/v1/models", headers={"X-API-Key": key}).status_code == 200
    KeyStore(keys.path).revoke("bob")  # as `magenta-api keys revoke` does, from another process
    for client in replicas:
        assert client.get("/v1/models", headers={"X-API-Key": key}).status_code == 401
    [entry] = keys.entries()
    assert entry["name"] == "bob" and entry["revoked"] and "sha256" not in entry and entry["prefix"] == key[:7]


def test_keystore_errors(tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    keys.add("a")
    with pytest.raises(KeysFileError, match="exists"):
        keys.add("a")
    with pytest.raises(KeysFileError, match="not a rate limit"):
        keys.add("b", rate_limit="lots")
    with pytest.raises(KeysFileError, match="needs a name"):
        keys.add(" ")
    with pytest.raises(KeysFileError, match="no active key"):
        keys.revoke("zed")
    with pytest.raises(Unauthorized):
        keys.authenticate({"Authorization": "Basic abc"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeysFileError, match="cannot read"):
        KeyStore(tmp_path / "bad.json").entries()
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(KeysFileError, match="no 'keys' list"):
        app_with_keys(tmp_path, tmp_path / "list.json")  # a broken keys file stops start-up
    assert presented_key({"Authorization": "bearer  k1 "}) == "k1"
    assert presented_key({"X-API-Key": " k2"}) == "k2"
    assert presented_key({"Authorization": "Bearer "}) is None


def test_a_keys_file_that_breaks_while_serving_is_a_json_500(tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    key = keys.add("a")
    client = app_with_keys(tmp_path, keys.path)
    keys.path.write_text("{")
    resp = client.get("/v1/models", headers={"X-API-Key": key})
    assert resp.status_code == 500 and resp.get_json()["error"]["code"] == "keys_file_invalid"


def test_keys_cli(tmp_path, monkeypatch, capsys):
    env = {"API_KEYS_FILE": str(tmp_path / "keys.json"), "PATH": "/usr/bin:/bin"}
    added = subprocess.run(
        [*CLI, "keys", "add", "carol", "--rate-limit", "10/minute"], env=env, capture_output=True, text=True, timeout=60
    )
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("mk_") and len(key) > 40 and "shown only now" in added.stderr
    KeyStore(tmp_path / "keys.json").authenticate({"X-API-Key": key})

    monkeypatch.setenv("API_KEYS_FILE", env["API_KEYS_FILE"])

    def run(*args):
        code = main(["keys", *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = run("list")
    assert code == 0 and "carol" in out and "10/minute" in out and key not in out
    assert json.loads(run("list", "--json")[1])[0]["name"] == "carol"
    assert run("revoke", "carol")[0] == 0
    code, _, err = run("revoke", "carol")
    assert code == 2 and "no active key named 'carol'" in err
    assert run("add")[0] == 2
    with pytest.raises(Unauthorized):
        KeyStore(tmp_path / "keys.json").authenticate({"X-API-Key": key})
    monkeypatch.delenv("API_KEYS_FILE")
    code, _, err = run("list")
    assert code == 2 and "API_KEYS_FILE" in err
    assert main(["keys", "list", "--file", env["API_KEYS_FILE"]]) == 0


def test_worker_needs_redis_url(monkeypatch, capsys):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["worker", "--burst"]) == 2
    assert "REDIS_URL" in capsys.readouterr().out
