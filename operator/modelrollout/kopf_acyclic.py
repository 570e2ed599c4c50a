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

    body_meta = property(lambda self: bodies.Meta(self))
    patch_meta = property(lambda self: patches.MetaPatch(self))
    replacements: dict[type, dict[str, Any]] = {
        bodies.Body: {
            "__init__": body_init,
            "meta": body_meta,
            "metadata": body_meta,
            "spec": property(lambda self: bodies.Spec(self)),
            "status": property(lambda self: bodies.Status(self)),
        },
        bodies.Meta: {
            "__init__": meta_init,
            "labels": property(lambda self: dicts.MappingView(self, "labels")),
            "annotations": property(lambda self: dicts.MappingView(self, "annotations")),
        },
        patches.Patch: {
            "__init__": patch_init,
            "meta": patch_meta,
            "metadata": patch_meta,
            "spec": property(lambda self: patches.SpecPatch(self)),
            "status": property(lambda self: patches.StatusPatch(self)),
        },
        patches.MetaPatch: {
            "__init__": meta_patch_init,
            "labels": property(lambda self: dicts.MutableMappingView(self, "labels")),
            "annotations": property(lambda self: dicts.MutableMappingView(self, "annotations")),
        },
    }
    for cls, attributes in replacements.items():
        for name, value in attributes.items():
            setattr(cls, name, value)
