"""The `tfdist` command: plan, run and check distributed train-and-evaluate jobs."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tfdist.locations import LocationError, is_gcs, require_shared_storage
from tfdist.spec import JobSpec, SpecError, format_errors, load_spec
from tfdist.tf_config import TFConfigError, parse_tf_config

if TYPE_CHECKING:
    from tfdist.backend import JobHandle
    from tfdist.kubernetes.manifests import Target
    from tfdist.launch.local import LocalLauncher

DEFAULT_RUN_ROOT = "var/runs"


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SpecError(f"--set {pair!r}: write it as field.path=value")
        changes[key] = yaml.safe_load(value)
    return changes


def _absolute(path: str | None) -> str | None:
    """Relative local paths are relative to where `tfdist` runs; roles run elsewhere."""
    if path is None or is_gcs(path):
        return path
    return os.path.abspath(path)


def _load(args: argparse.Namespace) -> JobSpec:
    try:
        spec = load_spec(args.spec)
    except OSError as error:
        raise SpecError(f"cannot read job spec {args.spec}: {error.strerror}") from None
    spec = spec.with_overrides(_overrides(args.set))  # validates every location first
    return spec.with_overrides(
        {"model_dir": _absolute(spec.model_dir), "data_dir": _absolute(spec.data_dir)}
    )


def cmd_plan(args: argparse.Namespace) -> int:
    spec = _load(args)
    if args.backend == "kubernetes":
        raise SpecError(
            "--backend kubernetes (a pod per role, restarted by Airflow) is no longer offered; "
            "use --backend jobset: the cluster's JobSet controller restarts roles itself. A "
            "cluster without JobSet installs it with `kubectl apply --server-side -f https://"
            "github.com/kubernetes-sigs/jobset/releases/download/v0.12.0/manifests.yaml`"
        )
    if args.backend == "jobset":
        return _plan_jobset_yaml(spec, args)
    from tfdist.launch.local import LocalLauncher
    from tfdist.plan import plan

    job = plan(spec, LocalLauncher(args.run_root, max_roles=args.max_local_roles).addresses(spec))
    for role in job.roles:
        print(f"{role.name}\t{json.dumps(role.tf_config, sort_keys=True)}")
    return 0


def _plan_jobset_yaml(spec: JobSpec, args: argparse.Namespace) -> int:
    """Print the JobSet a launch would create (and the Kueue LocalQueue it names); contact no
    cluster."""
    from pydantic import ValidationError

    from tfdist.kubernetes.manifests import Target, to_yaml
    from tfdist.kubernetes.placement import JobPlacement, load_placement

    require_shared_storage(spec, args.backend)
    placement = load_placement(args.placement) if args.placement else JobPlacement()
    try:
        target = Target(
            namespace=args.namespace,
            image=args.image,
            cluster_domain=args.cluster_domain,
            placement=placement,
        )
    except ValidationError as error:
        raise SpecError(
            format_errors(
                error,
                "invalid Kubernetes target",
                where=lambda loc: f"--{str(loc[0]).replace('_', '-')}",
            )
        ) from None
    print(to_yaml(_plan_jobset(spec, target, args)), end="")
    return 0


def _plan_jobset(spec: JobSpec, target: Target, args: argparse.Namespace) -> list[dict[str, Any]]:
    from pydantic import ValidationError

    from tfdist.kubernetes.jobset import (
        JobSetOptions,
        local_queue,
        plan_jobset,
    )
    from tfdist.kubernetes.kueue import Kueue

    provisioning = {}
    for pair in args.provisioning:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SpecError(f"--provisioning {pair!r}: write it as KEY=VALUE")
        provisioning[key] = value
    try:
        kueue = Kueue(
            queue_name=args.queue, priority_class=args.priority_class, provisioning=provisioning
        )
    except ValidationError as error:
        flags = {"queue_name": "queue", "priority_class": "priority-class"}
        problems = [
            f"  --{flags.get(str(item['loc'][0]), str(item['loc'][0]))}: "
            + str(item["msg"]).removeprefix("Value error, ")
            for item in error.errors()
        ]
        raise SpecError("invalid Kueue settings:\n" + "\n".join(problems)) from None
    try:
        docs = [plan_jobset(spec, target, JobSetOptions(kueue=kueue))]
    except ValueError as error:
        raise SpecError(str(error)) from None
    if args.queue:
        docs.append(local_queue(args.queue, target.namespace, args.cluster_queue))
    return docs


def _kubernetes_options(sub: argparse.ArgumentParser) -> None:
    from tfdist.kubernetes.manifests import DEFAULT_IMAGE

    sub.add_argument(
        "--backend",
        choices=("local", "kubernetes", "jobset"),
        default="local",
        help="jobset: print the JobSet (and the Kueue LocalQueue it names) as YAML instead; "
        "kubernetes: refused (no longer offered; use jobset)",
    )
    sub.add_argument("--namespace", default="default", help="jobset: the namespace")
    sub.add_argument("--image", default=DEFAULT_IMAGE, help="jobset: the trainer image")
    sub.add_argument(
        "--placement",
        metavar="FILE",
        help="jobset: YAML mapping role (and `default`) to node pool, GPUs, spot, ...",
    )
    sub.add_argument(
        "--cluster-domain",
        help="jobset: appended to the pods' DNS names (default: none, `<ns>.svc`)",
    )
    sub.add_argument("--queue", help="jobset: the Kueue LocalQueue that admits the gang")
    sub.add_argument(
        "--cluster-queue",
        default="cluster-queue",
        help="jobset: the ClusterQueue of the printed LocalQueue (default: cluster-queue)",
    )
    sub.add_argument("--priority-class", help="jobset: a Kueue WorkloadPriorityClass")
    sub.add_argument(
        "--provisioning",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="jobset: a provreq.kueue.x-k8s.io/* annotation for the ProvisioningRequest",
    )


def cmd_run(args: argparse.Namespace) -> int:
    from tfdist.backend import LaunchError
    from tfdist.fingerprint import FingerprintMismatch, claim_model_dir
    from tfdist.launch.foreground import run_in_foreground
    from tfdist.launch.local import LocalLauncher
    from tfdist.preflight import PreflightError, check_writable
    from tfdist.storage import storage_for

    spec = _load(args)
    launcher = LocalLauncher(args.run_root, bind_to_parent=True, max_roles=args.max_local_roles)
    try:  # every check before the first write: a refused run leaves nothing behind
        launcher.admit(spec)
        check_writable(spec.model_dir)
        claim_model_dir(storage_for(spec.model_dir), spec)
        job = launcher.plan(spec, scope="")
    except (PreflightError, FingerprintMismatch, LaunchError) as error:
        print(f"tfdist: {error}", file=sys.stderr)
        return 2
    try:
        policy = spec.restart_policy
        if args.restarts is not None:
            policy = policy.model_copy(update={"max_job_restarts": args.restarts})
        resumed = _unfinished_launch(launcher, spec.name) if args.resume else None
        if args.resume and resumed is None:
            print(f"tfdist: no unfinished launch of {spec.name} in {args.run_root}; launching")
        launched_at = time.time()
        outcome = run_in_foreground(
            job,
            launcher,
            write=lambda line: print(line, flush=True),
            policy=policy,
            resume=resumed,
        )
    except LaunchError as error:
        print(f"tfdist: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfdist: interrupted; every role was stopped", file=sys.stderr)
        return 130
    _report_goodput(spec, resumed.launch_id if resumed else job.launch_id, launched_at)
    if not outcome.succeeded:
        lines = [f"tfdist: job {spec.name} failed: {outcome.detail}"]
        if outcome.last_lines:
            lines.append(f"tfdist: the last lines of {outcome.failed_role}'s log:")
            lines += [f"  {line}" for line in outcome.last_lines]
        print("\n".join(lines), file=sys.stderr)
        return 1
    print(f"tfdist: job {spec.name} succeeded; model_dir {spec.model_dir}")
    return 0


def _report_goodput(spec: JobSpec, launch_id: str | None, launched_at: float) -> None:
    """The run's goodput, in a line and in `model_dir/tfdist/goodput.json`."""
    from tfdist.goodput import measure
    from tfdist.storage import storage_for

    try:
        found = measure(
            storage_for(spec.model_dir),
            spec.model_dir,
            launch_id or "",
            launched_at=launched_at,
            ended_at=time.time(),
        )
    except (OSError, ValueError) as error:  # a report is not worth the run's outcome
        print(f"tfdist: goodput not measured: {error}", file=sys.stderr)
        return
    if found is not None:
        print(f"tfdist: {found.summary()}", flush=True)


