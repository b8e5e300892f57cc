"""The embedded default backend: every role is an OS process on 127.0.0.1.

A launch creates a run directory `<run root>/<scope>/<job>-<launch id>/` holding, per role, its
log (`<role>.log`), its supervisor's process id (`<role>.pid`), its launch record
(`<role>.json`: command, environment and working directory, so a role can be started again) and,
once it ended, its exit record (`<role>.exit`).
Roles run in the launcher's working directory, so a `command` such as `[python, train.py]` or an
entrypoint module next to the spec is found as it would be when run by hand.

Warm standby (asked for with `standby=True` or `$TFDIST_LOCAL_STANDBY=1`): a role of tfdist's
runtime is started again in well under a second. Each start of such a role also starts its
standby (`tfdist.runtime.standby` under a supervisor of its
own: `<role>.standby` holds its id, `<role>.standby.fifo` is where it is handed the role),
which imports TensorFlow and the trainer and waits; starting the role again hands the role to
it and starts the next standby. Off by default: a standby costs an import of TensorFlow while
the job trains and about 0.6 GB of memory, restarted or not.
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import psutil

from tfdist.backend import (
    EXPORT_TIMEOUT_SECS,
    JobHandle,
    LaunchError,
    LaunchRefused,
    RoleState,
    RoleStatus,
    SupervisionRecord,
)
from tfdist.capabilities import LOCAL
from tfdist.launch.capacity import capacity_problem, machine_capacity
from tfdist.lifecycle import Ending, RoleEnd
from tfdist.plan import RUNTIME_MODULE, JobPlan, RolePlan, plan, role_command
from tfdist.spec import JobSpec, Role
from tfdist.supervision import record_in_file
from tfdist.supervisor import Command, RestartJob, RestartRole, StopRoles

BACKEND = "local"
STOP_GRACE_SECS = 15.0  # a role launched without a grace period in its launch record
RESTART_MARKER = "----- tfdist: starting {role} again -----"  # in the role's log, per relaunch
QUIET_TF_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
ENTRYPOINT_CHECK_SECS = 60.0
STANDBY_MODULE = "tfdist.runtime.standby"
STANDBY_ENV = "TFDIST_LOCAL_STANDBY"  # "1": a warm standby per runtime role
STANDBY_STOP_SECS = 10.0  # a standby ends at once on SIGTERM; SIGKILL after this
# Run by the roles' interpreter, in their directory and environment: is the module there?
# (`find_spec` imports the parent packages only, not the module itself.)
# Run by the roles' interpreter: exit 3 when the module is not there, 4 (printing the names)
# when its source lacks functions of the trainer contract.
FIND_MODULE = """
import importlib.util, sys
try:
    found = importlib.util.find_spec(sys.argv[1])
except ModuleNotFoundError:
    found = None
if found is None:
    sys.exit(3)
if found.origin and found.origin.endswith(".py"):
    from tfdist.runtime.contract import undefined_in_source
    with open(found.origin, encoding="utf-8") as source:
        missing = undefined_in_source(source.read())
    if missing:
        print(", ".join(missing))
        sys.exit(4)
"""


def free_ports(count: int) -> list[int]:
    """Ports the kernel reports free on every interface (TensorFlow's servers bind them all),
    all distinct (held open together while choosing)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("", 0))
            ports.append(sock.getsockname()[1])
        return ports


