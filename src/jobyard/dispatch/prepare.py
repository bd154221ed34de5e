"""Getting a claimed job ready to start: its working directory with the model artifact,
environment files, inputs and output directory, its Python environment, its command
line and its environment variables."""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import stat
import sys
import sysconfig
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jobyard import errors
from jobyard.dispatch import jobenv
from jobyard.domain.folders import Folder, FolderFile
from jobyard.domain.jobs import ErrorType, Job
from jobyard.domain.registry import Environment, ModelKind, ModelVersion, OutputRole
from jobyard.envs.venv import VenvCache
from jobyard.executors.base import LaunchSpec
from jobyard.storage.blobs import BlobStore
from jobyard.storage.fs import safe_relpath
from jobyard.storage.workspace import Workspace
from jobyard.store.registry import RegistryStore

RUNTIME_ENV_SETUP_FAILED = ErrorType.RUNTIME_ENV_SETUP_FAILED.value


class SetupError(errors.ExecutorError):
    """The job's environment could not be set up."""

    def __init__(self, message: str, error_type: str = RUNTIME_ENV_SETUP_FAILED) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True)
class Prepared:
    launch: LaunchSpec
    memory_limit_bytes: int | None


class FolderAccess(Protocol):
    """What the dispatcher needs of folders (implemented by the folder service)."""

    def get_unscoped(self, folder_id: str) -> Folder | None: ...

    def materialize(self, folder: Folder, dest: Path) -> int: ...

    def ingest(self, folder: Folder, src: Path) -> list[FolderFile]: ...


def _nothing(_stage: str) -> None:
    """No one to tell of setup stages."""


