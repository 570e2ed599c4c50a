"""The shard plan (operator/modelrollout/sharding/plan.py), which is pure: the hash that puts a rollout
in a shard, the labels that say which shard, and `plan`, checked exhaustively over small worlds (every
way 2-4 shard Leases can be held by 1-4 replicas) and by simulating replicas that apply their plans in
turns until they agree, also after one of them dies and after one joins."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modelrollout.sharding.plan import (
    SHARD_LABEL,
    SHARDS_LABEL,
    LeaseView,
    Plan,
    World,
    plan,
    shard_in_labels,
    shard_labels,
    shard_of,
    shard_selector,
    unsharded_selector,
)

REPO = Path(__file__).resolve().parents[2]
DURATION = 30.0

# -- shard_of -------------------------------------------------------------------------------------------

#: computed once from sha256; any change to the hash would move every rollout to another shard on upgrade
KNOWN_SHARDS = {
    ("default", "llm"): [0, 0, 0, 0, 4, 0],
    ("team-a", "ranker"): [0, 1, 0, 1, 4, 25],
    ("prod", "search-v2"): [0, 0, 0, 2, 1, 38],
    ("", ""): [0, 1, 0, 3, 2, 3],
}
SHARD_COUNTS = (1, 2, 3, 4, 7, 64)


def test_shard_of_known_values() -> None:
    for (namespace, name), expected in KNOWN_SHARDS.items():
        assert [shard_of(namespace, name, shards) for shards in SHARD_COUNTS] == expected, (namespace, name)


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_shard_of_is_the_same_in_another_process_with_another_hash_seed(seed: str) -> None:
    program = (
        "import json, sys\n"
        "from modelrollout.sharding.plan import shard_of\n"
        "pairs = json.loads(sys.argv[1])\n"
        f"print(json.dumps([[shard_of(ns, name, k) for k in {list(SHARD_COUNTS)}] for ns, name in pairs]))\n"
    )
    pairs = [list(pair) for pair in KNOWN_SHARDS]
    environment = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", program, json.dumps(pairs)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == list(KNOWN_SHARDS.values())


@pytest.mark.parametrize("shards", [2, 3, 4])
def test_shard_of_spreads_names_evenly(shards: int) -> None:
    names = [(f"team-{i % 37}", f"model-{i}") for i in range(10_000)]
    counts = Counter(shard_of(namespace, name, shards) for namespace, name in names)
    mean = len(names) / shards
    assert sorted(counts) == list(range(shards))
    assert all(abs(count - mean) <= 0.1 * mean for count in counts.values()), counts


def test_shard_labels_and_selectors_name_the_same_shard() -> None:
    labels = shard_labels("prod", "search-v2", 4)
    assert labels == {SHARD_LABEL: "2", SHARDS_LABEL: "4"}
    assert shard_in_labels(labels, 4) == 2
    assert shard_selector(2, 4) == f"{SHARD_LABEL}=2,{SHARDS_LABEL}=4"
    assert unsharded_selector(4) == f"{SHARDS_LABEL}!=4"


# -- shard_in_labels -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({SHARD_LABEL: "0", SHARDS_LABEL: "3"}, 0),
        ({SHARD_LABEL: "2", SHARDS_LABEL: "3", "app": "x"}, 2),
        # stale: another generation's labels say nothing about this one
        ({SHARD_LABEL: "1", SHARDS_LABEL: "2"}, None),
        ({SHARD_LABEL: "1", SHARDS_LABEL: "4"}, None),
        ({SHARD_LABEL: "1"}, None),
        ({SHARDS_LABEL: "3"}, None),
        ({}, None),
        # garbage
        ({SHARD_LABEL: "3", SHARDS_LABEL: "3"}, None),
        ({SHARD_LABEL: "-1", SHARDS_LABEL: "3"}, None),
        ({SHARD_LABEL: "one", SHARDS_LABEL: "3"}, None),
        ({SHARD_LABEL: "", SHARDS_LABEL: "3"}, None),
        ({SHARD_LABEL: " 1", SHARDS_LABEL: "3"}, None),
        ({SHARD_LABEL: "1.0", SHARDS_LABEL: "3"}, None),
        ({SHARD_LABEL: "1", SHARDS_LABEL: "03"}, None),
        ({SHARD_LABEL: "1", SHARDS_LABEL: "three"}, None),
        # not how the operator writes shard 1, so the selector `shard=1` does not match it: it must
        # count as unlabelled, or the object would be in neither a shard's nor the relabeller's watch
        ({SHARD_LABEL: "01", SHARDS_LABEL: "3"}, None),
        # digits to str.isdigit() that int() refuses or that are not ASCII (no valid label value has
        # them, but a crash in the plan's helpers would stop the replica)
        ({SHARD_LABEL: "²", SHARDS_LABEL: "3"}, None),
        ({SHARD_LABEL: "\uff11", SHARDS_LABEL: "3"}, None),  # fullwidth 1
    ],
)
def test_shard_in_labels(labels: dict[str, str], expected: int | None) -> None:
    assert shard_in_labels(labels, 3) == expected


def test_shard_in_labels_agrees_with_the_selector_for_every_written_label() -> None:
    for shards in range(1, 9):
        for shard in range(shards):
            assert shard_in_labels({SHARD_LABEL: str(shard), SHARDS_LABEL: str(shards)}, shards) == shard


# -- plan(): every small world -------------------------------------------------------------------------

ME = "r0"
GHOST = "ghost"  # holds a Lease alive but is not among the live members (its member Lease expired first)


@dataclass(frozen=True)
class LeaseChoice:
    """One way a shard's Lease can be, as the replica under test sees it."""

    label: str
    view: LeaseView | None


