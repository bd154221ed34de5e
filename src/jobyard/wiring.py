"""The composition root: builds the database, stores, services and dispatcher of one
jobyard process from its settings."""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from jobyard import errors
from jobyard.clock import Clock, SystemClock
from jobyard.dispatch.dispatcher import Dispatcher
from jobyard.dispatch.prepare import Preparer
from jobyard.envs.venv import VenvCache
from jobyard.executors.base import Executor
from jobyard.executors.support import DEFAULT_USER, SandboxSupport
from jobyard.service.auth import AuthService
from jobyard.service.definitions import DefinitionService
from jobyard.service.folders import FolderService
from jobyard.service.insight import InsightService
from jobyard.service.jobs import JobService
from jobyard.service.limits import Quotas, RateLimiter
from jobyard.service.logs import LogService
from jobyard.service.monitoring import Upkeep
from jobyard.service.notifications import DeliveryLog, NotificationService
from jobyard.service.packages import PackageService
from jobyard.service.readiness import ReadinessCheck
from jobyard.service.registry import RegistryService
from jobyard.service.results import ResultService
from jobyard.service.status import SystemStatusService
from jobyard.service.tenancy import TenancyService
from jobyard.service.tracking import TrackingService
from jobyard.service.wakeup import NoWakeup, Wakeup
from jobyard.settings import Settings
from jobyard.storage import private
from jobyard.storage.blobs import BlobStore
from jobyard.storage.fs import Storage
from jobyard.storage.logarchive import JobLogs, LogArchive
from jobyard.storage.workspace import Workspace
from jobyard.store import migrate
from jobyard.store.admission import Admission
from jobyard.store.artifacts import ArtifactStore
from jobyard.store.auth import AuthStore
from jobyard.store.database import Database
from jobyard.store.definitions import DefinitionStore
from jobyard.store.fairshare import FairShareStore
from jobyard.store.folders import FolderStore
from jobyard.store.jobs import JobStore
from jobyard.store.nodes import NodeStore
from jobyard.store.notifications import NotificationStore
from jobyard.store.registry import RegistryStore
from jobyard.store.tenancy import TenancyStore
from jobyard.store.tracking import TrackingStore


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    jobs: JobService
    logs: LogService
    tracking: TrackingService
    insight: InsightService
    auth: AuthService
    folders: FolderService
    registry: RegistryService
    storage: Storage
    blobs: BlobStore
    results: ResultService
    definitions: DefinitionService
    upkeep: Upkeep
    notifications: NotificationService
    tenancy: TenancyService
    rate_limiter: RateLimiter
    dispatcher: Dispatcher | None
    node_id: str
    sandbox: SandboxSupport
    readiness: ReadinessCheck
    status: SystemStatusService  #: one per process: its CPU figure spans two calls
    packages: PackageService  #: uploaded code packages (the Ray API's)
    deliveries: DeliveryLog  #: what notifications were sent, as users see it

    def start(self) -> str | None:
        """Migrate, bootstrap (returns a new admin key on first start) and start dispatching."""
        migrate.upgrade(self.db)
        secret = self.auth.bootstrap()
        self.tenancy.check_single_tenant()
        private.protect_file(self.db.file_path)
        if self.dispatcher is not None:
            self.dispatcher.start()
        self.upkeep.start()
        self.notifications.start()
        return secret

    def close(self) -> None:
        self.upkeep.stop()
        self.notifications.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        self.db.dispose()


def node_id_for(settings: Settings) -> str:
    """The node id: from the settings, else kept in ``<data_dir>/node_id`` so a restarted
    server recognises the jobs it ran before."""
    if settings.node_id:
        return settings.node_id
    path = Path(settings.data_dir) / "node_id"
    if path.exists():
        return path.read_text().strip()
    node_id = f"{socket.gethostname()[:40]}-{secrets.token_hex(4)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(node_id + "\n")
    return node_id


