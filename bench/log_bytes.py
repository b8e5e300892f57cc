"""Item 10: log bytes a role's watch reads per poll, as its log grows from 1 MB to 50 MB.

A chief on the JobSet backend logs steadily (100-byte lines, 5 KB per 2 s poll, in five
writes); between samples its log grows to the next size (100 lines every 2 s) while nobody
reads it, then the watch catches up once before the measured polls. Side by side
in the same run, on the same pod:

- the JobSet watch (`JobSetLauncher.read_log`): each poll asks only for the lines since the
  last one (`sinceTime` + `timestamps=true`, de-duplicated at the boundary);
- the baseline: the whole-log read every poll, from which the new lines were cut by byte offset
  (what each poll read before).

No cluster can run here: the bytes are those the shipped fake API sends for each request
(`FakeKubeApi.log_bytes`), which filters by `sinceTime` and stamps lines as the API does. The
ratio is bytes per poll at 50 MB over bytes per poll at 1 MB: 1.0 is flat.

    python -m bench.log_bytes [--polls 5]
"""

from __future__ import annotations

import argparse

from bench.common import Row, Stats, print_table

POLL_SECS = 2.0
LINE = "step {:09d} loss 0.1234 accuracy 0.9876 steps/s 41.2 " + "x" * 43 + "\n"  # 100 bytes
PER_POLL = 50  # lines a poll finds new: 5 KB
SIZES_MB = (1, 5, 10, 25, 50)
FLAT = 1.5  # at most this much more per poll at 50 MB than at 1 MB


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def measure(polls: int = 5) -> list[Row]:
    from tfdist.kubernetes.jobset_launcher import JobSetLauncher, Snapshots
    from tfdist.kubernetes.manifests import Target
    from tfdist.spec import parse_spec
    from tfdist.testing.jobset_cluster import FakeJobSetCluster

    spec = parse_spec(
        {
            "name": "chatty",
            "trainer": {"entrypoint": "tfdist.examples.digits"},
            "cluster": {"chief": 1},
            "train_spec": {"max_steps": 10},
            "model_dir": "gs://bucket/models/chatty",
        }
    )
    clock = Clock()
    api = FakeJobSetCluster(clock=clock)
    backend = JobSetLauncher(
        api, Target(namespace="ml"), snapshots=Snapshots(0.0, clock=clock), clock=clock
    )
    handle = backend.launch(backend.plan(spec, "bench/run/train_and_evaluate"))
    pod = api.current_pod(handle.job_id.split("/")[1], "chief", 0)
    api.start(pod)
    step = 0

    def write(lines: int) -> None:
        nonlocal step
        api.write_log(pod, "".join(LINE.format(step + i) for i in range(lines)))
        step += lines

    cursor, offset, size = 0, 0, 0
    found: dict[int, dict[str, list[float]]] = {}
    for mb in SIZES_MB:
        while size < mb * 1_000_000:  # grow the log: 100 lines every 2 s, unwatched
            write(100)
            size += 100 * len(LINE.format(0))
            clock.now += POLL_SECS
        _, cursor = backend.read_log(handle, "chief-0", cursor)  # the watch catches up
        offset = len(api.read_pod_log("ml", pod).encode())
        found[mb] = {"incremental": [], "whole": []}
        for _ in range(polls):
            for _ in range(5):  # five writes of ten lines over the poll interval
                write(PER_POLL // 5)
                clock.now += POLL_SECS / 5
            before = api.log_bytes
            text, cursor = backend.read_log(handle, "chief-0", cursor)
            found[mb]["incremental"].append(api.log_bytes - before)
            before = api.log_bytes
            whole = api.read_pod_log("ml", pod)
            found[mb]["whole"].append(api.log_bytes - before)
            new = whole.encode()[offset:].decode()
            offset += len(new.encode())
            assert text == new, "the two reads must pass on the same lines"
            size += PER_POLL * len(LINE.format(0))
    return rows(found)


def rows(found: dict[int, dict[str, list[float]]]) -> list[Row]:
    small, big = found[SIZES_MB[0]], found[SIZES_MB[-1]]
    mean = {
        mb: {way: sum(v) / len(v) / 1000 for way, v in ways.items()} for mb, ways in found.items()
    }
    shown = "; ".join(
        f"{mb} MB: {m['incremental']:.1f} KB vs {m['whole']:.0f} KB" for mb, m in mean.items()
    )
    flat = [b / s for b, s in zip(big["incremental"], small["incremental"], strict=True)]
    grows = [b / s for b, s in zip(big["whole"], small["whole"], strict=True)]
    saved = [w / i for w, i in zip(big["whole"], big["incremental"], strict=True)]
    return [
        Row(
            "10",
            f"log bytes per poll, JobSet watch: {SIZES_MB[-1]} MB log / {SIZES_MB[0]} MB log",
            Stats.of(flat),
            f"<= {FLAT:g}",
            max(flat) <= FLAT,
            f"per poll, new lines since the last poll vs the whole log: {shown}",
        ),
        Row(
            "10",
            f"log bytes per poll, whole-log read: {SIZES_MB[-1]} MB log / {SIZES_MB[0]} MB log",
            Stats.of(grows),
            "report",
            None,
            "the baseline: every poll reads the whole log",
        ),
        Row(
            "10",
            f"log bytes per poll at {SIZES_MB[-1]} MB: whole-log read / JobSet watch",
            Stats.of(saved),
            "report",
            None,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.log_bytes", description=__doc__)
    parser.add_argument("--polls", type=int, default=5)
    args = parser.parse_args(argv)
    found = measure(args.polls)
    print_table(found)
    return 0 if all(row.passed is not False for row in found) else 1


if __name__ == "__main__":
    raise SystemExit(main())