def lease_choices(shards: int, replicas: int) -> list[LeaseChoice]:
    choices = [
        LeaseChoice("none", None),
        LeaseChoice("released", LeaseView(None, DURATION, 1.0, shards)),
        LeaseChoice("ghost", LeaseView(GHOST, DURATION, 1.0, shards)),
        LeaseChoice("mine, old generation", LeaseView(ME, DURATION, 1.0, shards + 1)),
    ]
    for index in range(replicas):
        holder = f"r{index}"
        choices.append(LeaseChoice(f"{holder} alive", LeaseView(holder, DURATION, 1.0, shards)))
        choices.append(LeaseChoice(f"{holder} expired", LeaseView(holder, DURATION, DURATION + 1, shards)))
    return choices


@dataclass(frozen=True)
class Facts:
    """What the invariants need of a world's Leases, worked out once for all its running sets."""

    fair: int
    held: frozenset[int]
    free: frozenset[int]
    taken: frozenset[int]
    short_members: bool


def facts_of(shards: int, leases: dict[int, LeaseView | None], members: tuple[str, ...]) -> Facts:
    everyone = set(members) | {ME}
    fair = math.ceil(shards / len(everyone))
    held = frozenset(
        shard
        for shard, lease in leases.items()
        if lease is not None and lease.holder == ME and lease.generation == shards and lease.alive()
    )
    free = frozenset(shard for shard, lease in leases.items() if lease is None or not lease.alive())
    counts = Counter(
        lease.holder for lease in leases.values() if lease is not None and lease.alive() and lease.holder != ME
    )
    short = any(counts.get(member, 0) < fair for member in everyone - {ME})
    return Facts(fair, held, free, frozenset(leases) - free, short)


def small_worlds(shards: int, replicas: int) -> Iterator[tuple[Facts, list[World]]]:
    """Every way the Leases can be, each with every set of shards the replica may believe it runs."""
    members = tuple(f"r{index}" for index in range(replicas))
    choices = lease_choices(shards, replicas)
    running_sets = [running for size in range(shards + 1) for running in itertools.combinations(range(shards), size)]
    for combination in itertools.product(choices, repeat=shards):
        leases = {shard: choice.view for shard, choice in enumerate(combination)}
        worlds = [World(ME, shards, leases, members=members, running=running) for running in running_sets]
        yield facts_of(shards, leases, members), worlds