def make_executor(settings: Settings, node_id: str) -> tuple[Executor, SandboxSupport]:
    """The executor for the settings, and whether its jobs run in a sandbox."""
    if settings.executor == "ray":
        return make_ray_executor(settings, node_id)
    if settings.executor != "local":
        raise errors.InvalidInput(
            f"executor must be local or ray, not {settings.executor!r}", field="executor"
        )
    from jobyard.executors.local import LocalExecutor

    if settings.sandbox not in ("auto", "on", "off"):
        raise errors.InvalidInput(
            f"sandbox must be auto, on or off, not {settings.sandbox!r}", field="sandbox"
        )
    if settings.sandbox == "off":
        return LocalExecutor(), SandboxSupport.off("turned off (--sandbox off)")
    from jobyard.executors import sandbox

    extra = [Path(p.strip()) for p in settings.sandbox_read_only.split(",") if p.strip()]
    data = settings.data_dir.resolve()
    box, support = sandbox.detect(
        node_id=node_id,
        data_dir=data,
        read_only_inside=[data / "envs", data / "pylib"],
        extra_read_only=extra,
        pids_max=settings.job_pids_max,
    )
    if box is None:
        if settings.sandbox == "on":
            raise errors.InvalidInput(
                f"jobs cannot be sandboxed on this host: {support.reason} (--sandbox on)",
                field="sandbox",
            )
        return LocalExecutor(), support
    return sandbox.SandboxedExecutor(box), support


def make_ray_executor(settings: Settings, node_id: str) -> tuple[Executor, SandboxSupport]:
    """The Ray executor (its jobs are sandboxed on the workers, where the workers can:
    see docs/how-to/ray.md)."""
    from jobyard.executors import raycluster

    if not settings.ray_address:
        raise errors.InvalidInput(
            "the Ray executor needs the cluster's address: --ray-address http://HEAD:8265",
            field="ray_address",
        )
    try:
        executor = raycluster.RayExecutor(
            settings.ray_address,
            node_id=node_id,
            stop_grace_s=settings.stop_grace_s,
            lost_after_s=settings.ray_lost_after_s,
            sandbox=settings.sandbox != "off",
        )
    except errors.ExecutorError as e:
        raise errors.InvalidInput(e.message, field="ray_address") from None
    if settings.sandbox == "off":
        return executor, SandboxSupport.off("turned off (--sandbox off)")
    return executor, SandboxSupport(
        False,
        "jobs run on a Ray cluster: sandboxed there only where its workers run as root"
        " with bubblewrap (docs/how-to/ray.md)",
        False,
        "jobs run on a Ray cluster",
    )


def ray_slots(settings: Settings) -> Settings:
    """For the Ray executor without ``--slots``: as many slots as the cluster has CPUs."""
    if settings.executor != "ray" or settings.slots > 0 or not settings.ray_address:
        return settings
    from jobyard.executors import raycluster

    try:
        cpus = raycluster.cluster_cpus(settings.ray_address)
    except errors.ExecutorError as e:
        raise errors.InvalidInput(e.message, field="ray_address") from None
    return settings.with_(slots=cpus)


