"""A throw-away OpenLDAP server for the tests: its own cn=config, database and port.

The directory holds FreeIPA-style accounts (``uid``, ``groupOfNames``) and Active Directory
style accounts (``sAMAccountName``, ``userAccountControl``, from a small test schema, since
OpenLDAP has no AD schema that can be used without AD's whole object model).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ldap3 import MODIFY_ADD, MODIFY_DELETE, Connection, Server

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "root-secret"
BIND_DN = f"cn=binder,{SUFFIX}"
BIND_PW = "binder-secret"
PEOPLE = f"ou=people,{SUFFIX}"
AD_USERS = f"ou=ad,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
PASSWORD = "Directory-pass-1"

_AD_SCHEMA = """dn: cn=adtest,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: adtest
olcAttributeTypes: ( 1.3.6.1.4.1.55555.1.1 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
olcAttributeTypes: ( 1.3.6.1.4.1.55555.1.2 NAME 'userAccountControl' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
olcAttributeTypes: ( 1.3.6.1.4.1.55555.1.3 NAME 'nsAccountLock' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
olcObjectClasses: ( 1.3.6.1.4.1.55555.2.1 NAME 'adAccount' AUXILIARY MAY ( sAMAccountName $ userAccountControl $ nsAccountLock ) )
"""


def make_certificates(root: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1/localhost (ca, cert, key files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cvat-ray test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = (root / "ca.pem", root / "server.pem", root / "server.key")
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return files


def _config(root: Path) -> str:
    schemas = "\n".join(
        f"include: file:///etc/ldap/schema/{name}.ldif"
        for name in ("core", "cosine", "inetorgperson", "nis")
    )
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {root}/slapd.pid
olcTLSCACertificateFile: {root}/ca.pem
olcTLSCertificateFile: {root}/server.pem
olcTLSCertificateKeyFile: {root}/server.key

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}

{_AD_SCHEMA}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcRootDN: {ROOT_DN}
olcRootPW: {ROOT_PW}
olcDbDirectory: {root}/data
olcDbMaxSize: 67108864
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by users read by * none
"""


@dataclass
class Slapd:
    uri: str
    process: subprocess.Popen[bytes]
    ca_file: Path

    def admin(self) -> Connection:
        return Connection(Server(self.uri), ROOT_DN, ROOT_PW, auto_bind=True)

    def add_to_group(self, group: str, member_dn: str) -> None:
        with self.admin() as conn:
            conn.modify(f"cn={group},{GROUPS}", {"member": [(MODIFY_ADD, [member_dn])]})

    def remove_from_group(self, group: str, member_dn: str) -> None:
        with self.admin() as conn:
            conn.modify(f"cn={group},{GROUPS}", {"member": [(MODIFY_DELETE, [member_dn])]})

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def person(uid: str, **extra: object) -> tuple[str, list[str], dict[str, object]]:
    return (
        f"uid={uid},{PEOPLE}",
        ["inetOrgPerson", "adAccount"],
        {
            "uid": uid,
            "cn": uid.title(),
            "givenName": uid.title(),
            "sn": "Tester",
            "mail": f"{uid}@corp.example",
            "userPassword": PASSWORD,
            **extra,
        },
    )


def ad_user(name: str, control: int = 512) -> tuple[str, list[str], dict[str, object]]:
    return (
        f"cn={name},{AD_USERS}",
        ["inetOrgPerson", "adAccount"],
        {
            "cn": name,
            "sn": name.title(),
            "givenName": name.title(),
            "mail": f"{name}@ad.example",
            "sAMAccountName": name,
            "userAccountControl": control,
            "userPassword": PASSWORD,
        },
    )


def _populate(server: Slapd) -> None:
    entries: list[tuple[str, list[str], dict[str, object]]] = [
        (SUFFIX, ["dcObject", "organization"], {"dc": "example", "o": "Example"}),
        (
            BIND_DN,
            ["organizationalRole", "simpleSecurityObject"],
            {"cn": "binder", "userPassword": BIND_PW},
        ),
        (PEOPLE, ["organizationalUnit"], {"ou": "people"}),
        (AD_USERS, ["organizationalUnit"], {"ou": "ad"}),
        (GROUPS, ["organizationalUnit"], {"ou": "groups"}),
        person("alice"),  # admin
        person("bob"),  # user, through a nested group
        person("carol"),  # in no mapped group: user
        person("dave", nsAccountLock="TRUE"),  # disabled
        person("erin"),  # worker
        person("frank"),  # business
        ad_user("jsmith"),  # AD admin
        ad_user("jdoe"),  # AD worker through a nested group
        ad_user("jlocked", control=514),  # AD disabled (ACCOUNTDISABLE)
    ]
    groups = {
        "admins": [f"uid=alice,{PEOPLE}", f"cn=jsmith,{AD_USERS}"],
        "business": [f"uid=frank,{PEOPLE}"],
        "labelers": [f"uid=bob,{PEOPLE}"],
        "annotators": [f"cn=labelers,{GROUPS}"],
        "contractors": [f"cn=jdoe,{AD_USERS}"],
        "workers": [f"uid=erin,{PEOPLE}", f"cn=contractors,{GROUPS}", f"uid=dave,{PEOPLE}"],
    }
    for name, members in groups.items():
        entries.append((f"cn={name},{GROUPS}", ["groupOfNames"], {"cn": name, "member": members}))
    with server.admin() as conn:
        for dn, classes, attributes in entries:
            if not conn.add(dn, classes, attributes):
                raise RuntimeError(f"cannot add {dn}: {conn.result}")


def start(root: Path, port: int) -> Slapd:
    (root / "conf").mkdir(parents=True)
    (root / "data").mkdir()
    ca_file, _, _ = make_certificates(root)
    (root / "config.ldif").write_text(_config(root))
    subprocess.run(
        [SLAPADD, "-n", "0", "-F", str(root / "conf"), "-l", str(root / "config.ldif")],
        check=True,
        capture_output=True,
    )
    uri = f"ldap://127.0.0.1:{port}"
    process = subprocess.Popen(
        [SLAPD, "-h", f"{uri}/", "-F", str(root / "conf"), "-d", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = Slapd(uri=uri, process=process, ca_file=ca_file)
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"slapd exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            server.admin().unbind()
            break
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.1)
    _populate(server)
    return server