class Preparer:
    def __init__(
        self,
        *,
        workspace: Workspace,
        registry: RegistryStore,
        blobs: BlobStore,
        folders: FolderAccess,
        venvs: VenvCache,
        api_url: str,
        run_as_user: str | None = None,
        envs_here: bool = True,
    ) -> None:
        self.workspace = workspace
        self.registry = registry
        self.blobs = blobs
        self.folders = folders
        self.venvs = venvs
        self.api_url = api_url
        self.run_as_user = run_as_user if os.geteuid() == 0 else None
        #: False: Python environments are set up where the job runs (by the executor)
        self.envs_here = envs_here
        self.pylib = write_pylib(workspace.root.parent / "pylib")

    def output_roles(self, job: Job) -> tuple[OutputRole, ...]:
        version = self._version(job)
        return version.output_roles if version else ()

    def output_folder(self, job: Job) -> Folder | None:
        if not job.spec.output_folder_id:
            return None
        return self.folders.get_unscoped(job.spec.output_folder_id)

    def prepare(
        self,
        job: Job,
        cancel: threading.Event,
        say: Callable[[str], None],
        token: str = "",
        stage: Callable[[str], None] = _nothing,
    ) -> Prepared:
        """Build everything the job's process needs; raises SetupError with a clear message.
        ``say`` writes a line to the job's log; ``stage`` tells what the setup is doing
        ("creating environment py-small"), only for the steps that take time (a plain
        command job has none)."""
        spec = job.spec
        version = self._version(job)
        environment = self._environment(job)
        parameters = dict(spec.parameters)
        workdir = self.workspace.workdir(job.id)
        input_dir, output_dir = workdir / "input", workdir / "output"
        # the spare directory has input/ and output/: not for jobs that unpack files
        # into the working directory before those are made (as a fresh one does)
        unpacks = bool(
            (version is not None and version.artifact_sha256)
            or spec.packages
            or (environment is not None and environment.files)
        )
        spare = not unpacks and self.workspace.take_spare(job.id)
        if not spare:
            if workdir.exists():  # a retry starts from a clean directory
                _make_writable(workdir)
                shutil.rmtree(workdir)
            workdir.mkdir(parents=True)
        log_path, status_path = self._attempt_files(job, spare)
        if version is not None and version.artifact_sha256:
            stage(f"fetching model {version.ref}")
            say(f"jobyard: fetching model {version.ref} ({version.artifact_sha256[:12]})")
            self._unpack_artifact(version, workdir)
        py_paths = self._packages(job, workdir, say, stage)
        if environment is not None:
            for rel, text in environment.files.items():
                target = workdir / safe_relpath(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        if not spare:
            input_dir.mkdir()
            output_dir.mkdir()
        self._read_only_inputs(job, input_dir, parameters, say, stage)
        if job.spec.inputs_sha256:
            self.blobs.fetch(job.spec.inputs_sha256, workdir / "inputs.jsonl")
        # nothing unpacked: the directory is new (its own or the spare's), holds no
        # parameters.json and no one reads it before the job starts: written in place
        self.workspace.write_parameters(job.id, parameters, fresh=not unpacks)
        python = sys.executable
        path_prefix = ""
        requirements: tuple[str, ...] = ()
        if environment is not None and environment.pip_requirements and not self.envs_here:
            requirements = tuple(environment.pip_requirements)
        elif environment is not None and environment.pip_requirements:
            stage(f"creating environment {environment.name}")
            say(f"jobyard: preparing Python environment of {environment.name!r}")
            try:
                venv_python = self.venvs.ensure(
                    list(environment.pip_requirements), log_path, cancel=cancel
                )
            except errors.ExecutorError as e:
                raise SetupError(
                    f"the environment {environment.name!r} could not be set up: {e.message}"
                ) from e
            _link_runtime_packages(venv_python)
            python = str(venv_python)
            path_prefix = str(venv_python.parent)
        user_env = {**(environment.env_vars if environment else {}), **spec.env}
        env = jobenv.build_env(
            job_id=job.id,
            attempt=job.attempt,
            api_url=self.api_url,
            workdir=workdir,
            parameters=parameters,
            user_env=user_env,
            job_token=token,
        )
        env["JOBYARD_INPUT_DIR"] = str(input_dir)
        env["JOBYARD_OUTPUT_DIR"] = str(output_dir)
        env["JOBYARD_PYTHON"] = python
        extra = user_env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join(
            [*py_paths, str(self.pylib), *([extra] if extra else [])]
        )
        if path_prefix:
            env["PATH"] = path_prefix + os.pathsep + env.get("PATH", "")
            env["VIRTUAL_ENV"] = str(Path(path_prefix).parent)
        entrypoint, argv = self._command(job, version, python)
        limit = environment.memory_limit_mb if environment else None
        if self.run_as_user is not None:
            env["HOME"] = str(workdir)
            env["USER"] = env["LOGNAME"] = self.run_as_user
        launch = LaunchSpec(
            job_id=job.id,
            attempt=job.attempt,
            entrypoint=entrypoint,
            argv=argv,
            workdir=workdir,
            log_path=log_path,
            env=env,
            status_path=status_path,
            network=environment is None or environment.network != "none",
            memory_limit_bytes=limit * 1024 * 1024 if limit else None,
            cpu_slots=job.spec.slots,
            python_requirements=requirements,
            user=self.run_as_user,
        )
        if self.run_as_user is not None:
            _give_to(workdir, self.run_as_user)
        return Prepared(launch=launch, memory_limit_bytes=launch.memory_limit_bytes)

    # ---- parts ------------------------------------------------------------------------
    def _attempt_files(self, job: Job, spare: bool) -> tuple[Path, Path]:
        """The attempt's log and exit status paths, the directory of both made and no
        stale status left (the spare's ``logs/`` is empty: ≈ 40 µs of failed calls a
        job fewer)."""
        log_path = self.workspace.log_path(job.id, job.attempt)
        status_path = self.workspace.exit_status_path(job.id, job.attempt)
        if not spare:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            status_path.unlink(missing_ok=True)  # a stale one would pass for this attempt's
        return log_path, status_path

    def _packages(
        self,
        job: Job,
        workdir: Path,
        say: Callable[[str], None],
        stage: Callable[[str], None] = _nothing,
    ) -> list[str]:
        """Unpack uploaded packages: a working_dir archive into the working directory, a
        py_module archive into ``.py_modules/`` (or a wheel as is); returns PYTHONPATH entries."""
        paths: list[str] = []
        for pkg in job.spec.packages:
            key = package_key(pkg["uri"], job.tenant_id)
            name = key.rsplit("/", 1)[-1]
            local = workdir.parent / f"pkg-{name}"
            stage(f"unpacking {pkg['role']} package {name}")
            try:
                self.blobs.storage.download(key, local)
            except (OSError, FileNotFoundError) as e:
                raise SetupError(f"package {pkg['uri']} is not available: {e}") from e
            say(f"jobyard: unpacking {pkg['role']} package {name}")
            if pkg["role"] == "working_dir":
                _safe_unzip(local, workdir)
                local.unlink(missing_ok=True)
            elif name.endswith(".whl"):
                target = workdir / ".py_modules" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                local.replace(target)
                paths.append(str(target))
            else:
                target = workdir / ".py_modules" / name.removesuffix(".zip")
                target.mkdir(parents=True, exist_ok=True)
                _safe_unzip(local, target)
                local.unlink(missing_ok=True)
                paths.append(str(target))
        return paths

    def _version(self, job: Job) -> ModelVersion | None:
        if not job.spec.model_version_id:
            return None
        version = self.registry.get_version_unscoped(job.spec.model_version_id)
        if version is None:
            raise SetupError(f"model version {job.spec.model_version_id} no longer exists")
        return version

    def _environment(self, job: Job) -> Environment | None:
        if not job.spec.environment_id:
            return None
        env = self.registry.get_environment_unscoped(job.spec.environment_id)
        if env is None:
            raise SetupError(f"environment {job.spec.environment_id} no longer exists")
        return env

    def _unpack_artifact(self, version: ModelVersion, workdir: Path) -> None:
        assert version.artifact_sha256 is not None
        staging = workdir.parent / f"artifact-{version.artifact_sha256[:16]}"
        try:
            self.blobs.fetch(version.artifact_sha256, staging)
        except OSError as e:
            raise SetupError(f"the artifact of model {version.ref} cannot be read: {e}") from e
        try:
            if version.artifact_is_archive:
                _safe_unzip(staging, workdir)
            else:
                shutil.copyfile(
                    staging, workdir / safe_relpath(version.artifact_name or "artifact")
                )
        finally:
            staging.unlink(missing_ok=True)

    def _read_only_inputs(
        self,
        job: Job,
        input_dir: Path,
        parameters: dict[str, Any],
        say: Callable[[str], None],
        stage: Callable[[str], None],
    ) -> None:
        """:meth:`_inputs`, then ``input_dir`` made read-only (an empty one, as made or
        the spare's, without a walk)."""
        if self._inputs(job, input_dir, parameters, say, stage):
            _make_read_only(input_dir)
        else:
            os.chmod(input_dir, 0o555)  # noqa: S103 - read-only, for the job's user too

    def _inputs(
        self,
        job: Job,
        input_dir: Path,
        parameters: dict[str, Any],
        say: Callable[[str], None],
        stage: Callable[[str], None] = _nothing,
    ) -> bool:
        """Copy the job's input folders into ``input_dir``; whether anything was put
        there (else it is as empty as it was made)."""
        copied = False
        if job.spec.input_folder_id:
            folder = self._folder(job.spec.input_folder_id, "input")
            stage(f"copying input folder {folder.name}")
            size = self.folders.materialize(folder, input_dir)
            say(f"jobyard: input folder {folder.name!r} copied ({size} bytes)")
            copied = True
        for binding in job.spec.input_bindings:
            role = str(binding["role"])
            if binding.get("folder_id"):
                folder = self._folder(str(binding["folder_id"]), f"role {role}")
                stage(f"copying folder {folder.name} for role {role}")
                dest = input_dir / safe_relpath(role, "role")
                dest.mkdir(parents=True, exist_ok=True)
                self.folders.materialize(folder, dest)
                parameters.setdefault(role, f"input/{role}")
                copied = True
            else:
                parameters.setdefault(role, binding.get("value"))
        return copied

    def _folder(self, folder_id: str, what: str) -> Folder:
        folder = self.folders.get_unscoped(folder_id)
        if folder is None:
            raise SetupError(f"the {what} folder {folder_id} no longer exists")
        return folder

    @staticmethod
    def _command(
        job: Job, version: ModelVersion | None, python: str
    ) -> tuple[str | None, tuple[str, ...] | None]:
        if version is None:
            return job.spec.entrypoint, job.spec.argv
        target = version.entrypoint or version.artifact_name or ""
        flag = ("--continue-on-error",) if job.spec.continue_on_error else ()
        if version.kind is ModelKind.COMMAND:
            return version.entrypoint, None
        if version.kind is ModelKind.PYTHON:
            return None, (python, target)
        if version.kind is ModelKind.NOTEBOOK:
            out = "output/" + Path(target).stem + ".executed.ipynb"
            return None, (
                python,
                "-m",
                "jobyard.runners.jupyter",
                target,
                "--parameters",
                "parameters.json",
                "--output",
                out,
                *flag,
            )
        out = "output/" + Path(target).stem + ".executed.zpln"
        return None, (
            python,
            "-m",
            "jobyard.runners.zeppelin",
            target,
            "--parameters",
            "parameters.json",
            "--output",
            out,
            *flag,
        )


def package_key(uri: str, tenant_id: str) -> str:
    """Storage key of a tenant's uploaded package (``gcs://name.zip`` →
    ``packages/<tenant>/gcs/name.zip``): packages are never shared between tenants."""
    protocol, sep, name = uri.partition("://")
    if not sep or not protocol.isalnum() or not name or "/" in name or name.startswith("."):
        raise SetupError(f"not a package URI: {uri!r}")
    return f"packages/{tenant_id}/{protocol}/{name}"


def _safe_unzip(archive: Path, dest: Path) -> None:
    try:
        _unzip(archive, dest)
    except zipfile.BadZipFile as e:
        raise SetupError(f"{archive.name} is not a valid zip archive: {e}") from e


def _unzip(archive: Path, dest: Path) -> None:
    root = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = (
                safe_relpath(info.filename.rstrip("/") or ".", "artifact member")
                if info.filename.strip("/")
                else None
            )
            if name is None:
                continue
            target = (root / name).resolve()
            if not target.is_relative_to(root):
                raise SetupError(
                    f"the artifact member {info.filename!r} escapes the working directory"
                )
            if stat.S_ISLNK(info.external_attr >> 16):
                continue  # never create symlinks from an archive
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)