def _unfinished_launch(launcher: LocalLauncher, name: str) -> JobHandle | None:
    """The latest launch of job `name` under the run root whose outcome is not decided."""
    from tfdist.supervision import read_record

    for handle in reversed(launcher.handles("")):
        directory = Path(handle.job_id)
        if directory.name.startswith(f"{name}-"):
            record = read_record(directory)
            return handle if record is None or record.outcome is None else None
    return None


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def cmd_tf_config(args: argparse.Namespace) -> int:
    try:
        config = parse_tf_config(os.environ.get("TF_CONFIG"))
    except TFConfigError as error:
        print(f"invalid TF_CONFIG: {error}", file=sys.stderr)
        return 2
    print(json.dumps(config.model_dump(), sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfdist", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def with_spec(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("spec", help="job spec file (.yaml or .json)")
        sub.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help="override a spec field, e.g. --set train_spec.max_steps=100",
        )
        sub.add_argument(
            "--run-root",
            default=DEFAULT_RUN_ROOT,
            help="where run directories (role logs, exit codes) are created",
        )
        sub.add_argument(
            "--max-local-roles",
            type=_positive,
            metavar="N",
            help="run at most N roles on this machine (default: $TFDIST_MAX_LOCAL_ROLES, "
            "else 4 per CPU)",
        )
        return sub

    plan_command = with_spec("plan", "print each role's name and TF_CONFIG; launch nothing")
    plan_command.set_defaults(handler=cmd_plan)
    _kubernetes_options(plan_command)
    run_command = with_spec("run", "run the job on this machine, one process per role")
    run_command.set_defaults(handler=cmd_run)
    run_command.add_argument(
        "--restarts",
        type=_count,
        default=None,
        metavar="N",
        help="restart every role from the latest checkpoint at most N times when a chief, ps or "
        "all-reduce worker crashes (default: the spec's restart_policy.max_job_restarts, 2)",
    )
    run_command.add_argument(
        "--resume",
        action="store_true",
        help="take over the latest unfinished launch of this job under the run root (after "
        "tfdist run was killed): every role restarts from the latest checkpoint, with the "
        "restart counts that launch recorded; without one, launch anew",
    )
    commands.add_parser(
        "tf-config", help="validate TF_CONFIG from the environment and print it as JSON"
    ).set_defaults(handler=cmd_tf_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from tfdist.backend import LaunchRefused

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (SpecError, LocationError) as error:
        print(str(error), file=sys.stderr)
        return 2
    except LaunchRefused as error:
        print(f"tfdist: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
