"""The provider registry: which carrier module a config names, and how a missing one is refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.server.stack import server_config
from voice_call.clock import RealClock
from voice_call.config import PROVIDERS
from voice_call.errors import Unavailable
from voice_call.providers import registry
from voice_call.providers.mock import MockProvider
from voice_call.providers.registry import CARRIER_MODULES, build_provider


def test_every_configurable_provider_has_an_importable_module() -> None:
    assert set(CARRIER_MODULES) == set(PROVIDERS)
    for module in CARRIER_MODULES.values():
        assert importlib.util.find_spec(module) is not None, module


def test_mock_config_builds_the_mock_provider(tmp_path: Path) -> None:
    provider = build_provider(server_config(), RealClock(), tmp_path)
    assert isinstance(provider, MockProvider)


def test_unknown_provider_is_refused_by_name(tmp_path: Path) -> None:
    # the schema refuses it first; a config built around it (model_copy) still gets a clear error
    config = server_config().model_copy(update={"provider": "sinch"})
    with pytest.raises(Unavailable, match="unknown provider 'sinch'"):
        build_provider(config, RealClock(), tmp_path)


def test_registered_but_absent_module_says_to_use_mock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.CARRIER_MODULES, "mock", "voice_call.providers.not_built_yet")
    with pytest.raises(Unavailable, match='not available in this build yet; use provider: "mock"'):
        build_provider(server_config(), RealClock(), tmp_path)


def test_a_carrier_module_missing_its_own_dependency_is_not_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an ImportError inside the carrier module is a broken install, not "not built yet"
    (tmp_path / "vc_cov_broken_carrier.py").write_text("import vc_cov_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.CARRIER_MODULES, "mock", "vc_cov_broken_carrier")
    with pytest.raises(ModuleNotFoundError) as caught:
        build_provider(server_config(), RealClock(), tmp_path)
    assert caught.value.name == "vc_cov_missing_dependency"
