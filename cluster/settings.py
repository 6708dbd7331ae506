"""One typed settings object for the whole server.

Every value comes from the environment (prefix ``CVAT_RAY_``, nested groups joined with
``__``, e.g. ``CVAT_RAY_DATABASE__URL``) or from defaults. Settings are read on first use
through :func:`get_settings`, never at import time, so a Ray worker reads them from its own
environment (Kubernetes Secret -> pod env -> worker) and they never travel through
``.bind()``/``.remote()`` arguments.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: SQLite file `cvat.db` in the data dir. "
        "PostgreSQL: postgresql+psycopg2://user:pass@host:5432/db",
    )
    pool_size: int = Field(default=5, ge=1, description="Connections per process (PostgreSQL)")
    echo: bool = Field(default=False, description="Log every SQL statement")


class UserAgreement(BaseModel):
    """One agreement CVAT's UI asks new users to accept when they register."""

    name: str = Field(min_length=1, max_length=64)
    url: str = Field(max_length=2048)
    required: bool = False
    textPrefix: str = Field(default="", max_length=256)
    urlDisplayText: str = Field(default="", max_length=256)


class ServerSettings(BaseModel):
    host: str = Field(default="127.0.0.1", description="Address the HTTP proxy listens on")
    port: int = Field(default=8080, ge=1, le=65535, description="HTTP port of the API")
    public_url: str | None = Field(
        default=None,
        description="External base URL used in absolute links (behind a proxy). "
        "Unset: taken from each request",
    )
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or CIDRs of reverse proxies whose "
        "X-Forwarded-For names the client (login throttling keys on it). Unset: the TCP peer "
        "is the client",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        for item in (i.strip() for i in value.split(",")):
            if item:
                ipaddress.ip_network(item, strict=False)  # ValueError -> a settings error
        return value

    user_agreements: list[UserAgreement] = Field(
        default_factory=list,
        description="Agreements shown at registration in CVAT's UI, a JSON list of "
        '`{"name", "url", "required", "textPrefix", "urlDisplayText"}`',
    )


class RaySettings(BaseModel):
    address: str | None = Field(
        default=None,
        description="Existing Ray cluster to join (also read from RAY_ADDRESS). "
        "Unset: `up` starts a local head",
    )
    num_cpus: float | None = Field(
        default=None, gt=0, description="CPUs of the local head (unset: all cores)"
    )
    include_dashboard: bool = Field(default=True, description="Start the Ray dashboard")
    dashboard_host: str = Field(default="127.0.0.1", description="Ray dashboard address")
    dashboard_port: int = Field(default=8265, ge=1, le=65535, description="Ray dashboard port")
    auth_mode: Literal["token", "disabled"] = Field(
        default="token",
        description="Ray token auth for the local head; the token is kept in "
        "<data dir>/ray/auth_token",
    )
    temp_dir: Path | None = Field(
        default=None, description="Ray temp dir of the local head (unset: /tmp/cvat-ray-<hash>)"
    )
    idle_workers: int = Field(
        default=32,
        ge=0,
        description="Worker processes the local head keeps alive when idle (Ray's "
        "num_workers_soft_limit; 0: Ray's default, one per CPU), so whole-task runs start "
        "on warm workers",
    )


class ApiSettings(BaseModel):
    num_cpus: float = Field(default=0.5, gt=0, description="CPUs per API replica")
    min_replicas: int = Field(default=1, ge=1, description="Autoscaling: fewest API replicas")
    max_replicas: int = Field(default=2, ge=1, description="Autoscaling: most API replicas")
    target_ongoing_requests: float = Field(
        default=4, gt=0, description="Autoscaling: in-flight requests per replica to aim for"
    )
    max_ongoing_requests: int = Field(
        default=32, ge=1, description="Requests a replica accepts at once before queueing"
    )
    db_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Worker threads per API replica for database work (scale with replicas)",
    )
    default_page_size: int = Field(default=10, ge=1, description="List page size")
    max_page_size: int = Field(default=1000, ge=1, description="Largest page_size accepted")
    access_log: bool = Field(default=False, description="Serve access log per request")
    max_body_mb: int = Field(
        default=16,
        ge=1,
        description="Largest JSON or form body in MiB of an endpoint without a limit of its "
        "own; larger ones get a 413 (after authentication, before they are read)",
    )
    max_annotation_payload_mb: int = Field(
        default=1024,
        ge=1,
        description="Largest annotations PUT/PATCH body in MiB (about 200 bytes per shape); "
        "larger ones get a 413 before they are read whole",
    )


