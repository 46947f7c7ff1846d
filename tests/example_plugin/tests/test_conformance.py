"""The example plugin runs recbench's conformance kit, as any third-party method should."""

from recbench.testing import MethodConformance

from recbench_example_plugin import Cooccurrence


class TestCooccurrence(MethodConformance):
    method = Cooccurrence