def check_invariants(world: World, facts: Facts, made: Plan) -> None:
    try:
        check_plan(world, facts, made)
    except AssertionError as failure:  # the world is named only on failure: its repr costs more than plan()
        raise AssertionError(f"{world}\n-> {made}") from failure


def check_plan(world: World, facts: Facts, made: Plan) -> None:
    acquired, renewed, released = set(made.acquire), set(made.renew), set(made.release)
    assert made.fair_share == facts.fair
    # never a Lease alive under another holder (or of another generation, even its own)
    assert acquired <= facts.free and not acquired & facts.taken
    assert len(acquired) == len(made.acquire)
    assert renewed | released == facts.held and not renewed & released
    assert set(made.lost) == set(world.running) - facts.held
    kept = len(renewed) + len(acquired)
    if acquired:
        assert kept <= facts.fair
    if released:
        # down to the fair share exactly, and only for a member that is short while nothing is free
        assert len(renewed) == facts.fair and not acquired
        assert not facts.free and facts.short_members
    assert kept <= max(facts.fair, len(facts.held))
    if not acquired and facts.free and len(facts.held) < facts.fair:
        assert made.waiting  # taking nothing while short, with a shard free, has a reason


@pytest.mark.parametrize("shards", [2, 3, 4])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
def test_plan_invariants_in_every_small_world(shards: int, replicas: int) -> None:
    checked = 0
    for facts, worlds in small_worlds(shards, replicas):
        for world in worlds:
            check_invariants(world, facts, plan(world))
            checked += 1
        # another generation alive: the same plan, less every acquisition (what runs changes only
        # `lost`, so running none and all is enough here)
        for world in (worlds[0], worlds[-1]):
            made = plan(world)
            waiting = plan(World(ME, shards, world.leases, world.members, ("old-shard-0",), world.running))
            assert waiting.acquire == () and "old-shard-0" in waiting.waiting, (world, waiting)
            assert (waiting.renew, waiting.release, waiting.lost) == (made.renew, made.release, made.lost)
    assert checked == (4 + 2 * replicas) ** shards * 2**shards


# -- replicas in turns ----------------------------------------------------------------------------------


@dataclass
class StoredLease:
    holder: str | None
    generation: int
    changed_at: float
    version: int = 1


@dataclass
class Replica:
    identity: str
    running: set[int] = field(default_factory=set)
    alive: bool = True
    died_at: float = 0.0