def build_services(
    settings: Settings, *, clock: Clock | None = None, executor: Executor | None = None
) -> Services:
    clock = clock or SystemClock()
    private.make_private_dir(settings.data_dir)
    db = Database(settings.db_url)
    store = JobStore(db)
    registry_store = RegistryStore(db)
    tenancy_store = TenancyStore(db)
    quotas = Quotas(tenancy_store, settings)
    artifacts = ArtifactStore(db)
    tracking = TrackingStore(db)
    workspace = Workspace(settings.data_dir)
    storage = Storage(settings.storage)
    blobs = BlobStore(storage)
    log_archive = LogArchive(storage) if settings.logs_shared else None
    job_logs = JobLogs(workspace, log_archive)
    limit = settings.max_upload_bytes
    folders = FolderService(
        store=FolderStore(db), storage=storage, jobs=store, clock=clock, max_upload_bytes=limit
    )
    registry = RegistryService(
        store=registry_store, blobs=blobs, jobs=store, clock=clock, max_upload_bytes=limit
    )
    node_id = node_id_for(settings)
    dispatcher: Dispatcher | None = None
    wakeup: Wakeup = NoWakeup()
    support = SandboxSupport.off("this node runs no jobs")
    if settings.run_dispatcher:
        if executor is None:
            executor, support = make_executor(settings, node_id)
        else:
            support = SandboxSupport.off("a custom executor runs the jobs")
        settings = ray_slots(settings)
        preparer = Preparer(
            workspace=workspace,
            registry=registry_store,
            blobs=blobs,
            folders=folders,
            venvs=VenvCache(settings.data_dir / "envs"),
            api_url=settings.api_url,
            run_as_user=settings.run_as_user or (DEFAULT_USER if support.sandboxed else None),
            envs_here=settings.executor != "ray",  # Ray sets them up on its workers
        )
        dispatcher = Dispatcher(
            store=store,
            nodes=NodeStore(db),
            executor=executor,
            workspace=workspace,
            preparer=preparer,
            artifacts=artifacts,
            tracking=tracking,
            clock=clock,
            settings=settings,
            node_id=node_id,
            log_limit=quotas.log_bytes,
            log_archive=log_archive,
        )
        wakeup = dispatcher
    notifications = NotificationService(NotificationStore(db), store, clock, settings)
    auth = AuthService(AuthStore(db), clock, tracking)
    fair_share = FairShareStore(db, settings.fair_share_half_life_s)
    tenancy = TenancyService(
        store=tenancy_store,
        auth=auth,
        clock=clock,
        single_tenant_reason=None
        if support.sandboxed or settings.allow_unsandboxed_jobs or not settings.run_dispatcher
        else support.reason,
        fair_share=fair_share,
    )
    folders.storage_quota = quotas.check_storage
    jobs = JobService(
        store=store,
        log_files=job_logs,
        clock=clock,
        wakeup=wakeup,
        aging_step_s=settings.aging_step_s,
        registry=registry,
        folders=folders,
        blobs=blobs,
        validate_notifications=notifications.validate,
        audit=tenancy.audit,
        quotas=quotas,
    )
    insight = InsightService(
        store=store,
        admission=Admission(db, fair_share),
        clock=clock,
        default_max_running=settings.max_running_jobs_default,
        capacity_reason="waiting for Ray cluster capacity" if settings.executor == "ray" else None,
    )
    definitions = DefinitionService(
        store=DefinitionStore(db), jobs=jobs, registry=registry, clock=clock
    )
    upkeep = Upkeep(
        definitions=definitions,
        jobs=store,
        logs=job_logs,
        clock=clock,
        interval_s=settings.upkeep_interval_s,
        fair_share=fair_share,
    )
    return Services(
        settings=settings,
        clock=clock,
        db=db,
        jobs=jobs,
        logs=LogService(jobs, job_logs),
        tracking=TrackingService(jobs, tracking, clock),
        insight=insight,
        auth=auth,
        folders=folders,
        registry=registry,
        storage=storage,
        blobs=blobs,
        results=ResultService(jobs=store, artifacts=artifacts, blobs=blobs),
        definitions=definitions,
        upkeep=upkeep,
        notifications=notifications,
        tenancy=tenancy,
        rate_limiter=RateLimiter(settings.rate_limit_per_s),
        dispatcher=dispatcher,
        node_id=node_id,
        sandbox=support,
        readiness=ReadinessCheck(
            db=db, nodes=NodeStore(db), data_dir=settings.data_dir, clock=clock
        ),
        status=SystemStatusService(db=db, clock=clock, settings=settings, node_id=node_id),
        packages=PackageService(storage, settings.max_upload_bytes),
        deliveries=DeliveryLog(NotificationStore(db), jobs.get),
    )