class AuthSettings(BaseModel):
    session_ttl_s: int = Field(default=14 * 24 * 3600, ge=60, description="Login session life")
    cookie_secure: bool = Field(default=False, description="Mark cookies Secure (HTTPS only)")
    allow_registration: bool = Field(default=True, description="Allow POST /api/auth/register")
    password_min_length: int = Field(default=8, ge=1, description="Shortest password accepted")


class RedisSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="Redis for state shared by all replicas (login throttling), e.g. "
        "redis://127.0.0.1:6379/0. Unset: kept in each process",
    )


class LdapSettings(BaseModel):
    enabled: bool = Field(default=False, description="Log users in against an LDAP directory")
    server_uri: str = Field(
        default="ldap://localhost:389", description="ldap://host:389 or ldaps://host:636"
    )
    start_tls: bool = Field(default=False, description="Upgrade ldap:// connections with StartTLS")
    ca_file: Path | None = Field(
        default=None, description="CA bundle to verify the directory's certificate (TLS)"
    )
    timeout_s: float = Field(default=5.0, gt=0, description="Connect and operation timeout")
    bind_dn: str = Field(default="", description="Service account that searches the directory")
    bind_password: SecretStr | None = Field(default=None, description="Its password")
    user_search_base: str = Field(default="", description="Where users are searched")
    user_search_scope: Literal["subtree", "onelevel"] = Field(
        default="subtree", description="Search depth under the base"
    )
    user_search_filter: str = Field(
        default="(uid={username})",
        description="User filter; {username} is escaped. AD: (sAMAccountName={username})",
    )
    group_search_base: str = Field(default="", description="Where groups are searched")
    group_type: Literal["group_of_names", "active_directory"] = Field(
        default="group_of_names",
        description="groupOfNames (FreeIPA, OpenLDAP) or nested Active Directory groups",
    )
    group_search_filter: str = Field(
        default="(objectClass=groupOfNames)",
        description="Which entries are groups. AD: (objectClass=group)",
    )
    group_member_attribute: str = Field(default="member", description="Group attribute of members")
    nested_groups: bool = Field(default=True, description="Follow groups that contain groups")
    attr_username: str = Field(default="uid", description="Username attribute (AD: sAMAccountName)")
    attr_first_name: str = Field(default="givenName", description="First-name attribute")
    attr_last_name: str = Field(default="sn", description="Last-name attribute")
    attr_email: str = Field(default="mail", description="E-mail attribute")
    admin_groups: list[str] = Field(
        default_factory=list, description="Group DNs whose members are admins (JSON list)"
    )
    business_groups: list[str] = Field(
        default_factory=list, description="Group DNs mapped to business (JSON list)"
    )
    user_groups: list[str] = Field(
        default_factory=list, description="Group DNs mapped to user (JSON list)"
    )
    worker_groups: list[str] = Field(
        default_factory=list, description="Group DNs mapped to worker (JSON list)"
    )


class IamSettings(BaseModel):
    rules_dir: Path | None = Field(
        default=None,
        description="Directory of the .rego permission policies (unset: the built-in iam/rules)",
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description="Failed logins of one account from one client address before that "
        "address must wait (1 s, then doubling) before trying the account again",
    )
    login_address_max_failures: int = Field(
        default=50,
        ge=1,
        description="Failed logins (and unknown tokens) from one client address, any "
        "account, before everything from that address must wait",
    )
    login_account_max_failures: int = Field(
        default=20,
        ge=1,
        description="Failed logins of one account from all addresses before each address "
        "that failed must leave a gap before its next try (never a lock-out)",
    )
    login_backoff_max_s: int = Field(
        default=900, ge=1, description="Longest wait of an account+address pair or an address"
    )
    login_account_max_delay_s: int = Field(
        default=30, ge=1, description="Longest gap the per-account ceiling imposes"
    )
    login_failure_window_s: int = Field(
        default=300,
        ge=1,
        description="Failed logins are forgotten this long after the wait they caused ends",
    )
    invitation_ttl_days: int = Field(
        default=7, ge=1, description="Days an organization invitation stays valid"
    )


