"""Reading models.yaml files: JSON-Schema validation with errors that name file, model and field,
relative checkpoint paths resolved against the file, and merging model by model."""

from pathlib import Path

import jsonschema
import yaml

from . import schemas
from .errors import MagentaApiError
from .family import ModelSpec


class ModelsFileError(MagentaApiError):
    """A models.yaml that cannot be used; the message names the file, the model and the field."""

    code = "models_file_invalid"


def _resolve_url(url: str, base: Path | None) -> str:
    if "://" in url or base is None:
        return url
    return (base / url).resolve().as_uri()


def _describe(error: jsonschema.ValidationError, source: str) -> str:
    path = list(error.absolute_path)
    where = f"{source}"
    if len(path) >= 2 and path[0] == "models":
        where += f": model {path[1]!r}"
        rest = path[2:]
        if rest:
            where += f", field {'.'.join(str(p) for p in rest)}"
    elif path:
        where += f": field {'.'.join(str(p) for p in path)}"
    return f"{where}: {error.message}"


def parse(data: dict | None, source: str, base: Path | None = None) -> tuple:
    """Validate one parsed models document; returns ({id: ModelSpec}, default_model or None)."""
    data = data or {}
    validator = jsonschema.Draft202012Validator(schemas.load("models"))
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        raise ModelsFileError(_describe(error, source))
    specs = {}
    for model_id, entry in (data.get("models") or {}).items():
        checkpoint = entry.get("checkpoint")
        if checkpoint:
            checkpoint = {"sha256": "", "size": None, "mirrors": [], **checkpoint}
            checkpoint["url"] = _resolve_url(checkpoint["url"], base)
            checkpoint["mirrors"] = [_resolve_url(m, base) for m in checkpoint["mirrors"]]
        specs[model_id] = ModelSpec(
            id=model_id,
            family=entry["family"],
            description=entry.get("description", ""),
            hparams=entry.get("hparams") or {},
            defaults=entry.get("defaults") or {},
            limits=entry.get("limits") or {},
            checkpoint=checkpoint,
            source=source,
            serving=entry.get("serving") or {},
        )
    return specs, data.get("default_model")


def load_file(path: Path) -> tuple:
    """Read and validate one models.yaml file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ModelsFileError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ModelsFileError(f"{path}: not valid YAML: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise ModelsFileError(f"{path}: expected a mapping with a 'models' key")
    return parse(data, str(path), path.parent)


def validate_hparams(spec: ModelSpec, schema: dict) -> None:
    """Check a model's hparams against its family's schema, naming file, model and field."""
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(spec.hparams), key=lambda e: list(e.absolute_path)):
        field = ".".join(str(p) for p in error.absolute_path) or "(hparams)"
        raise ModelsFileError(f"{spec.source}: model {spec.id!r}, field hparams.{field}: {error.message}")
