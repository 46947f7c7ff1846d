"""The example plugin runs recbench's conformance kit, as any third-party method should."""

from recbench.testing import MethodConformance

from recbench_example_plugin import Cooccurrence


class TestCooccurrence(MethodConformance):
    method = Cooccurrence


def test_the_custom_reward_is_built_by_name_and_reaches_the_trainer(monkeypatch):
    """As a training subprocess would: the reward comes back from its name alone, through the plugin hook."""
    from recbench.llm.rewards import RewardSpec, build_reward

    monkeypatch.setenv("RECBENCH_DISABLE_PLUGIN_AUTOLOAD", "0")  # the installed entry point, as a fresh process sees it

    from recbench_example_plugin import BriefGRPO

    reward = build_reward(RewardSpec("brevity", args={"max_chars": "4"}))
    assert reward(["abcd", "abcdefgh"], [{}, {}]) == [1.0, 0.5]
    method = BriefGRPO(BriefGRPO.Config())
    specs = method.config.reward_specs("recall@1")
    assert [(s.name, s.weight) for s in specs] == [("metric", 1.0), ("brevity", 0.2)]
    assert specs[0].args == {"name": "recall@1"}  # the bare "metric" is the task's selection metric
