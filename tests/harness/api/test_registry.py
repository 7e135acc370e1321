"""The one generic registry: duplicates raise, unknown names suggest, families take arguments."""
import sys

import pytest

from harness.api.registry import Registry, RegistryError, imported_when_called, resolve_spec


def _registry():
    registry = Registry("widget")
    registry.register("alpha", "first")(lambda: "A")
    registry.register("beta")(lambda arg: f"B({arg})")
    return registry


def test_duplicate_names_raise():
    registry = _registry()
    with pytest.raises(RegistryError, match="already registered"):
        registry.register("alpha")(lambda: None)


def test_unknown_names_suggest_close_matches():
    with pytest.raises(RegistryError, match=r"Did you mean 'alpha'\?.*opd list widgets"):
        _registry().get("alpah")


def test_resolve_exact_names_and_families():
    registry = _registry()
    assert resolve_spec(registry, "alpha") == "A"
    assert resolve_spec(registry, "beta:x:y") == "B(x:y)"
    with pytest.raises(RegistryError, match="Unknown widget 'alpha:oops'"):
        resolve_spec(registry, "alpha:oops")  # alpha takes no argument: not a family
    assert registry.names() == ["alpha", "beta"] and registry.describe("alpha") == "first"


def test_messages_use_the_plural_and_ignore_case():
    registry = Registry("loss")
    registry.register("jsd")(lambda: "J")
    with pytest.raises(RegistryError, match=r"Unknown loss 'JSD'\. Did you mean 'jsd'\? Known losses: jsd\. "
                                            r"See `opd list losses`\."):
        registry.get("JSD")
    assert Registry("task").plural == "tasks" and Registry("box", plural="boxen").cli_hint == "opd list boxen"


def test_a_name_registered_by_module_path_imports_its_module_only_when_built(tmp_path, monkeypatch):
    (tmp_path / "opd_optional_widget.py").write_text("class Widget:\n    made = 'yes'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("widget")
    registry.add("optional", imported_when_called("opd_optional_widget:Widget"), "imported when chosen")
    assert "optional" in registry and "opd_optional_widget" not in sys.modules
    assert resolve_spec(registry, "optional").made == "yes" and "opd_optional_widget" in sys.modules
    monkeypatch.delitem(sys.modules, "opd_optional_widget")
    with pytest.raises(RegistryError, match="already registered"):  # a lazy name is a name like any other
        registry.add("optional", imported_when_called("opd_optional_widget:Widget"))
    with pytest.raises(ValueError, match="package.module:Name"):
        imported_when_called("opd_optional_widget.Widget")
