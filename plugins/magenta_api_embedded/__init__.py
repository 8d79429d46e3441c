"""Embedded default models: small MusicVAE (2-bar melody and drums, 16-bar hierarchical melody) and
MelodyRNN weights trained by this project on public-domain tune books and its own groove library,
shipped in the package.

They need no network: ``models.yaml`` next to this file points at the ``.safetensors`` files
beside it (format ``native``), and sets ``default_model``. The families that run them come from
the ``musicvae`` and ``melody_rnn`` plugins. Model cards: ``MODEL_CARD-<id>.md``.
"""

from pathlib import Path

from magenta_api import hookimpl

__version__ = "0.1.0"

HERE = Path(__file__).resolve().parent
MODELS_FILE = HERE / "models.yaml"


def model_cards() -> dict:
    """{model id: path of its model card}."""
    return {p.stem[len("MODEL_CARD-") :]: p for p in sorted(HERE.glob("MODEL_CARD-*.md"))}


@hookimpl
def register_models(register):
    register(MODELS_FILE)