class MediaSettings(BaseModel):
    uploads_dir: Path | None = Field(
        default=None,
        description="Where files wait between Upload-Start and Upload-Finish (and TUS uploads). "
        "Unset: `uploads` in the data dir",
    )
    share_root: Path | None = Field(
        default=None,
        description="Root of the server file share (`server_files`), e.g. a bucket or drive "
        "mounted with FUSE. Unset: share uploads are refused",
    )
    max_upload_bytes: int = Field(
        default=20 * 2**30, ge=1, description="Most bytes one task's upload may hold"
    )
    max_files: int = Field(default=100_000, ge=1, description="Most media files in one task")
    max_archive_members: int = Field(
        default=100_000, ge=1, description="Most entries in one uploaded zip/tar archive"
    )
    max_unpacked_bytes: int = Field(
        default=50 * 2**30,
        ge=1,
        description="Most bytes all archives of one task may unpack to (decompression bombs)",
    )
    max_compression_ratio: float = Field(
        default=1000, gt=1, description="Largest unpacked/packed ratio of an archive member"
    )
    max_image_pixels: int = Field(
        default=200_000_000, ge=1, description="Largest image (width x height) accepted"
    )
    max_video_frames: int = Field(
        default=1_000_000, ge=1, description="Most frames of one video accepted"
    )
    max_chunk_size: int = Field(
        default=1000,
        ge=1,
        le=2_147_483_647,
        description="Largest `chunk_size` (frames per chunk) a task may ask for; more is a 400",
    )
    max_chunk_pixels: int = Field(
        default=300_000_000,
        ge=1,
        description="Most pixels (width x height, summed over its frames) in one chunk: a "
        "task's chunk size is lowered to fit (a chunk holds at least one frame)",
    )
    max_keyframe_interval: int = Field(
        default=1000,
        ge=1,
        description="Most video frames decoded to reach one frame (from its keyframe): a video "
        "whose keyframes are further apart is refused when the task is created",
    )
    upload_expiry_s: float = Field(
        default=24 * 3600,
        gt=0,
        description="How long an unfinished upload is kept after its last activity (any upload "
        "call, each TUS PATCH)",
    )
    remote_allowlist: str = Field(
        default="",
        description="Older name of `CVAT_RAY_OUTBOUND__ALLOWLIST`, still read (the two lists "
        "are joined)",
    )
    remote_timeout_s: float = Field(
        default=30, gt=0, description="Timeout of one `remote_files` download"
    )
    workers: int = Field(
        default=1, ge=1, le=64, description="Media worker actors (runners of `create:task`)"
    )
    worker_num_cpus: float = Field(default=0.5, gt=0, description="CPUs per media worker actor")
    worker_concurrency: int = Field(
        default=2, ge=1, le=64, description="Requests one media worker processes at once"
    )
    serve_threads: int = Field(
        default=2, ge=1, le=64, description="Threads per API replica that build chunks and frames"
    )
    preview_size: int = Field(default=256, ge=16, le=2048, description="Preview side, pixels")


class BackupSettings(BaseModel):
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Backup worker actors (runners of `export:backup` and `import:backup`)",
    )
    worker_num_cpus: float = Field(default=0.1, gt=0, description="CPUs per backup worker actor")
    worker_concurrency: int = Field(
        default=2, ge=1, le=64, description="Backups one backup worker writes or restores at once"
    )
    keep_s: float = Field(
        default=86400,
        gt=0,
        description="How long an exported task or project backup stays downloadable",
    )
    probe_threads: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Threads of a restore that read and check the backup's images at once",
    )


