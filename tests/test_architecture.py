"""The package's layering (docs/architecture.md): imports point down, and nothing imports itself
back through a chain. ``python tools/import_graph.py`` prints the same check."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO


def _import_graph_tool():
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_imports_point_down_and_form_no_cycles():
    tool = _import_graph_tool()
    graph = tool.build_graph()
    assert "rsgen.pipelines.super_resolution" in graph and len(graph) > 40
    assert tool.upward_or_sideways(graph) == []
    assert tool.cycles(graph) == []


def test_the_check_sees_a_bad_arrow_and_a_cycle():
    tool = _import_graph_tool()
    graph = {
        "rsgen.models.a": {"rsgen.pipelines.p"},
        "rsgen.pipelines.p": {"rsgen.models.a"},
        "rsgen.data.d": {"rsgen.metrics.m"},
        "rsgen.metrics.m": set(),
    }
    bad = tool.upward_or_sideways(graph)
    assert any("rsgen.models.a -> rsgen.pipelines.p" in line for line in bad)
    assert any("rsgen.data.d -> rsgen.metrics.m" in line for line in bad)
    assert tool.cycles(graph) == [["rsgen.models.a", "rsgen.pipelines.p"]]


def test_the_documented_graph_is_the_current_one():
    tool = _import_graph_tool()
    doc = (REPO / "docs" / "architecture.md").read_text()
    assert tool.mermaid(tool.build_graph()) in doc, "regenerate: python tools/import_graph.py --mermaid"
