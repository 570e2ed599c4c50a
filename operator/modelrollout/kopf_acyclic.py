"""kopf's object wrappers without reference cycles.

kopf wraps every watch event's object in a `Body` and every handling cycle's changes in a `Patch`,
and both keep views of themselves (`body.meta` holds the body, `meta.labels` holds the meta), so
each is a reference cycle that outlives the event until the garbage collector finds it, holding the
whole parsed object. At 10,000 rollouts those cycles were most of what the young collections
found (kopf 1.45: 69,000 objects of Body, Patch and their views per 20 s at 200 rollouts), and
their objects, kept alive across awaits, were promoted into the old generations.

Here the views are made when they are asked for instead of stored: a view still reads through to
the body or patch it was made from (and so still sees `Body._replace_with`), and the body or patch
is freed by reference counting as soon as kopf drops it. `install()` is idempotent;
`tests/unit/test_kopf_acyclic.py` fails if a kopf upgrade brings the cycles back.
"""

from __future__ import annotations

from typing import Any

from kopf._cogs.structs import bodies, dicts, patches

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True

    def body_init(self: bodies.Body, src: Any) -> None:
        dicts.ReplaceableMappingView.__init__(self, src)

    def meta_init(self: bodies.Meta, src: bodies.Body) -> None:
        dicts.MappingView.__init__(self, src, "metadata")

    original_patch_init = patches.Patch.__init__

    def patch_init(self: patches.Patch, src: dict[str, Any] | None = None, /, **kwargs: Any) -> None:
        original_patch_init(self, src, **kwargs)
        del self._meta, self._spec, self._status

    def meta_patch_init(self: patches.MetaPatch, src: patches.Patch) -> None:
        dicts.MutableMappingView.__init__(self, src, "metadata")

    replacements: dict[type, dict[str, Any]] = {
        bodies.Body: {"__init__": body_init, **_root_views(bodies.Meta, bodies.Spec, bodies.Status)},
        bodies.Meta: {"__init__": meta_init, **_meta_views(dicts.MappingView)},
        patches.Patch: {
            "__init__": patch_init,
            **_root_views(patches.MetaPatch, patches.SpecPatch, patches.StatusPatch),
        },
        patches.MetaPatch: {"__init__": meta_patch_init, **_meta_views(dicts.MutableMappingView)},
    }
    for cls, attributes in replacements.items():
        for name, value in attributes.items():
            setattr(cls, name, value)


def _root_views(meta: type, spec: type, status: type) -> dict[str, property]:
    """`meta` (alias `metadata`), `spec` and `status` of a Body or Patch, made on each access."""
    meta_view = property(lambda self: meta(self))
    return {
        "meta": meta_view,
        "metadata": meta_view,
        "spec": property(lambda self: spec(self)),
        "status": property(lambda self: status(self)),
    }


def _meta_views(view: type) -> dict[str, property]:
    """`labels` and `annotations` of a Meta or MetaPatch, made on each access."""
    return {
        "labels": property(lambda self: view(self, "labels")),
        "annotations": property(lambda self: view(self, "annotations")),
    }
