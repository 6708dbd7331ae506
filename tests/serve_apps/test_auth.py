"""Login, cookies, CSRF, logout, register, tokens, Basic auth, 401s."""

from __future__ import annotations

import base64
from http.cookies import SimpleCookie

import httpx
import pytest

from tests.conftest import PASSWORD, Account


async def test_about_is_public(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/api/server/about")
    assert r.status_code == 200
    body = r.json()
    assert body["version"] == "2.80.0"
    assert set(body) >= {"name", "description", "version", "logo_url", "subtitle"}
    assert r.headers["x-request-id"]


async def test_request_id_is_echoed(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/api/server/about", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await anon.get("/api/server/about", headers={"X-Request-Id": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"


async def test_login_sets_cookies_parseable_by_the_sdk(
    anon: httpx.AsyncClient, alice: Account
) -> None:
    r = await anon.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 200
    # cvat-sdk validates ``Token {"key": str <= 40}`` and ignores the value; nothing usable
    # without the cookie (and its CSRF token) is handed out.
    assert r.json() == {"key": ""}
    headers = r.headers.get_list("set-cookie")
    assert [h.split("=")[0] for h in headers] == ["csrftoken", "sessionid"]
    # urllib3 joins Set-Cookie headers with ", " and cvat-sdk feeds that to SimpleCookie.
    jar: SimpleCookie = SimpleCookie()
    jar.load(", ".join(headers))
    assert set(jar) == {"csrftoken", "sessionid"}
    assert jar["sessionid"]["httponly"]


async def test_login_by_email_and_bad_credentials(anon: httpx.AsyncClient, alice: Account) -> None:
    r = await anon.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert r.status_code == 200
    r = await anon.post("/api/auth/login", json={"username": "alice", "password": "wrong"})
    assert r.status_code == 400
    assert "non_field_errors" in r.json()
    r = await anon.post("/api/auth/login", json={"username": "nobody", "password": "x"})
    assert r.status_code == 400
    r = await anon.post("/api/auth/login", json={"username": "alice"})
    assert r.status_code == 400
    assert "password" in r.json()


async def test_session_auth_and_csrf(anon: httpx.AsyncClient, alice: Account) -> None:
    r = await anon.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    csrf = r.cookies["csrftoken"]
    r = await anon.get("/api/users/self")
    assert r.status_code == 200
    assert r.json()["username"] == "alice"
    assert r.json()["groups"] == ["user"]
    # unsafe method without the CSRF header -> 403
    r = await anon.post("/api/projects", json={"name": "p", "labels": []})
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]
    r = await anon.post("/api/projects", json={"name": "p"}, headers={"X-CSRFToken": "nope"})
    assert r.status_code == 403
    r = await anon.post("/api/projects", json={"name": "p"}, headers={"X-CSRFToken": csrf})
    assert r.status_code == 201
    # logout: an empty JSON body, as the SDK sends it; a JSON object back
    r = await anon.post(
        "/api/auth/logout",
        content=b"",
        headers={"X-CSRFToken": csrf, "Content-Type": "application/json"},
    )
    assert r.status_code == 200
    assert isinstance(r.json(), dict)
    anon.cookies.clear()
    r = await anon.get("/api/users/self")
    assert r.status_code == 401


async def test_token_header_and_basic(anon: httpx.AsyncClient, alice: Account) -> None:
    r = await anon.get("/api/users/self", headers={"Authorization": f"Token {alice.token}"})
    assert r.status_code == 200
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    r = await anon.get("/api/users/self", headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200
    bad = base64.b64encode(b"alice:wrong").decode()
    r = await anon.get("/api/users/self", headers={"Authorization": f"Basic {bad}"})
    assert r.status_code == 401
    r = await anon.get("/api/users/self", headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401
    r = await anon.get("/api/users/self", headers={"Authorization": "Token nope"})
    assert r.status_code == 401
    r = await anon.get("/api/users/self", headers={"Authorization": "Weird x"})
    assert r.status_code == 401


@pytest.mark.parametrize(
    "path", ["/api/users/self", "/api/tasks", "/api/projects", "/api/jobs", "/api/labels"]
)
async def test_anonymous_gets_401(anon: httpx.AsyncClient, path: str) -> None:
    r = await anon.get(path)
    assert r.status_code == 401
    assert r.json()["detail"]


async def test_access_tokens(client_for, anon: httpx.AsyncClient, alice: Account) -> None:
    api = client_for(alice)
    r = await api.post("/api/auth/access_tokens", json={"name": "ci"})
    assert r.status_code == 201
    created = r.json()
    value = created["value"]
    assert created["name"] == "ci" and created["owner"]["username"] == "alice"
    bearer = {"Authorization": f"Bearer {value}"}
    r = await anon.get("/api/users/self", headers=bearer)
    assert r.status_code == 200 and r.json()["username"] == "alice"
    r = await anon.get("/api/auth/access_tokens/self", headers=bearer)
    assert r.status_code == 200 and r.json()["name"] == "ci"
    assert "value" not in r.json()
    r = await api.get("/api/auth/access_tokens")
    assert r.json()["count"] == 1 and "value" not in r.json()["results"][0]
    # read-only tokens may not change anything
    r = await api.patch(f"/api/auth/access_tokens/{created['id']}", json={"read_only": True})
    assert r.status_code == 200 and r.json()["read_only"] is True
    r = await anon.post("/api/projects", json={"name": "p"}, headers=bearer)
    assert r.status_code == 403
    r = await anon.get("/api/projects", headers=bearer)
    assert r.status_code == 200
    # revoked tokens stop working
    r = await api.delete(f"/api/auth/access_tokens/{created['id']}")
    assert r.status_code == 204
    r = await anon.get("/api/users/self", headers=bearer)
    assert r.status_code == 401


async def test_access_token_expiry_and_isolation(client_for, alice: Account, bob: Account) -> None:
    api = client_for(alice)
    r = await api.post(
        "/api/auth/access_tokens", json={"name": "old", "expiry_date": "2000-01-01T00:00:00Z"}
    )
    assert r.status_code == 400 and "expiry_date" in r.json()
    r = await api.post("/api/auth/access_tokens", json={"name": "mine"})
    token_id = r.json()["id"]
    r = await client_for(bob).get(f"/api/auth/access_tokens/{token_id}")
    assert r.status_code == 403
    r = await client_for(bob).delete(f"/api/auth/access_tokens/{token_id}")
    assert r.status_code == 403


async def test_register_and_password_change(anon: httpx.AsyncClient) -> None:
    body = {
        "username": "carol",
        "email": "c@example.com",
        "password1": "Sup3r-secret",
        "password2": "Sup3r-secret",
    }
    r = await anon.post("/api/auth/register", json=body)
    assert r.status_code == 201, r.text
    r = await anon.get("/api/users/self")
    assert r.json()["username"] == "carol" and r.json()["groups"] == ["user"]
    r = await anon.post("/api/auth/register", json=body)
    assert r.status_code == 400 and "username" in r.json()
    r = await anon.post("/api/auth/register", json={**body, "username": "dave", "password2": "x"})
    assert r.status_code == 400
    r = await anon.post(
        "/api/auth/register",
        json={
            **body,
            "username": "erin",
            "email": "e@x.org",
            "password1": "12345678901",
            "password2": "12345678901",
        },
    )
    assert r.status_code == 400 and "password1" in r.json()
    r = await anon.post("/api/auth/register", json={**body, "username": "bad name!"})
    assert r.status_code == 400 and "username" in r.json()
    csrf = anon.cookies["csrftoken"]
    change = {
        "old_password": "Sup3r-secret",
        "new_password1": "An0ther-secret",
        "new_password2": "An0ther-secret",
    }
    r = await anon.post(
        "/api/auth/password/change",
        json={**change, "old_password": "no"},
        headers={"X-CSRFToken": csrf},
    )
    assert r.status_code == 400
    r = await anon.post("/api/auth/password/change", json=change, headers={"X-CSRFToken": csrf})
    assert r.status_code == 200
    r = await anon.post("/api/auth/login", json={"username": "carol", "password": "An0ther-secret"})
    assert r.status_code == 200


async def test_registration_can_be_disabled(app, anon: httpx.AsyncClient) -> None:
    app.state.settings.auth.allow_registration = False
    body = {"username": "zed", "password1": "Sup3r-secret", "password2": "Sup3r-secret"}
    r = await anon.post("/api/auth/register", json=body)
    assert r.status_code == 403


async def test_inactive_user_cannot_log_in(
    client_for, anon, admin: Account, alice: Account
) -> None:
    r = await client_for(admin).patch(f"/api/users/{alice.id}", json={"is_active": False})
    assert r.status_code == 200
    r = await anon.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 400
    r = await anon.get("/api/users/self", headers={"Authorization": f"Token {alice.token}"})
    assert r.status_code == 401


async def test_the_cookie_session_is_no_csrf_free_token(app, alice: Account) -> None:
    """Login used to return the session key, which worked as ``Token <key>`` without CSRF."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as browser:
        r = await browser.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
        assert r.status_code == 200 and r.json() == {"key": ""}
        session_key = browser.cookies["sessionid"]
        assert (await browser.get("/api/users/self")).status_code == 200
        browser.cookies.clear()
        token = {"Authorization": f"Token {session_key}"}
        assert (await browser.get("/api/users/self", headers=token)).status_code == 401
        r = await browser.post("/api/projects", json={"name": "p"}, headers=token)
        assert r.status_code == 401


async def test_password_change_ends_the_other_sessions_and_tokens(
    app, client_for, alice: Account, bob: Account
) -> None:
    def browser() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )

    login = {"username": "alice", "password": PASSWORD}
    async with browser() as here, browser() as elsewhere:
        assert (await here.post("/api/auth/login", json=login)).status_code == 200
        assert (await elsewhere.post("/api/auth/login", json=login)).status_code == 200
        r = await client_for(alice).post("/api/auth/access_tokens", json={"name": "ci"})
        bearer = {"Authorization": f"Bearer {r.json()['value']}"}
        assert (await here.get("/api/users/self", headers=bearer)).status_code == 200
        bobs = client_for(bob)
        assert (await bobs.post("/api/auth/access_tokens", json={"name": "b"})).status_code == 201
        change = {
            "old_password": PASSWORD,
            "new_password1": "An0ther-secret",
            "new_password2": "An0ther-secret",
        }
        r = await here.post(
            "/api/auth/password/change",
            json=change,
            headers={"X-CSRFToken": here.cookies["csrftoken"]},
        )
        assert r.status_code == 200
        # The session that changed it stays; every other credential of alice's is gone.
        assert (await here.get("/api/users/self")).status_code == 200
        assert (await elsewhere.get("/api/users/self")).status_code == 401
        assert (await client_for(alice).get("/api/users/self")).status_code == 401
        async with browser() as script:
            assert (await script.get("/api/users/self", headers=bearer)).status_code == 401
        # Nobody else's.
        assert (await bobs.get("/api/auth/access_tokens")).json()["count"] == 1


async def test_password_change_through_a_token_keeps_that_token(
    client_for, anon: httpx.AsyncClient, alice: Account
) -> None:
    r = await client_for(alice).post("/api/auth/access_tokens", json={"name": "one"})
    one = {"Authorization": f"Bearer {r.json()['value']}"}
    r = await client_for(alice).post("/api/auth/access_tokens", json={"name": "two"})
    two = {"Authorization": f"Bearer {r.json()['value']}"}
    change = {
        "old_password": PASSWORD,
        "new_password1": "An0ther-secret",
        "new_password2": "An0ther-secret",
    }
    r = await anon.post("/api/auth/password/change", json=change, headers=one)
    assert r.status_code == 200
    assert (await anon.get("/api/users/self", headers=one)).status_code == 200
    assert (await anon.get("/api/users/self", headers=two)).status_code == 401
