"""`python -m tfdist.runtime.standby`: a role process started before it is needed.

The local launcher keeps one per role (see `tfdist.launch.local`), started with the role's own
environment, so that a restarted role does not wait for a new interpreter and `import
tensorflow` (seconds, tens of seconds on a busy machine) before its server is back. It imports
TensorFlow, the runtime and the trainer module, writes `ready` on stdout, then waits for one
line on stdin: the path of the role's log. From then on it writes to that log and is the role,
as `python -m tfdist.runtime` would be. End of stdin before that line: it ends, unused.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from contextlib import suppress

READY = "ready"


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
    preload()
    os.write(sys.stdout.fileno(), f"{READY}\n".encode())  # one write: one read gets it all
    line = sys.stdin.readline().strip()
    if not line:
        os._exit(0)  # not needed after all
    take_over(line)
    from tfdist.runtime import __main__ as runtime
    from tfdist.runtime import notice

    notice.STARTED_AT = time.time()  # the role starts now, not when this process did
    runtime.run()


if __name__ == "__main__":
    main()
