"""Deploy of a many-file SavedModel on GCS: server-side parallel copies vs download-then-upload.

Run from the repository root: `python -m bench.deploy_copy [--files 200 --size-kb 100]`.
Starts fake-gcs-server (the test suite's emulator), uploads a SavedModel-like export, then
times, interleaved, `runs` of each:

- tfdist: `tfdist.deploy.deploy` (server-side rewrites, `COPY_THREADS` at a time);
- tfdist, 1 thread: the same with `copy_threads=1`, to separate parallelism from server-side;
- download+upload: what a naive operator does: download every file to a temporary directory,
  then upload each one, one at a time, `saved_model.pb` last.

On the emulator every byte still crosses loopback and its disk; on Cloud Storage a rewrite
within one location moves no data while a worker's download and upload cross its network, so
the real gap is larger than measured here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tfdist.deploy import COPY_THREADS, SAVED_MODEL_PB, deploy
from tfdist.gate import Blessing
from tfdist.storage import GcsStorage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from gcs_emulator import EMULATOR_ENV, running_emulator


def export_files(count: int, size: int) -> dict[str, bytes]:
    """`count` files of `size` bytes laid out like a SavedModel."""
    names = [SAVED_MODEL_PB, "fingerprint.pb", "variables/variables.index"]
    names += [f"variables/variables.data-{i:05d}-of-{count:05d}" for i in range(count - 3)]
    return {name: os.urandom(size) for name in names[:count]}


def upload_export(client: Any, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
    target = client.bucket(bucket)
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda item: target.blob(f"{prefix}/{item[0]}").upload_from_string(item[1]),
                files.items(),
            )
        )


def blessing(model_dir: str) -> Blessing:
    return Blessing(
        blessed=True,
        metrics={"accuracy": 0.95},
        global_step=400,
        checkpoint_path=f"{model_dir}/ckpt-400",
        model_dir=model_dir,
        thresholds={},
        baseline=None,
        decided_at=time.time(),
    )


def tfdist_deploy(
    storage: GcsStorage, export_dir: str, serving: str, threads: int
) -> Callable[[int], None]:
    def run(index: int) -> None:
        result = deploy(
            storage,
            export_dir=export_dir,
            serving_base=serving,
            model_name="digits",
            run_id=f"bench-{index}",
            blessing=blessing(export_dir),
            now=time.time(),
            copy_threads=threads,
        )
        assert result.deployment is not None, result.reason

    return run


def download_then_upload(
    client: Any, bucket: str, prefix: str, serving: str
) -> Callable[[int], None]:
    def run(index: int) -> None:
        source = client.bucket(bucket)
        target = f"{serving}/digits/{index}"
        with tempfile.TemporaryDirectory() as scratch:
            names = [
                blob.name.removeprefix(f"{prefix}/")
                for blob in client.list_blobs(bucket, prefix=f"{prefix}/")
            ]
            for name in names:
                local = Path(scratch, name)
                local.parent.mkdir(parents=True, exist_ok=True)
                source.blob(f"{prefix}/{name}").download_to_filename(local)
            for name in sorted(names, key=lambda name: name == SAVED_MODEL_PB):
                source.blob(f"{target}/{name}").upload_from_filename(Path(scratch, name))

    return run


def summary(label: str, times: list[float]) -> str:
    return (
        f"{label:<26} median {statistics.median(times):7.3f} s   "
        f"min {min(times):7.3f} s   max {max(times):7.3f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.deploy_copy", description=__doc__)
    parser.add_argument("--files", type=int, default=200, help="files in the export")
    parser.add_argument("--size-kb", type=int, default=100, help="size of each file")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each way")
    args = parser.parse_args(argv)

    with running_emulator() as emulator:
        os.environ[EMULATOR_ENV] = emulator.url
        bucket = emulator.new_bucket("tfdist-bench")
        storage = GcsStorage()
        prefix = "models/nightly/run-1/export/400"
        files = export_files(args.files, args.size_kb * 1024)
        upload_export(storage.client, bucket, prefix, files)
        export_dir = f"gs://{bucket}/{prefix}"
        ways = {
            f"tfdist ({COPY_THREADS} threads)": tfdist_deploy(
                storage, export_dir, f"gs://{bucket}/serving-parallel", COPY_THREADS
            ),
            "tfdist (1 thread)": tfdist_deploy(
                storage, export_dir, f"gs://{bucket}/serving-sequential", 1
            ),
            "download+upload": download_then_upload(
                storage.client, bucket, prefix, "serving-naive"
            ),
        }
        for run in ways.values():  # warm up connections and the emulator's caches
            run(0)
        times: dict[str, list[float]] = {label: [] for label in ways}
        for index in range(1, args.runs + 1):
            for label, run in ways.items():
                started = time.perf_counter()
                run(index)
                times[label].append(time.perf_counter() - started)
        os.environ.pop(EMULATOR_ENV, None)

    total_mb = args.files * args.size_kb / 1024
    print(
        f"deploy of {args.files} files x {args.size_kb} kB ({total_mb:.1f} MB) on fake-gcs-server, "
        f"{args.runs} runs each"
    )
    for label, measured in times.items():
        print(summary(label, measured))
    parallel, sequential, naive = (statistics.median(t) for t in times.values())
    print(f"download+upload / tfdist ({COPY_THREADS} threads): {naive / parallel:.1f}x")
    print(f"download+upload / tfdist (1 thread): {naive / sequential:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