class LocalLauncher:
    """The local `tfdist.backend.Backend`: role processes under `run_root/<scope>/`.

    `bind_to_parent=True` (the CLI) makes every role stop when this process dies; Airflow's
    setup task leaves it False, since the roles must outlive it, and relies on teardown.
    `max_roles` replaces the machine's role limit (`tfdist.launch.capacity`); default:
    `$TFDIST_MAX_LOCAL_ROLES`, else 4 per CPU. `python` runs the roles (default: this
    interpreter). `standby` keeps a warm standby per runtime role (see above); default: off
    unless `$TFDIST_LOCAL_STANDBY` is 1.
    """

    capabilities = LOCAL

    def __init__(
        self,
        run_root: str | Path,
        bind_to_parent: bool = False,
        workdir: str | Path | None = None,
        max_roles: int | None = None,
        python: str | None = None,
        standby: bool | None = None,
    ):
        self.run_root = Path(run_root).absolute()
        self.bind_to_parent = bind_to_parent
        self.workdir = Path(workdir if workdir is not None else Path.cwd()).absolute()
        self.python = python or sys.executable
        self.max_roles = max_roles
        self.standby = standby if standby is not None else os.environ.get(STANDBY_ENV) == "1"
        self._admitted: JobSpec | None = None

    # -- planning -------------------------------------------------------------------------
    def plan(self, spec: JobSpec, scope: str) -> JobPlan:
        return plan(
            spec,
            self.addresses(spec),
            python=self.python,
            scope=scope,
            launch_id=uuid.uuid4().hex[:8],
        )

    def admit(self, spec: JobSpec) -> None:
        """Raise `LaunchRefused` if the job cannot run here: a cluster beyond this machine, a
        trainer that is not there. Opens no socket and writes nothing; `launch` does not check
        the spec it admitted last again."""
        self._check_capacity(spec)
        self._check_trainer(spec)
        self._admitted = spec

    def _check_capacity(self, spec: JobSpec) -> None:
        try:
            problem = capacity_problem(len(spec.roles()), machine_capacity(self.max_roles))
        except ValueError as error:
            raise LaunchRefused(str(error)) from None
        if problem is not None:
            raise LaunchRefused(problem)

    def _check_trainer(self, spec: JobSpec) -> None:
        """Run by the roles' interpreter, in their directory and with their environment."""
        trainer = spec.trainer
        env = {**os.environ, **QUIET_TF_ENV, **trainer.env}
        if trainer.entrypoint is not None:
            found = subprocess.run(
                [self.python, "-c", FIND_MODULE, trainer.entrypoint],
                env=env,
                cwd=self.workdir,
                capture_output=True,
                timeout=ENTRYPOINT_CHECK_SECS,
                check=False,
            )
            if found.returncode == 3:
                raise LaunchRefused(
                    f"trainer.entrypoint: no module named {trainer.entrypoint!r} for "
                    f"{self.python} in {self.workdir}; check the spelling, that its package is "
                    "installed, or add its directory to trainer.env PYTHONPATH"
                )
            if found.returncode == 4:
                raise LaunchRefused(
                    f"trainer.entrypoint: {trainer.entrypoint} does not define "
                    f"{found.stdout.decode().strip()}, which the trainer contract requires "
                    "(see tfdist.runtime.contract); define them in the module"
                )
        else:
            program = _program(role_command(spec), self.python)
            located = program if "/" in program else shutil.which(program, path=env.get("PATH"))
            if located is None or not os.access(self.workdir / located, os.X_OK):
                raise LaunchRefused(
                    f"trainer.command: cannot run {program!r} from {self.workdir}: no such "
                    "executable; give its path or install it on PATH"
                )

    def addresses(self, spec: JobSpec) -> Mapping[str, Sequence[str]]:
        self._check_capacity(spec)  # before the first socket
        roles = [Role.CHIEF, Role.WORKER, Role.PS]
        counts = [spec.cluster.count(role) for role in roles]
        ports = iter(free_ports(sum(counts)))
        return {
            role.value: [f"127.0.0.1:{next(ports)}" for _ in range(count)]
            for role, count in zip(roles, counts, strict=True)
        }

    # -- launching ------------------------------------------------------------------------
    def launch(self, job: JobPlan) -> JobHandle:
        """Start every role; raises `LaunchError`, with nothing left running, if one cannot."""
        if job.spec != self._admitted:
            self.admit(job.spec)
        self._check_ports(job)
        launch_id = job.launch_id or uuid.uuid4().hex[:8]
        run_dir = self.run_root / job.scope / f"{job.spec.name}-{launch_id}"
        handle = JobHandle(
            backend=BACKEND,
            job_id=str(run_dir),
            launch_id=launch_id,
            roles=tuple(job.role_names),
        )
        started: list[str] = []
        try:
            run_dir.mkdir(parents=True, mode=0o700)
            (run_dir / "handle.json").write_text(handle.model_dump_json())
            grace = job.spec.restart_policy.grace_period_secs
            for role in job.roles:
                self._write_launch_record(run_dir, role, launch_id, grace)
            for role in job.roles:
                self._start(run_dir, role.name)
                started.append(role.name)
        except OSError as error:
            if started:
                self.stop(handle, started)
            undone = f"stopped {', '.join(started)} again" if started else "no role was started"
            fix = "Free space there" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "Fix it"
            raise LaunchError(
                f"cannot launch {job.spec.name} in {run_dir}: {error.strerror or error}"
                f"{f' ({error.filename})' if error.filename else ''}; {undone}. {fix} or "
                "choose another run root (`tfdist run --run-root`, TFDIST_RUN_ROOT)"
            ) from error
        return handle

    def _check_ports(self, job: JobPlan) -> None:
        """A port taken since planning: a retry plans again, so this is not bad input."""
        for role in job.roles:
            if role.address is not None and not _port_free(role.address):
                raise LaunchError(
                    f"{role.name}: port {role.address} is already in use by another process; "
                    "plan the job again to pick free ports"
                )

    def _write_launch_record(
        self, run_dir: Path, role: RolePlan, launch_id: str, grace_secs: float
    ) -> None:
        command = [_program(role.command, self.python), *role.command[1:]]
        env = {**QUIET_TF_ENV, **role.env, "TFDIST_LAUNCH_ID": launch_id}
        path = run_dir / f"{role.name}.json"
        record = {
            "command": command,
            "env": env,
            "cwd": str(self.workdir),
            "grace_secs": grace_secs,  # SIGTERM, then SIGKILL this long after
            # Whoever starts the role again (another process, too) keeps to this.
            "standby": self.standby and command == [self.python, "-m", RUNTIME_MODULE],
        }
        path.write_text(json.dumps(record))
        path.chmod(0o600)  # the environment may hold the user's trainer.env values

    def _start(self, run_dir: Path, name: str) -> None:
        record = json.loads((run_dir / f"{name}.json").read_text())
        exit_file = run_dir / f"{name}.exit"
        exit_file.unlink(missing_ok=True)
        # Until the new supervisor's id is recorded the role is pending, not a dead supervisor.
        (run_dir / f"{name}.pid").unlink(missing_ok=True)
        process = self._hand_over(run_dir, name) if record.get("standby") else None
        if process is None:
            with (run_dir / f"{name}.log").open("ab") as log:
                process = self._supervise(run_dir, name, record, record["command"], log)
        pid_record = {"pid": process.pid, "created": process.create_time()}
        try:
            (run_dir / f"{name}.pid").write_text(json.dumps(pid_record))
        except OSError:  # unrecorded, nothing could find it again: stop it now
            (run_dir / f"{name}.pid").unlink(missing_ok=True)
            _signal_group(process.pid, signal.SIGTERM)
            _, alive = psutil.wait_procs([process], timeout=_grace(run_dir, name))
            _signal_group(process.pid, signal.SIGKILL)
            psutil.wait_procs(alive, timeout=5)
            raise
        if record.get("standby"):
            self._start_standby(run_dir, name, record)

    def _supervise(
        self,
        run_dir: Path,
        name: str,
        record: dict[str, Any],
        command: list[str],
        output: IO[bytes],
        *standby: str,
    ) -> psutil.Process:
        """Start `command` under a supervisor of its own (in a new session), writing to
        `output`; `standby`: its `--standby FIFO` arguments."""
        exit_file = run_dir / f"{name}.exit"
        supervisor = [self.python, "-m", "tfdist.launch.supervise", "--exit-file", str(exit_file)]
        supervisor += ["--grace-secs", str(record.get("grace_secs", STOP_GRACE_SECS)), *standby]
        if self.bind_to_parent:
            supervisor += ["--parent", str(os.getpid())]
        with open(os.devnull, "rb") as devnull:
            return psutil.Popen(
                [*supervisor, "--", *command],
                env={**os.environ, **record["env"]},
                stdin=devnull,
                stdout=output,
                stderr=output,
                cwd=record.get("cwd", run_dir),
                start_new_session=True,
            )

    # -- warm standby ---------------------------------------------------------------------
    def _start_standby(self, run_dir: Path, name: str, record: dict[str, Any]) -> None:
        fifo = run_dir / f"{name}.standby.fifo"
        fifo.unlink(missing_ok=True)  # the one a previous standby was handed the role through
        os.mkfifo(fifo, 0o600)
        command = [record["command"][0], "-m", STANDBY_MODULE, str(run_dir / f"{name}.log")]
        with open(os.devnull, "wb") as devnull:
            process = self._supervise(
                run_dir, name, record, command, devnull, "--standby", str(fifo)
            )
        standby = {"pid": process.pid, "created": process.create_time()}
        (run_dir / f"{name}.standby").write_text(json.dumps(standby))

    def _hand_over(self, run_dir: Path, name: str) -> psutil.Process | None:
        """Hand the role to its standby, whose supervisor then supervises it; None if it has
        none (any more)."""
        standby = _recorded_process(run_dir / f"{name}.standby")
        (run_dir / f"{name}.standby").unlink(missing_ok=True)
        if standby is None:
            return None
        try:  # succeeds only while the standby's supervisor holds the FIFO open
            writer = os.open(run_dir / f"{name}.standby.fifo", os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: it is ending, or not that far yet: no longer anyone's
            _signal_group(standby.pid, signal.SIGTERM)
            return None
        try:
            os.write(writer, f"{run_dir / name}.log\n".encode())
        finally:
            os.close(writer)
        return standby

    def _stop_standbys(self, run_dir: Path, names: Sequence[str]) -> None:
        found = [_recorded_process(run_dir / f"{name}.standby") for name in names]
        _end_groups({standby.pid: [standby] for standby in found if standby}, STANDBY_STOP_SECS)
        for name in names:
            (run_dir / f"{name}.standby").unlink(missing_ok=True)
            (run_dir / f"{name}.standby.fifo").unlink(missing_ok=True)

    def apply(self, handle: JobHandle, command: Command) -> None:
        match command:
            case RestartRole(role=role):
                self._relaunch(handle, role)
            case RestartJob():
                self._stop_roles(handle, handle.roles)  # their standbys take over
                for role in handle.roles:
                    self._relaunch(handle, role)
            case StopRoles(roles=roles):
                self.stop(handle, roles)

    @contextmanager
    def supervision(self, handle: JobHandle) -> Iterator[SupervisionRecord]:
        """`supervision.json` in the run directory, held with `flock`: shared by every process
        on this machine, as the run directory itself is."""
        with record_in_file(Path(handle.job_id)) as record:
            yield record

    def _relaunch(self, handle: JobHandle, role: str) -> None:
        run_dir = Path(handle.job_id)
        if self._status(run_dir, role).state is RoleState.RUNNING:
            raise RuntimeError(f"{role} is still running; stop it before starting it again")
        with (run_dir / f"{role}.log").open("a") as log:
            log.write(f"\n{RESTART_MARKER.format(role=role)}\n")
        self._start(run_dir, role)

    # -- watching -------------------------------------------------------------------------
    def _process(self, run_dir: Path, name: str) -> psutil.Process | None:
        """The role's supervisor if it is still alive (guarding against reused process ids)."""
        return _recorded_process(run_dir / f"{name}.pid")

    def statuses(self, handle: JobHandle) -> dict[str, RoleStatus]:
        run_dir = Path(handle.job_id)
        return {role: self._status(run_dir, role) for role in handle.roles}

    def _status(self, run_dir: Path, role: str) -> RoleStatus:
        exit_file = run_dir / f"{role}.exit"
        if exit_file.exists():
            record = json.loads(exit_file.read_text())
            code = int(record["exit_code"])
            end = RoleEnd.from_record(code, str(record["reason"]))  # "exited", "stopped", ...
            ended = record.get("ended")
            return RoleStatus(
                name=role,
                state=RoleState.SUCCEEDED if code == 0 else RoleState.FAILED,
                exit_code=code,
                detail=end.detail,
                ending=end.ending if end.ending in (Ending.STOPPED, Ending.PREEMPTED) else None,
                ended_at=float(ended) if ended is not None else None,
            )
        if self._process(run_dir, role) is not None:
            return RoleStatus(name=role, state=RoleState.RUNNING)
        if not (run_dir / f"{role}.pid").exists():
            return RoleStatus(name=role, state=RoleState.PENDING)
        if exit_file.exists():  # it ended between the two checks
            return self._status(run_dir, role)
        return RoleStatus(
            name=role, state=RoleState.FAILED, detail="the role's supervisor was killed"
        )

    def wait(self, handle: JobHandle, roles: Sequence[str], timeout: float) -> None:
        """Return as soon as one of `roles` (as yet unfinished) ends, or after `timeout` seconds.

        Waits on a pidfd per live supervisor (Linux 5.3+), which works whether or not this
        process started them; elsewhere it sleeps for `timeout`.
        """
        run_dir = Path(handle.job_id)
        with ExitStack() as stack:
            poller = select.poll()
            for role in roles:
                if (run_dir / f"{role}.exit").exists():
                    return  # it ended since the caller looked
                process = self._process(run_dir, role)
                if process is None:
                    if (run_dir / f"{role}.pid").exists():
                        return  # its supervisor is gone: it ended or was killed
                    continue  # not started yet
                try:
                    pidfd = os.pidfd_open(process.pid)
                except ProcessLookupError:
                    return
                except (AttributeError, OSError):  # no pidfds here
                    time.sleep(timeout)
                    return
                stack.callback(os.close, pidfd)
                poller.register(pidfd, select.POLLIN)
            poller.poll(timeout * 1000)

    def read_log(self, handle: JobHandle, role: str, offset: int = 0) -> tuple[str, int]:
        path = Path(handle.job_id) / f"{role}.log"
        try:
            with path.open("rb") as log:
                log.seek(offset)
                data = log.read()
        except FileNotFoundError:
            return "", offset
        # Hand out whole lines only; a partial last line is read again next time.
        end = data.rfind(b"\n") + 1
        return data[:end].decode(errors="replace"), offset + end

    # -- stopping -------------------------------------------------------------------------
    def stop(self, handle: JobHandle, roles: Sequence[str] | None = None) -> None:
        names = list(roles) if roles is not None else list(handle.roles)
        self._stop_roles(handle, names)
        self._stop_standbys(Path(handle.job_id), names)

    def _stop_roles(self, handle: JobHandle, names: Sequence[str]) -> None:
        run_dir = Path(handle.job_id)
        groups: dict[int, list[psutil.Process]] = {}  # process group -> whom to wait for
        for name in names:
            supervisor = self._process(run_dir, name)
            if supervisor is not None:
                groups[supervisor.pid] = [supervisor]
            else:  # a supervisor that died on its own may have left its role running
                groups.update(self._orphans(run_dir, name, handle.launch_id))
        grace = max((_grace(run_dir, name) for name in names), default=STOP_GRACE_SECS)
        _end_groups(groups, grace)
        for name in names:  # a supervisor killed before it could write its exit record:
            exit_file = run_dir / f"{name}.exit"  # still a stop on request, past its grace
            if not exit_file.exists() and (run_dir / f"{name}.pid").exists():
                try:
                    exit_file.write_text(
                        json.dumps({"exit_code": 137, "reason": "stopped", "ended": time.time()})
                    )
                except OSError:  # a full disk: without a record the role reads as killed too
                    exit_file.unlink(missing_ok=True)

    def _orphans(self, run_dir: Path, name: str, launch_id: str) -> dict[int, list[psutil.Process]]:
        """The processes still in the group of a role whose supervisor is gone."""
        try:
            group = int(json.loads((run_dir / f"{name}.pid").read_text())["pid"])
        except FileNotFoundError:
            return {}
        found = []
        for process in psutil.process_iter():
            with suppress(psutil.Error, OSError):
                # The launch id guards against a group id reused by an unrelated process.
                if (
                    os.getpgid(process.pid) == group
                    and process.environ().get("TFDIST_LAUNCH_ID") == launch_id
                ):
                    found.append(process)
        return {group: found} if found else {}

    # -- finding, cleaning up, exporting --------------------------------------------------
    def handles(self, scope: str) -> list[JobHandle]:
        paths = sorted((self.run_root / scope).glob("*/handle.json"), key=os.path.getmtime)
        return [load_handle(path.parent) for path in paths]

    def cleanup(self, handle: JobHandle) -> None:
        """Stop the standbys left; the run directory keeps the roles' logs and exit codes."""
        self._stop_standbys(Path(handle.job_id), handle.roles)

    def export(
        self,
        handle: JobHandle,
        spec: JobSpec,
        checkpoint: str,
        out: str,
        env: Mapping[str, str],
        log: Callable[[str], None],
    ) -> None:
        """Run `python -m tfdist.runtime.export` here, with `env` on top of this process's
        environment."""
        from tfdist.runtime.export import export_command

        command = export_command(self.python, checkpoint, out)
        try:
            result = subprocess.run(
                command,
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=EXPORT_TIMEOUT_SECS,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            for output in (error.stdout, error.stderr):
                text = output.decode(errors="replace") if isinstance(output, bytes) else output
                for line in (text or "").splitlines():
                    log(line)
            raise RuntimeError(f"export did not end within {EXPORT_TIMEOUT_SECS} s") from None
        for line in (result.stdout + result.stderr).splitlines():
            log(line)
        if result.returncode != 0:
            raise RuntimeError(f"export failed with exit code {result.returncode}")

    def stop_export(self, handle: JobHandle, checkpoint: str) -> None:
        """Nothing: the export is a subprocess of its caller, stopped with its process group."""


def _recorded_process(path: Path) -> psutil.Process | None:
    """The process a record (`{"pid": ..., "created": ...}`) names, if it is still alive
    (guarding against reused process ids)."""
    try:
        record = json.loads(path.read_text())
        process = psutil.Process(record["pid"])
        if abs(process.create_time() - record["created"]) > 0.01:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            process.wait(timeout=0)  # our own child: reap it
            return None
        return process
    except (FileNotFoundError, psutil.NoSuchProcess, psutil.TimeoutExpired):
        return None


def _grace(run_dir: Path, name: str) -> float:
    """How long the role may take to end after SIGTERM, as its launch record says."""
    try:
        record = json.loads((run_dir / f"{name}.json").read_text())
    except (OSError, ValueError):
        return STOP_GRACE_SECS
    return float(record.get("grace_secs", STOP_GRACE_SECS))


def _program(command: Sequence[str], python: str) -> str:
    """The program a role runs: `python` means the launcher's interpreter."""
    return python if command[0] == "python" else command[0]


def _port_free(address: str) -> bool:
    """Whether a server could listen on the address's port (TensorFlow binds every interface)."""
    port = int(address.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def _end_groups(groups: dict[int, list[psutil.Process]], grace_secs: float) -> None:
    """SIGTERM each process group, then SIGKILL those whose members (the processes to wait
    for) have not all ended within `grace_secs`."""
    for group in groups:
        _signal_group(group, signal.SIGTERM)
    waited = [process for members in groups.values() for process in members]
    _, alive = psutil.wait_procs(waited, timeout=grace_secs)
    for group, members in groups.items():
        if any(process in alive for process in members):
            _signal_group(group, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)


def _signal_group(pid: int, signum: int) -> None:
    """Signal the supervisor's process group (it leads its own session) and thus the role."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def load_handle(run_dir: str | Path) -> JobHandle:
    return JobHandle.model_validate_json((Path(run_dir) / "handle.json").read_text())
