"""The hooks a plugin implements (pluggy, in the style of simonw/llm and datasette).

A plugin is any module registered under the ``magenta_api`` entry-point group; it marks
its implementations with :data:`hookimpl`::

    from magenta_api import hookimpl

    @hookimpl
    def register_families(register):
        register(MyFamily)
"""

import pluggy

hookspec = pluggy.HookspecMarker("magenta_api")
hookimpl = pluggy.HookimplMarker("magenta_api")


@hookspec
def register_families(register):
    """Register generator families: call ``register(FamilyClass)`` for each subclass of
    :class:`magenta_api.family.Family` the plugin provides."""


@hookspec
def register_models(register):
    """Declare models the plugin ships: call ``register(path_or_mapping)`` with a
    models.yaml path (``pathlib.Path``) or an already-parsed mapping of the same shape.
    Relative checkpoint paths resolve against the file's folder."""
