"""How the Ray engine cuts a stage list into ``map_batches`` groups, and which run on actors (pure
logic: no Ray needed)."""

from __future__ import annotations

from alignimate.pipeline.ray_engine import group_stages, needs_setup, on_actors
from alignimate.pipeline.stages import Batch, Stage


class Plain(Stage):
    def __call__(self, batch: Batch) -> Batch:
        return batch


class Model(Plain):
    def setup(self) -> None:
        self.loaded = True


def test_stateless_stages_join_the_group_of_the_next_model_and_that_group_runs_on_actors() -> None:
    a, b, m1, c, m2, d = Plain(), Plain(), Model(), Plain(), Model(), Plain()
    groups = group_stages([a, b, m1, c, m2, d])
    assert groups == [[a, b, m1, c], [m2, d]]
    assert not needs_setup(a) and needs_setup(m1)
    # The first group starts with stateless stages, yet it holds the model: actors, so the model
    # loads once per actor and not once per batch.
    assert [on_actors(g) for g in groups] == [True, True]
    assert group_stages([a, b]) == [[a, b]] and not on_actors([a, b])
