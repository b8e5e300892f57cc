"""`python -m tfdist.runtime.standby LOG`: a role process started before it is needed.

The local launcher keeps one per role (see `tfdist.launch.local`), started with the role's own
environment, so that a restarted role does not wait for a new interpreter and `import
tensorflow` (seconds, tens of seconds on a busy machine) before its server is back. Once the
role has written to its log `LOG` (it is past its own start, so the two do not compete for the
CPU at launch) or the role is handed over, whichever comes first, it imports TensorFlow, the
runtime and the trainer module. Then it waits for one line on stdin, the path of the role's
log: from then on it writes there and is the role, as `python -m tfdist.runtime` would be. End
of stdin before that line: it ends, unused.
"""

from __future__ import annotations

import importlib
import os
import select
import sys
import time
import traceback
from contextlib import suppress

WAIT_SECS = 0.5  # how often it looks at the role's log before it prepares


def wait_for_role(log: str) -> None:
    """Until the role has written to `log` or something comes on stdin."""
    while not _wrote(log):
        readable, _, _ = select.select([sys.stdin], [], [], WAIT_SECS)
        if readable:
            return


def _wrote(log: str) -> bool:
    try:
        return os.path.getsize(log) > 0
    except OSError:
        return False


def preload() -> None:
    """What every role imports before it can serve: TensorFlow, the runtime, the trainer."""
    from tfdist import tflog
    from tfdist.runtime.contract import load_trainer
    from tfdist.spec import JobSpec

    tflog.quiet_import()
    for module in ("evaluate", "servers", "train", "__main__"):
        importlib.import_module(f"tfdist.runtime.{module}")
    # An error here is the role's to report once it runs: it imports the trainer again.
    with suppress(Exception):
        load_trainer(JobSpec.model_validate_json(os.environ["TFDIST_JOB"]).trainer.entrypoint or "")


def take_over(log_path: str) -> None:
    """Write to the role's log from now on (stdout and stderr), read nothing."""
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    for target, source in ((0, null), (1, log), (2, log)):
        os.dup2(source, target)
    os.close(log)
    os.close(null)


def main() -> None:
    wait_for_role(sys.argv[1])
    try:
        preload()
        failed = None
    except BaseException:  # shown in the role's log, once this process is the role
        failed = traceback.format_exc()
    line = sys.stdin.readline().strip()
    if not line:
        os._exit(0)  # not needed after all
    take_over(line)
    if failed is not None:
        print(failed, file=sys.stderr, flush=True)
        os._exit(1)
    from tfdist.runtime import __main__ as runtime
    from tfdist.runtime import notice

    notice.STARTED_AT = time.time()  # the role starts now, not when this process did
    runtime.run()


if __name__ == "__main__":
    main()