def _make_read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                p.chmod(0o444)
        for name in dirnames:
            (Path(dirpath) / name).chmod(0o555)
    root.chmod(0o555)


def _make_writable(root: Path) -> None:
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                p.chmod(0o755)
    root.chmod(0o755)


def _link_runtime_packages(venv_python: Path) -> None:
    """Let a job's virtualenv fall back to jobyard's own packages (the notebook kernel,
    the in-job helper): a ``.pth`` line adds them as a site directory after the
    environment's own packages, with their ``.pth`` files (editable installs) honoured."""
    purelib = sysconfig.get_paths()["purelib"]
    line = f"import site; site.addsitedir({purelib!r})\n"
    venv = venv_python.parent.parent
    for site_dir in venv.glob("lib/python*/site-packages"):
        pth = site_dir / "zz-jobyard-runtime.pth"
        if not pth.exists() or pth.read_text() != line:
            pth.write_text(line)


def write_pylib(root: Path) -> Path:
    """A directory for jobs' ``PYTHONPATH`` in which ``import jobyard.runtime`` works from
    any Python 3.11+: a ``jobyard`` package whose modules are this installation's (its
    ``__init__`` imports nothing, so the job needs none of the server's dependencies)."""
    package = root / "jobyard"
    package.mkdir(parents=True, exist_ok=True)
    real = Path(__file__).resolve().parent.parent
    text = (
        '"""jobyard for jobs: the in-job helper ``jobyard.runtime`` and marker lines."""\n'
        f"__path__ = [{str(real)!r}]\n\n\n"
        "def __getattr__(name):\n"
        "    if name == 'Client':\n"
        "        from jobyard.sdk.client import Client\n\n"
        "        return Client\n"
        "    raise AttributeError(name)\n"
    )
    init = package / "__init__.py"
    if not init.exists() or init.read_text() != text:
        init.write_text(text)
    return root


def _give_to(workdir: Path, user: str) -> None:
    """Make the working directory the run-as user's (the read-only inputs stay root's):
    each directory and file, not symbolic links, nor what they point to."""
    uid, gid = _user_ids(user)
    _chown_tree(str(workdir), uid, gid, skip="input")


@functools.lru_cache(maxsize=16)
def _user_ids(user: str) -> tuple[int, int]:
    """``user``'s uid and primary gid (looked up once: ``getpwnam`` reads
    ``/etc/passwd`` on every call, as ``sandbox.setpriv_ids`` notes)."""
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _chown_tree(path: str, uid: int, gid: int, skip: str = "") -> None:
    """chown ``path`` (a directory) and what is in it, but the directory ``skip`` at its
    top: by ``os.scandir``, whose entries know their type (``os.walk`` and pathlib's
    ``is_symlink`` cost an ``lstat`` and a ``Path`` per file)."""
    os.chown(path, uid, gid)
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != skip:
                    _chown_tree(entry.path, uid, gid)
            elif not entry.is_symlink():
                os.chown(entry.path, uid, gid)
