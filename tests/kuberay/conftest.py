"""Fixtures of the KubeRay tests."""

from __future__ import annotations

import pytest

from tests.conftest import IN_CI
from tests.kuberay.manifests import CrdValidator, crd_dir


@pytest.fixture(scope="session")
def crds() -> CrdValidator:
    """The vendored KubeRay 1.7 CRDs (a failure in CI when they are missing)."""
    folder = crd_dir()
    if not folder.is_dir():
        if IN_CI:
            pytest.fail(f"the KubeRay CRDs are required in CI: no {folder}")
        pytest.skip(f"no KubeRay CRDs at {folder}")
    return CrdValidator(folder)
