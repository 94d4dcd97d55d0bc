"""Issue 16, item 15: building wsdeploy gives no setuptools deprecation warning (the license is
an SPDX string, not the deprecated TOML table)."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_has_no_deprecated_fields():
    setuptools = pytest.importorskip("setuptools")
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    deprecations = [str(w.message).splitlines()[0] for w in caught
                    if issubclass(w.category, getattr(setuptools, "SetuptoolsDeprecationWarning", DeprecationWarning))]
    assert not deprecations, deprecations
    assert dist.metadata.name == "wsdeploy"