class Simulation:
    """Leases in a store with optimistic concurrency: every replica plans from the same snapshot, then
    each in turn writes; a write to a Lease that changed since the snapshot fails (409), so the first
    taker of a free Lease wins. Time moves a quarter of a Lease's duration per round."""

    def __init__(self, shards: int, replicas: int) -> None:
        self.shards = shards
        self.now = 0.0
        self.leases: dict[int, StoredLease] = {}
        self.replicas = [Replica(f"replica-{index}") for index in range(replicas)]
        self.joined = replicas
        self.rounds = 0

    def live(self) -> list[Replica]:
        return [replica for replica in self.replicas if replica.alive]

    def members(self) -> tuple[str, ...]:
        # a dead replica's member Lease stays alive until it expires, as a shard Lease does
        return tuple(r.identity for r in self.replicas if r.alive or self.now - r.died_at < DURATION)

    def view(self, lease: StoredLease | None) -> LeaseView | None:
        if lease is None:
            return None
        return LeaseView(lease.holder, DURATION, self.now - lease.changed_at, lease.generation)

    def round(self) -> None:
        snapshot = {shard: (lease.version if lease else 0) for shard, lease in self.leases.items()}
        views = {shard: self.view(self.leases.get(shard)) for shard in range(self.shards)}
        members = self.members()
        live = self.live()
        plans = [(r, plan(World(r.identity, self.shards, views, members, (), tuple(r.running)))) for r in live]
        offset = self.rounds % max(len(plans), 1)
        for replica, made in plans[offset:] + plans[:offset]:
            replica.running -= set(made.lost) | set(made.release)
            for shard in made.release:
                self.write(shard, None, snapshot)
            for shard in made.renew:
                assert self.write(shard, replica.identity, snapshot), (shard, replica, made)
            for shard in made.acquire:
                if self.write(shard, replica.identity, snapshot):
                    replica.running.add(shard)
            replica.running |= set(made.renew)
        self.rounds += 1
        self.now += DURATION / 4
        self.check_safety()

    def write(self, shard: int, holder: str | None, snapshot: dict[int, int]) -> bool:
        lease = self.leases.get(shard)
        if (lease.version if lease else 0) != snapshot.get(shard, 0):
            return False
        if lease is None:
            self.leases[shard] = StoredLease(holder, self.shards, self.now)
        else:
            lease.holder, lease.generation, lease.changed_at = holder, self.shards, self.now
            lease.version += 1
        return True

    def check_safety(self) -> None:
        """At every moment, a shard runs in at most one live replica, and only in its Lease's holder."""
        owners: dict[int, str] = {}
        for replica in self.live():
            for shard in replica.running:
                assert shard not in owners, f"shard {shard} runs in {owners[shard]} and {replica.identity}"
                owners[shard] = replica.identity
                assert self.leases[shard].holder == replica.identity, (shard, replica, self.leases[shard])

    def settled(self) -> bool:
        live = self.live()
        fair = math.ceil(self.shards / len(live))
        owners = Counter(shard for replica in live for shard in replica.running)
        return (
            sorted(owners) == list(range(self.shards))
            and all(count == 1 for count in owners.values())
            and all(len(replica.running) <= fair for replica in live)
            and all(self.leases[s].holder in {r.identity for r in live} for s in range(self.shards))
        )

    def converge(self, rounds: int = 60) -> int:
        """Run until settled and still settled for a Lease's duration more; return the rounds it took."""
        start = self.rounds
        while not self.settled():
            assert self.rounds - start < rounds, self.describe()
            self.round()
        taken = self.rounds - start
        for _ in range(8):
            self.round()
            assert self.settled(), self.describe()
        return taken

    def kill(self, index: int) -> None:
        self.replicas[index].alive = False
        self.replicas[index].died_at = self.now

    def join(self) -> None:
        self.replicas.append(Replica(f"replica-{self.joined}"))
        self.joined += 1

    def describe(self) -> str:
        return (
            f"{self.shards} shards after {self.rounds} rounds: "
            + ", ".join(f"{r.identity}{'' if r.alive else ' (dead)'} runs {sorted(r.running)}" for r in self.replicas)
            + f"; leases {self.leases}"
        )


SIZES: Sequence[tuple[int, int]] = [(shards, replicas) for shards in range(1, 5) for replicas in range(1, 5)]


@pytest.mark.parametrize(("shards", "replicas"), SIZES)
def test_replicas_converge(shards: int, replicas: int) -> None:
    simulation = Simulation(shards, replicas)
    simulation.converge()


@pytest.mark.parametrize(("shards", "replicas"), [size for size in SIZES if size[1] > 1])
def test_replicas_converge_after_one_dies(shards: int, replicas: int) -> None:
    simulation = Simulation(shards, replicas)
    simulation.converge()
    # the one that holds the most dies: its shards must be taken over once its Leases expire
    busiest = max(range(replicas), key=lambda index: len(simulation.replicas[index].running))
    orphaned = set(simulation.replicas[busiest].running)
    simulation.kill(busiest)
    simulation.converge()
    for shard in orphaned:
        assert simulation.leases[shard].holder != simulation.replicas[busiest].identity


@pytest.mark.parametrize(("shards", "replicas"), SIZES)
def test_replicas_converge_after_one_joins(shards: int, replicas: int) -> None:
    simulation = Simulation(shards, replicas)
    simulation.converge()
    fair = math.ceil(shards / (replicas + 1))
    over_the_new_share = sum(max(0, len(r.running) - fair) for r in simulation.replicas)
    simulation.join()
    simulation.converge()
    newcomer = simulation.replicas[-1]
    # what the others held beyond the share they have with the newcomer is released to it; with
    # ceil() shares a newcomer may stay idle (4 shards, 3 replicas: 2, 2, 0), which is within the share
    assert len(newcomer.running) >= min(over_the_new_share, fair), simulation.describe()
