"""LDAP login against a real OpenLDAP server: FreeIPA and Active Directory styles, role
mapping and re-sync, disabled accounts, filter injection, directory outages."""

from __future__ import annotations

import base64
import os

import httpx
import pytest
from sqlalchemy import select

from cvat_ray.cluster.settings import reset_settings_cache
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import User
from tests.conftest import PASSWORD as LOCAL_PASSWORD
from tests.iam import slapd
from tests.iam.slapd import PASSWORD


async def _login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/api/auth/login", json={"username": username, "password": password})


async def _me(client: httpx.AsyncClient) -> dict:
    r = await client.get("/api/users/self")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(
    ("username", "groups", "superuser"),
    [
        ("alice", ["admin"], True),
        ("frank", ["business"], False),
        ("bob", ["user"], False),  # through labelers, nested in annotators
        ("carol", ["user"], False),  # in no mapped group
        ("erin", ["worker"], False),
    ],
)
async def test_freeipa_style_login_and_roles(ldap_env, anon, username, groups, superuser) -> None:
    r = await _login(anon, username)
    assert r.status_code == 200, r.text
    me = await _me(anon)
    assert me["groups"] == groups and me["is_superuser"] is superuser
    assert me["email"] == f"{username}@corp.example" and me["first_name"] == username.title()


@pytest.mark.parametrize("password", ["wrong", ""])
async def test_wrong_password(ldap_env, anon, password) -> None:
    assert (await _login(anon, "alice", password)).status_code == 400


async def test_disabled_and_unknown_accounts(ldap_env, anon, db: Database) -> None:
    assert (await _login(anon, "dave")).status_code == 400
    assert (await _login(anon, "nobody")).status_code == 400
    with db.session() as session:
        assert session.scalar(select(User).where(User.username.in_(["dave", "nobody"]))) is None


@pytest.mark.parametrize("username", ["*", "*)(uid=*))(|(uid=*", "alice)(|(uid=*", "al*"])
async def test_filter_injection_is_escaped(ldap_env, anon, db: Database, username) -> None:
    assert (await _login(anon, username)).status_code == 400
    with db.session() as session:
        assert session.scalar(select(User.id)) is None


async def test_roles_resync_at_every_login(ldap_env, anon, directory: slapd.Slapd) -> None:
    alice = f"uid=alice,{slapd.PEOPLE}"
    erin = f"uid=erin,{slapd.PEOPLE}"
    assert (await _login(anon, "alice")).status_code == 200
    assert (await _me(anon))["groups"] == ["admin"]
    directory.remove_from_group("admins", alice)
    directory.add_to_group("admins", erin)
    try:
        assert (await _login(anon, "alice")).status_code == 200
        me = await _me(anon)
        assert me["groups"] == ["user"] and me["is_superuser"] is False  # admin removed too
        assert (await _login(anon, "erin")).status_code == 200
        assert (await _me(anon))["groups"] == ["admin", "worker"]
    finally:
        directory.add_to_group("admins", alice)
        directory.remove_from_group("admins", erin)


async def test_active_directory_style(ldap_env, anon, monkeypatch) -> None:
    monkeypatch.setenv("CVAT_RAY_LDAP__USER_SEARCH_BASE", slapd.AD_USERS)
    monkeypatch.setenv(
        "CVAT_RAY_LDAP__USER_SEARCH_FILTER",
        "(&(objectClass=inetOrgPerson)(sAMAccountName={username}))",
    )
    monkeypatch.setenv("CVAT_RAY_LDAP__ATTR_USERNAME", "sAMAccountName")
    monkeypatch.setenv("CVAT_RAY_LDAP__GROUP_TYPE", "active_directory")
    reset_settings_cache()
    assert (await _login(anon, "jsmith")).status_code == 200
    me = await _me(anon)
    assert (
        me["username"] == "jsmith"
        and me["groups"] == ["admin"]
        and me["email"] == "jsmith@ad.example"
    )
    assert (await _login(anon, "jdoe")).status_code == 200  # contractors, nested in workers
    assert (await _me(anon))["groups"] == ["worker"]
    assert (await _login(anon, "jlocked")).status_code == 400  # userAccountControl 514


async def test_directory_down(ldap_env, anon, make_user, monkeypatch) -> None:
    make_user("root", "admin")  # a local superuser
    monkeypatch.setenv("CVAT_RAY_LDAP__SERVER_URI", "ldap://127.0.0.1:1")
    reset_settings_cache()
    r = await _login(anon, "alice")
    assert r.status_code == 503
    assert "LDAP" in r.json()["detail"]
    # local accounts still log in
    assert (await _login(anon, "root", LOCAL_PASSWORD)).status_code == 200


async def test_directory_binds_are_throttled(ldap_env, app, anon, monkeypatch) -> None:
    """Guessing an LDAP password through the server stops before the directory sees it (so
    the server cannot be used to lock accounts in the directory at full speed)."""
    from cvat_ray.iam.ldap import LdapDirectory

    binds: list[str] = []
    authenticate = LdapDirectory.authenticate

    def counting(self: LdapDirectory, username: str, password: str) -> object:
        binds.append(username)
        return authenticate(self, username, password)

    monkeypatch.setattr(LdapDirectory, "authenticate", counting)
    failures = app.state.settings.iam.login_max_failures
    for _ in range(failures):
        assert (await _login(anon, "bob", "wrong")).status_code == 400
    basic = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    r = await anon.get("/api/users/self", headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 429
    assert (await _login(anon, "bob")).status_code == 429
    assert binds == ["bob"] * failures


async def test_register_and_password_change_are_refused(
    ldap_env, anon, client_for, alice_local=None
) -> None:
    body = {"username": "zoe", "password1": "Sup3r-secret", "password2": "Sup3r-secret"}
    r = await anon.post("/api/auth/register", json=body)
    assert r.status_code == 403 and "LDAP" in r.json()["detail"]
    assert (await _login(anon, "carol")).status_code == 200
    change = {
        "old_password": PASSWORD,
        "new_password1": "N3w-secret-pw",
        "new_password2": "N3w-secret-pw",
    }
    r = await anon.post(
        "/api/auth/password/change", json=change, headers={"X-CSRFToken": anon.cookies["csrftoken"]}
    )
    assert r.status_code == 403 and "LDAP" in r.json()["detail"]


def test_bind_password_never_leaves(ldap_env) -> None:
    from cvat_ray.cluster.settings import get_settings

    settings = get_settings()
    assert slapd.BIND_PW not in repr(settings) and slapd.BIND_PW not in str(settings.model_dump())
    assert os.environ["CVAT_RAY_LDAP__BIND_PASSWORD"] == slapd.BIND_PW


async def test_start_tls_with_the_directory_ca(
    ldap_env, anon, directory: slapd.Slapd, monkeypatch
) -> None:
    monkeypatch.setenv("CVAT_RAY_LDAP__START_TLS", "true")
    monkeypatch.setenv("CVAT_RAY_LDAP__CA_FILE", str(directory.ca_file))
    reset_settings_cache()
    assert (await _login(anon, "alice")).status_code == 200


async def test_start_tls_refuses_an_unknown_certificate(
    ldap_env, anon, tmp_path, monkeypatch
) -> None:
    other_ca, _, _ = slapd.make_certificates(tmp_path)
    monkeypatch.setenv("CVAT_RAY_LDAP__START_TLS", "true")
    monkeypatch.setenv("CVAT_RAY_LDAP__CA_FILE", str(other_ca))
    reset_settings_cache()
    r = await _login(anon, "alice")
    assert r.status_code == 503 and "LDAP" in r.json()["detail"]
