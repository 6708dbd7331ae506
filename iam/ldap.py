"""LDAP login (Active Directory, FreeIPA, OpenLDAP) with ldap3.

A login searches the user with the service account (the username is escaped into the
filter), refuses disabled accounts, binds as the user to check the password, then collects the
user's groups (following nested groups) and maps group DNs to the four system groups. The
caller re-syncs the account from this on every login, so leaving a directory group removes the
role at the next login (admin included, unlike CVAT).
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ldap3 import LEVEL, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPBindError,
    LDAPException,
    LDAPInvalidCredentialsResult,
    LDAPSocketOpenError,
)
from ldap3.utils.conv import escape_filter_chars

from cvat_ray.cluster.errors import Unavailable
from cvat_ray.cluster.settings import LdapSettings
from cvat_ray.iam.principal import PRIVILEGES

logger = logging.getLogger("cvat_ray.ldap")

# Active Directory's "in chain" matching rule resolves nested groups server-side.
_IN_CHAIN = "1.2.840.113556.1.4.1941"
# userAccountControl flag of a disabled AD account.
_ACCOUNT_DISABLED = 0x2
_MAX_NESTING = 10


@dataclass(frozen=True)
class LdapIdentity:
    username: str
    dn: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    group_dns: frozenset[str] = field(default_factory=frozenset)


def map_groups(settings: LdapSettings, group_dns: Iterable[str]) -> list[str]:
    """System groups for a set of directory groups; ``user`` when none is mapped."""
    found = {dn.lower() for dn in group_dns}
    mapping = {
        "admin": settings.admin_groups,
        "business": settings.business_groups,
        "user": settings.user_groups,
        "worker": settings.worker_groups,
    }
    roles = [role for role in PRIVILEGES if any(dn.lower() in found for dn in mapping[role])]
    return roles or ["user"]


def _first(entry: Any, attribute: str) -> str:
    try:
        values = entry[attribute].values
    except (KeyError, IndexError, TypeError):
        return ""
    return str(values[0]) if values else ""


class LdapDirectory:
    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        tls = None
        if settings.ca_file or settings.server_uri.startswith("ldaps://") or settings.start_tls:
            tls = Tls(
                validate=ssl.CERT_REQUIRED,
                ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
            )
        self.server = Server(
            settings.server_uri,
            get_info=NONE,
            connect_timeout=math.ceil(settings.timeout_s),
            tls=tls,
        )

    def _connect(self, dn: str, password: str) -> Connection:
        conn = Connection(
            self.server,
            user=dn or None,
            password=password or None,
            receive_timeout=math.ceil(self.settings.timeout_s),
            raise_exceptions=False,
        )
        conn.open()
        if self.settings.start_tls and not self.settings.server_uri.startswith("ldaps://"):
            conn.start_tls()
        if not conn.bind():
            conn.unbind()
            raise LDAPBindError(conn.result.get("description", "bind failed"))
        return conn

    def authenticate(self, username: str, password: str) -> LdapIdentity | None:
        """The identity of a valid login, None for wrong credentials or a disabled account.
        Raises :class:`Unavailable` when the directory cannot be reached or used."""
        if not username or not password:
            return None
        s = self.settings
        bind_password = s.bind_password.get_secret_value() if s.bind_password else ""
        try:
            service = self._connect(s.bind_dn, bind_password)
        except (LDAPSocketOpenError, LDAPBindError, LDAPException) as exc:
            logger.error("LDAP service bind to %s failed: %s", s.server_uri, type(exc).__name__)
            raise Unavailable(
                "The login directory (LDAP) is unavailable. Try again later."
            ) from exc
        try:
            entry = self._find_user(service, username)
            if entry is None or self._disabled(entry):
                return None
            dn = str(entry.entry_dn)
            if not self._password_ok(dn, password):
                return None
            groups = self._groups_of(service, dn)
            return LdapIdentity(
                username=_first(entry, s.attr_username) or username,
                dn=dn,
                first_name=_first(entry, s.attr_first_name),
                last_name=_first(entry, s.attr_last_name),
                email=_first(entry, s.attr_email),
                group_dns=frozenset(g.lower() for g in groups),
            )
        except LDAPException as exc:
            logger.error("LDAP search failed: %s", type(exc).__name__)
            raise Unavailable(
                "The login directory (LDAP) is unavailable. Try again later."
            ) from exc
        finally:
            service.unbind()

    def _find_user(self, conn: Connection, username: str) -> Any:
        s = self.settings
        query = s.user_search_filter.replace("{username}", escape_filter_chars(username))
        attributes = [
            s.attr_username,
            s.attr_first_name,
            s.attr_last_name,
            s.attr_email,
            "userAccountControl",
            "nsAccountLock",
        ]
        ok = conn.search(
            s.user_search_base,
            query,
            search_scope=SUBTREE if s.user_search_scope == "subtree" else LEVEL,
            attributes=attributes,
            size_limit=2,
        )
        if not ok and conn.result.get("result") not in (0, 4, 32):
            raise LDAPException(conn.result.get("description", "search failed"))
        # Exactly one match: anything else is ambiguous and refused.
        return conn.entries[0] if len(conn.entries) == 1 else None

    @staticmethod
    def _disabled(entry: Any) -> bool:
        flags = _first(entry, "userAccountControl")
        if flags.isdigit() and int(flags) & _ACCOUNT_DISABLED:
            return True
        return _first(entry, "nsAccountLock").lower() == "true"

    def _password_ok(self, dn: str, password: str) -> bool:
        try:
            conn = self._connect(dn, password)
        except (LDAPBindError, LDAPInvalidCredentialsResult):
            return False
        conn.unbind()
        return True

    def _groups_of(self, conn: Connection, dn: str) -> set[str]:
        s = self.settings
        if not s.group_search_base:
            return set()
        member = s.group_member_attribute
        if s.group_type == "active_directory" and s.nested_groups:
            query = f"(&{s.group_search_filter}({member}:{_IN_CHAIN}:={escape_filter_chars(dn)}))"
            if conn.search(s.group_search_base, query, search_scope=SUBTREE, attributes=[]):
                return {str(e.entry_dn) for e in conn.entries}
            # Not an Active Directory server: resolve the nesting ourselves below.
        found: set[str] = set()
        frontier = {dn}
        for _ in range(_MAX_NESTING if s.nested_groups else 1):
            parents: set[str] = set()
            for child in frontier:
                query = f"(&{s.group_search_filter}({member}={escape_filter_chars(child)}))"
                conn.search(s.group_search_base, query, search_scope=SUBTREE, attributes=[])
                parents |= {str(e.entry_dn) for e in conn.entries}
            frontier = parents - found
            found |= parents
            if not frontier:
                break
        return found
