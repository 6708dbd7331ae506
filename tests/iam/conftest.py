"""The OpenLDAP fixture (a slapd of its own per test session)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvat_ray.cluster.runtime import free_port
from tests.conftest import IN_CI
from tests.iam import slapd


@pytest.fixture(scope="session")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slapd.Slapd]:
    if not Path(slapd.SLAPD).exists():
        message = "slapd is not installed (apt-get install slapd ldap-utils)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    server = slapd.start(tmp_path_factory.mktemp("slapd"), free_port())
    yield server
    server.stop()


@pytest.fixture
def ldap_env(directory: slapd.Slapd, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Turns LDAP login on (FreeIPA style) for the test; returns the variables it set."""
    from cvat_ray.cluster.settings import reset_settings_cache

    env = {
        "CVAT_RAY_LDAP__ENABLED": "true",
        "CVAT_RAY_LDAP__SERVER_URI": directory.uri,
        "CVAT_RAY_LDAP__BIND_DN": slapd.BIND_DN,
        "CVAT_RAY_LDAP__BIND_PASSWORD": slapd.BIND_PW,
        "CVAT_RAY_LDAP__USER_SEARCH_BASE": slapd.PEOPLE,
        "CVAT_RAY_LDAP__USER_SEARCH_FILTER": "(uid={username})",
        "CVAT_RAY_LDAP__GROUP_SEARCH_BASE": slapd.GROUPS,
        "CVAT_RAY_LDAP__ADMIN_GROUPS": f'["cn=admins,{slapd.GROUPS}"]',
        "CVAT_RAY_LDAP__BUSINESS_GROUPS": f'["cn=business,{slapd.GROUPS}"]',
        "CVAT_RAY_LDAP__USER_GROUPS": f'["cn=annotators,{slapd.GROUPS}"]',
        "CVAT_RAY_LDAP__WORKER_GROUPS": f'["CN=Workers,{slapd.GROUPS}"]',
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    yield env
    for name in env:
        os.environ.pop(name, None)
    reset_settings_cache()