class BackgroundSettings(BaseModel):
    launcher: Literal["auto", "ray", "inprocess"] = Field(
        default="auto",
        description="Where background requests (task data, auto-annotation runs, dataset runs) "
        "run: `ray` (named runner actors and Ray jobs), `inprocess` (threads of the API "
        "process), or `auto` (Ray when the API runs inside Ray; `cvat-ray up` sets `ray`). "
        "Decided once when the API app is built; online function calls follow it",
    )
    sweep_interval_s: float = Field(
        default=30,
        gt=0,
        description="How often the sweep re-queues lost requests, fails those whose runner "
        "died, and removes stale media files",
    )
    requeue_after_s: float = Field(
        default=60, gt=0, description="Age after which a queued request is handed over again"
    )


class DatasetsSettings(BaseModel):
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Dataset worker actors (`dataset-worker-<i>`: exports and imports)",
    )
    worker_num_cpus: float = Field(default=0.1, gt=0, description="CPUs per dataset worker")
    worker_concurrency: int = Field(
        default=2, ge=1, le=64, description="Exports and imports one dataset worker runs at once"
    )
    result_ttl_s: int = Field(
        default=24 * 3600,
        ge=60,
        description="How long a finished export's file is kept (and reused while its object "
        "is unchanged) before the sweep removes it",
    )
    max_import_bytes: int = Field(
        default=10 * 2**30,
        ge=1,
        description="Largest annotation file or archive accepted for import",
    )
    fork_reader_from_bytes: int = Field(
        default=2**20,
        ge=0,
        description="Imports of at least this many bytes are parsed in a forked process (a "
        "core of its own) while the worker writes what it parsed; smaller ones in a thread",
    )
    import_processes: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Processes forked to read a large import at once on PostgreSQL where its "
        "format can divide the file (COCO): each reads a share, makes its rows and takes their "
        "ids on a connection of its own, and the worker writes them; 0 or 1 reads it in one",
    )
    export_processes: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Processes forked to make a large export's pages at once on PostgreSQL "
        "(each reads the export's snapshot on a connection of its own); 0 makes them in the "
        "worker's thread",
    )
    fork_export_from_frames: int = Field(
        default=1024,
        ge=0,
        description="Exports of at least this many frames are made by the forked page "
        "processes; smaller ones in the worker's thread",
    )


class OutboundSettings(BaseModel):
    allowlist: str = Field(
        default="",
        description="Comma-separated hosts or CIDRs that outbound connections (`remote_files`, "
        "cloud storages, webhooks) may reach although private, loopback, link-local or a "
        "metadata address (e.g. `127.0.0.1/32,minio.internal`); see docs/security.md",
    )


class WebhooksSettings(BaseModel):
    concurrency: int = Field(
        default=16, ge=1, description="Webhook deliveries sent at once (one per webhook at a time)"
    )
    batch_size: int = Field(
        default=50, ge=1, description="Deliveries of one webhook claimed and sent in one go"
    )
    max_retries: int = Field(
        default=8,
        ge=0,
        description="Retries of a delivery after its first attempt (a webhook's own "
        "`max_retries` wins); then it is dead",
    )
    retry_delays: list[float] = Field(
        default=[5, 300, 1800, 10800, 86400],
        min_length=1,
        description="Seconds before each retry, the last one repeating (CVAT's schedule); a "
        "webhook's own `retry_delays` wins. Each delay gets a random jitter",
    )
    retry_jitter: float = Field(
        default=0.25, ge=0, le=1, description="Random share added to or taken from each delay"
    )
    sweep_interval_s: float = Field(
        default=5, gt=0, description="How often the sender looks for due deliveries unwoken"
    )
    claim_interval_s: float = Field(
        default=0.02,
        ge=0,
        description="Least time between two of the sender's claim/record transactions: the "
        "deliveries of a burst of commits are claimed, sent and recorded together",
    )
    lease_s: float = Field(
        default=120,
        gt=0,
        description="How long a claimed delivery is held by its sender before another may "
        "take it (a sender that died)",
    )
    retention_days: float = Field(
        default=30,
        gt=0,
        description="Delivered and dead deliveries older than this are deleted",
    )
    num_cpus: float = Field(default=0.05, gt=0, description="CPUs of the webhook sender actor")
    nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="CPU niceness of the sender actor's process (Linux): on a node it shares "
        "with the API it yields the CPU to request handling; 0 keeps the default priority",
    )


