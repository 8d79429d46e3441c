"""models.yaml: validation errors name file, model and field; relative paths; overrides."""

import pytest
import yaml

from magenta_api.config import REPO_MODELS_FILE
from magenta_api.models_file import ModelsFileError, load_file
from magenta_api.testing import make_service


def write(path, doc):
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return path


def test_repository_models_file_is_valid_and_declares_published_checkpoints():
    specs, _ = load_file(REPO_MODELS_FILE)
    for spec in specs.values():
        assert spec.checkpoint["url"].startswith(("https://", "http://"))
        assert spec.checkpoint["sha256"] in ("", None) or len(spec.checkpoint["sha256"]) == 64


def test_bad_field_names_file_model_and_field(tmp_path):
    path = write(
        tmp_path / "m.yaml", {"models": {"x1": {"family": "toy", "checkpoint": {"url": "a", "format": "zip"}}}}
    )
    with pytest.raises(ModelsFileError) as info:
        load_file(path)
    text = str(info.value)
    assert str(path) in text and "'x1'" in text and "checkpoint.format" in text


def test_missing_family_and_bad_yaml(tmp_path):
    with pytest.raises(ModelsFileError, match=r"'y'.*'family' is a required property"):
        load_file(write(tmp_path / "a.yaml", {"models": {"y": {"description": "no family"}}}))
    with pytest.raises(ModelsFileError, match="not valid YAML"):
        load_file(write(tmp_path / "b.yaml", "models: [unclosed"))
    with pytest.raises(ModelsFileError, match="cannot read"):
        load_file(tmp_path / "missing.yaml")


def test_relative_checkpoint_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write(
        tmp_path / "sub" / "m.yaml",
        {
            "models": {
                "z": {
                    "family": "toy",
                    "checkpoint": {"url": "w/z.safetensors", "format": "native", "mirrors": ["../m.bin"]},
                }
            }
        },
    )
    specs, _ = load_file(path)
    ck = specs["z"].checkpoint
    assert ck["url"] == (tmp_path / "sub" / "w" / "z.safetensors").as_uri()
    assert ck["mirrors"] == [(tmp_path / "m.bin").as_uri()]
    assert ck["sha256"] == "" and ck["size"] is None


def test_deployment_file_overrides_and_adds(tmp_path):
    import toy_plugin

    override = write(
        tmp_path / "override.yaml",
        {
            "default_model": "toy-c",
            "models": {
                "toy-a": {"family": "toy", "hparams": {"low": 30}, "description": "overridden"},
                "toy-c": {"family": "toy", "hparams": {"low": 50}},
            },
        },
    )
    service = make_service(tmp_path, plugins=[toy_plugin], models=dict(toy_plugin.TOY_MODELS), extra_models_files=[])
    assert service.registry.models["toy-a"].hparams["low"] == 60
    service = make_service(tmp_path / "2", plugins=[toy_plugin], extra_models_files=[override])
    assert service.registry.models["toy-a"].description == "overridden"
    assert service.registry.default_model == "toy-c"
    assert service.registry.spec(None).id == "toy-c"


def test_hparams_checked_against_family_schema_at_start(tmp_path):
    import toy_plugin

    with pytest.raises(ModelsFileError, match=r"model 'toy-z', field hparams.low"):
        make_service(tmp_path, plugins=[toy_plugin], models={"toy-z": {"family": "toy", "hparams": {"low": "high"}}})


def test_unknown_default_model_is_an_error(tmp_path):
    import toy_plugin

    with pytest.raises(ModelsFileError, match="default_model 'ghost'"):
        make_service(tmp_path, plugins=[toy_plugin], models=dict(toy_plugin.TOY_MODELS), default_model="ghost")


def test_model_of_missing_family_is_listed_unavailable(tmp_path):
    from magenta_api.app import create_app

    service = make_service(tmp_path, models={"orphan": {"family": "nobody"}})
    client = create_app(service.settings, service=service).test_client()
    info = client.get("/v1/models/orphan").get_json()
    assert info["available"] is False and "not provided" in info["error"]
    resp = client.post("/v1/generate", json={"model": "orphan"})
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "family_unavailable"
