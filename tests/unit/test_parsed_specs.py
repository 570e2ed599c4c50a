"""A pass parses its rollout's spec once, and a spec it was handed parsed is not parsed again."""

from __future__ import annotations

import pytest

from modelrollout.api.models import Phase
from modelrollout.api.validation import InvalidSpec, parse_or_refusal
from modelrollout.engine.common import revision_of
from modelrollout.engine.machine import decide, needs
from modelrollout.engine.types import RolloutRef
from modelrollout.runtime.cache import ParsedSpecs
from tests.unit.world import World, make_spec


def test_the_spec_is_parsed_once_per_ref_and_the_revision_depends_on_model_and_template_only() -> None:
    ref = RolloutRef("fraud-scorer", "ml", 1, make_spec())
    first = ref.spec_model()
    assert ref.spec_model() is first
    revision = revision_of(first)
    assert revision == revision_of(RolloutRef("other", "ml", 1, make_spec(replicas=9)).spec_model())
    assert revision != revision_of(RolloutRef("fraud-scorer", "ml", 1, make_spec("2.0.0")).spec_model())


def test_a_parsed_spec_handed_in_is_used_as_it_is() -> None:
    world = World(make_spec("1.0.0"))
    world.run(Phase.SUCCEEDED)
    parsed = RolloutRef("fraud-scorer", "ml", 1, make_spec("2.0.0")).spec_model()
    # The raw spec says 1.0.0; the parsed spec handed in (the operator's, for the same dict) is used.
    ref = RolloutRef("fraud-scorer", "ml", 2, make_spec("1.0.0"), parsed=parsed)
    decision = decide(ref, world.status, world.observations(), world.now)
    assert decision.status.candidate_version == "2.0.0"


def test_an_invalid_spec_is_refused_every_time_with_its_fields() -> None:
    refusal = parse_or_refusal({**make_spec(), "replicas": -1})
    assert isinstance(refusal, InvalidSpec)
    ref = RolloutRef("fraud-scorer", "ml", 1, {}, parsed=refusal)
    for _ in range(2):
        with pytest.raises(InvalidSpec) as raised:
            ref.spec_model()
        assert raised.value is not refusal  # a fresh exception: the kept one gathers no tracebacks
        assert "spec.replicas" in str(raised.value)
    world = World(make_spec())
    assert needs(ref, world.status, world.now, world.deployments).measurements == []
    refused = decide(ref, world.status, world.observations(), world.now)
    assert "spec.replicas" in refused.status.message


def test_the_operator_keeps_each_rollouts_parsed_spec_until_the_spec_or_its_templates_change() -> None:
    specs = ParsedSpecs()
    key = ("ml", "fraud-scorer")
    raw = make_spec("1.0.0")
    first = specs.read(key, raw, {})
    assert specs.read(key, make_spec("1.0.0"), {}) is first  # equal content, another dict
    raw["model"]["version"] = "2.0.0"  # changed in place by whoever holds it: still seen as a change
    changed = specs.read(key, raw, {})
    assert changed is not first and not isinstance(changed, InvalidSpec)
    assert changed.model.version == "2.0.0"
    template = {"metrics": [{"name": "x", "prometheus": {"query": "up"}, "threshold": {"max": 1}}]}
    assert specs.read(key, raw, {"tpl": template}) is not changed  # a named template changed
    assert len(specs) == 1
    specs.forget(key)  # the rollout was deleted
    assert len(specs) == 0