class CacheSettings(BaseModel):
    backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="Chunk/frame cache: `memory` (an LRU per API replica) or `redis` (shared)",
    )
    memory_max_bytes: int = Field(
        default=256 * 2**20, ge=0, description="Size cap of the in-process LRU cache"
    )
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis for the cache")
    redis_max_bytes: int = Field(
        default=2 * 2**30,
        ge=1,
        description="Size cap of the Redis cache; least recently used items are evicted",
    )
    redis_ttl_s: int = Field(default=7 * 24 * 3600, ge=1, description="Life of a Redis cache item")
    redis_prefix: str = Field(default="cvat-ray:media:", description="Key prefix in Redis")
    max_item_bytes: int = Field(
        default=64 * 2**20,
        ge=0,
        description="Largest chunk built in memory and cached; a larger one is built in a "
        "temporary file, sent from it and built again when asked again",
    )


class CloudSettings(BaseModel):
    credentials_key: SecretStr | None = Field(
        default=None,
        description="Fernet key that encrypts cloud storage credentials at rest. Unset: "
        "generated once into <data dir>/secrets/cloud.key",
    )
    timeout_s: float = Field(default=30, gt=0, description="Timeout of cloud storage calls")


class FunctionsSettings(BaseModel):
    dir: Path | None = Field(
        default=None,
        description="Folder of function spec files (`*.yaml`) that `cvat-ray up` deploys",
    )
    builtins: bool = Field(
        default=True,
        description="Deploy the built-in offline functions on `up` (they scale to zero)",
    )
    runner: Literal["auto", "serve", "inprocess"] = Field(
        default="auto",
        description="Where online calls run: `serve` deployments, `inprocess` (the API "
        "process loads the model), or `auto` (Serve when background work runs on Ray, "
        "`CVAT_RAY_BACKGROUND__LAUNCHER`)",
    )
    call_timeout_s: float = Field(
        default=120, gt=0, description="Timeout of one online function call (then 504)"
    )
    save_every: int = Field(
        default=64, ge=1, le=100_000, description="Whole-task runs save annotations every N frames"
    )
    decode_num_cpus: float = Field(
        default=0.1,
        gt=0,
        description="Logical CPUs per decode task or actor of a whole-task pipeline (two at "
        "once per function replica)",
    )
    driver_num_cpus: float = Field(
        default=0.1,
        gt=0,
        description="CPUs of the actor that drives whole-task runs (`autoannotate-driver-0`)",
    )
    concurrent_runs: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Whole-task runs the driver runs at once; later ones wait for a turn",
    )
    use_replicas: bool = Field(
        default=True,
        description="Whole-task runs send batches to the function's Serve replicas when it is "
        "deployed (sharing its GPUs and autoscaling); off: an actor pool of their own",
    )
    jobs_url: str | None = Field(
        default=None,
        description="Ray dashboard URL that `POST /api/lambda/runs` submits dataset runs to "
        "(Jobs API). Unset: the cluster's own dashboard",
    )
    engine: Literal["auto", "ray", "local"] = Field(
        default="auto",
        description="Whole-task runs: a Ray Data pipeline (`ray`), threads of the driver "
        "process (`local`), or `auto` (Ray Data when the run's runner is a Ray actor)",
    )


class AnalyticsSettings(BaseModel):
    enabled: bool = Field(
        default=True,
        description="Record CVAT's analytics events (server and client) and ship them to "
        "ClickHouse; off: no events, `/api/events` still answers as CVAT does",
    )
    host: str | None = Field(
        default=None,
        description="ClickHouse server (native protocol, clickhouse-driver). Unset: the "
        "embedded chdb engine, its data in <data dir>/analytics/chdb",
    )
    port: int = Field(default=9000, ge=1, le=65535, description="ClickHouse native port")
    user: str = Field(default="default", description="ClickHouse user")
    password: SecretStr | None = Field(default=None, description="ClickHouse password")
    database: str = Field(
        default="cvat", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", description="ClickHouse database"
    )
    secure: bool = Field(default=False, description="TLS to the ClickHouse server")
    verify: bool = Field(default=True, description="Verify the ClickHouse server's certificate")
    connect_timeout_s: float = Field(default=5, gt=0, description="ClickHouse connect timeout")
    ttl_days: int = Field(
        default=0,
        ge=0,
        le=36500,
        description="Keep events this many days (a ClickHouse TTL; a periodic delete on servers "
        "older than 19.6). 0: keep forever, as CVAT does",
    )
    outbox_cap: int = Field(
        default=1_000_000,
        ge=1000,
        description="Events waiting in the database outbox while ClickHouse is away; past it "
        "the oldest client events are dropped (and counted), never server events",
    )
    batch_size: int = Field(
        default=20_000, ge=1, le=1_000_000, description="Events the sink ships per insert"
    )
    flush_interval_s: float = Field(
        default=1.0, gt=0, description="How often the events sink drains the outbox"
    )
    sink_num_cpus: float = Field(
        default=0.05, gt=0, description="CPUs of the `events-sink-0` actor"
    )
    export_max_rows: int = Field(
        default=50_000_000, ge=1, description="Most rows one events CSV export writes"
    )


