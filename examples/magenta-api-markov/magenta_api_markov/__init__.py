"""Example magenta-api plugin: registers the ``markov`` family and declares one model."""

from pathlib import Path

from magenta_api import hookimpl

from .family import MarkovMelody


@hookimpl
def register_families(register):
    register(MarkovMelody)


@hookimpl
def register_models(register):
    register(Path(__file__).with_name("models.yaml"))
