"""The launch's wait in a queue (Kueue), kept in its model directory for the Training view.

The backend reports the wait with every role's status (`RoleStatus.admission`); one watch per
launch writes it to `model_dir/tfdist/admission/<launch_id>.json` when the queue's answer
changes (its place, its reason, the admission), so a queued launch costs a write now and then,
not one per poll.
"""

from __future__ import annotations

from tfdist.records import Admission, admission_name, read_admission


class QueueNotes:
    """What one watch has written; `model_dir` None: this watch writes nothing."""

    def __init__(self, model_dir: str | None):
        self.model_dir = model_dir
        self.noted: Admission | None = None
        self.read = False

    def note(self, launch_id: str, seen: Admission | None) -> str | None:
        """Write `seen`, merged with what was written before, if it says something new. A
        store that cannot be written is not fatal: the error is returned, once, and the watch
        goes on without writing."""
        if seen is None or not self.model_dir:
            return None
        from tfdist.storage import storage_for

        try:
            storage = storage_for(self.model_dir)
            if not self.read:  # a watch that took over from another: merge with its record
                self.noted, self.read = read_admission(storage, self.model_dir, launch_id), True
            latest = self.noted.then(seen) if self.noted else seen
            if latest != self.noted:
                storage.write_text(
                    admission_name(self.model_dir, launch_id), latest.model_dump_json()
                )
                self.noted = latest
        except Exception as error:
            where, self.model_dir = self.model_dir, None
            return f"cannot keep the queue's answer in {where}: {type(error).__name__}: {error}"
        return None