class Settings(BaseSettings):
    """All server settings. See the configuration table in README.md."""

    model_config = SettingsConfigDict(
        env_prefix="CVAT_RAY_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    data_dir: Path = Field(
        default=Path("./cvat-data"),
        description="Where the embedded database, media and Ray token live",
    )
    admin_username: str = Field(default="admin", description="Admin created on first start")
    admin_password: SecretStr | None = Field(
        default=None, description="Its password (unset: generated and printed once)"
    )
    admin_email: str = Field(default="", description="Its e-mail")
    log_level: str = Field(default="INFO", description="Python log level")

    database: DatabaseSettings = DatabaseSettings()
    server: ServerSettings = ServerSettings()
    ray: RaySettings = RaySettings()
    api: ApiSettings = ApiSettings()
    auth: AuthSettings = AuthSettings()
    iam: IamSettings = IamSettings()
    ldap: LdapSettings = LdapSettings()
    redis: RedisSettings = RedisSettings()
    media: MediaSettings = MediaSettings()
    background: BackgroundSettings = BackgroundSettings()
    backups: BackupSettings = BackupSettings()
    datasets: DatasetsSettings = DatasetsSettings()
    outbound: OutboundSettings = OutboundSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    cache: CacheSettings = CacheSettings()
    cloud: CloudSettings = CloudSettings()
    functions: FunctionsSettings = FunctionsSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'cvat.db').resolve()}"

    @property
    def outbound_allowlist(self) -> str:
        """The outbound allow-list: ``outbound.allowlist`` joined with its older name."""
        return ",".join(a for a in (self.outbound.allowlist, self.media.remote_allowlist) if a)

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def uploads_dir(self) -> Path:
        return self.media.uploads_dir or self.data_dir / "uploads"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def imports_dir(self) -> Path:
        return self.data_dir / "imports"

    @property
    def cloud_key_path(self) -> Path:
        return self.data_dir / "secrets" / "cloud.key"

    @property
    def ray_token_path(self) -> Path:
        return self.data_dir / "ray" / "auth_token"

    @property
    def analytics_dir(self) -> Path:
        """The embedded ClickHouse (chdb) data and the events exports."""
        return self.data_dir / "analytics"

    @property
    def state_file(self) -> Path:
        """Written by `up` so `status` can find the running server."""
        return self.data_dir / "server.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, from the environment and, when ``CVAT_RAY_SETTINGS_FILE`` names one, a
    dotenv file of ``CVAT_RAY_*`` lines (the environment wins)."""
    env_file = os.environ.get("CVAT_RAY_SETTINGS_FILE")
    return Settings(_env_file=env_file) if env_file else Settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests and the CLI after changing the environment)."""
    get_settings.cache_clear()


def env_table() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting, for the README."""
    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name.upper()}__")
                continue
            default = field.get_default(call_default_factory=True)
            shown = "" if default in (None, [], {}) else str(getattr(default, "value", default))
            rows.append((f"{prefix}{name.upper()}", shown, field.description or ""))

    walk(Settings, "CVAT_RAY_")
    return rows


if __name__ == "__main__":
    for env, default, description in env_table():
        print(
            f"| `{env}` | `{default}` | {description} |"
            if default
            else f"| `{env}` | | {description} |"
        )
