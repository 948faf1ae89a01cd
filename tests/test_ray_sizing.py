"""The plan-time check that keeps ``score --engine ray`` from deadlocking (scoring.ray_engine.size_actors).

The pipeline hangs when the scoring actors hold every CPU, because the read tasks that feed them
can never be scheduled; these cases are the arithmetic. The real cluster runs are in
tests/test_ray_cluster.py (a refusal and an automatically sized run on two raylets, and the stall
watchdog with the check switched off).
"""
from __future__ import annotations

import pytest

from embed.errors import TweetheadsError
from scoring.ray_engine import READ_CPUS, size_actors


def test_the_default_size_is_one_cpu_where_readers_still_fit():
    sizing = size_actors([4.0], concurrency=2, actor_cpus=None)
    assert sizing.actor_cpus == 1.0 and sizing.note is None


def test_actors_are_sized_down_when_one_cpu_each_would_starve_the_readers():
    # the reported hang: two 1-CPU nodes, --concurrency 2, default --actor-cpus
    sizing = size_actors([1.0, 1.0], concurrency=2, actor_cpus=None)
    assert sizing.actor_cpus == 0.5
    assert "sized to 0.5 CPU each" in sizing.note and "2 of them on 2 CPUs" in sizing.note
    # what is left is a whole reader's worth
    assert 2.0 - 2 * sizing.actor_cpus >= READ_CPUS


def test_an_explicit_size_that_leaves_no_room_is_refused_with_the_numbers_and_the_fix():
    with pytest.raises(TweetheadsError) as caught:
        size_actors([1.0, 1.0], concurrency=2, actor_cpus=1.0)
    message = str(caught.value)
    assert "2 CPUs (2 node(s): 1 + 1)" in message and "need 2.5" in message
    assert "--concurrency 1 or fewer" in message and "leave --actor-cpus out" in message


def test_actors_must_fit_on_single_nodes_not_only_in_total():
    # 3 CPUs in all, but no node can hold a 2-CPU actor
    with pytest.raises(TweetheadsError, match="must each fit on one node"):
        size_actors([1.5, 1.5], concurrency=1, actor_cpus=2.0)
    assert size_actors([1.5, 1.5], concurrency=1, actor_cpus=1.5).actor_cpus == 1.5


def test_too_many_actors_for_any_size_is_refused_naming_the_most_that_fit():
    with pytest.raises(TweetheadsError) as caught:
        size_actors([1.0, 1.0], concurrency=4, actor_cpus=None)
    assert "--concurrency 3 or fewer" in str(caught.value)


def test_more_gpu_actors_than_gpus_is_refused():
    with pytest.raises(TweetheadsError, match=r"asks for 2 GPU\(s\).*has 1; pass --concurrency 1"):
        size_actors([16.0], concurrency=2, actor_cpus=None, gpus_per_actor=1, total_gpus=1.0)
    assert size_actors([16.0], concurrency=1, actor_cpus=None, gpus_per_actor=1, total_gpus=1.0).actor_cpus == 1.0
