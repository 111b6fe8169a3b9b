"""The resumable results file of a protocol: one JSON line per finished run.

A killed program loses at most the run it was in: `Ledger.run` returns the
recorded rows of a run that finished, and runs (then appends) one that did not.
The first line is the setting's header; a file of another setting is refused.
"""

from __future__ import annotations

import json
import os


class Ledger:
    """The resumable JSONL results file: one line per finished run."""

    def __init__(self, path, header):
        self.path, self.records = path, {}
        if path and os.path.exists(path):
            with open(path) as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # blank, or the half-written line of a killed run
                    if record.get("kind") == "header" and record["header"] != header:
                        raise ValueError(
                            f"`output` {path!r} holds another setting's results "
                            f"({record['header']}); expected {header}. Use a new file."
                        )
                    self.records[self._key(record)] = record
        elif path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._append({"kind": "header", "header": header})

    @staticmethod
    def _key(record):
        return tuple(record.get(k) for k in ("kind", "fold", "method", "lr", "seed"))

    def _append(self, record):
        if self.path:
            with open(self.path, "a") as handle:  # "\n" first: after a torn line
                handle.write("\n" + json.dumps(record) + "\n")

    def run(self, key, fn, *args):
        """The rows recorded under `key`, running `fn(*args)` first if none are."""
        kind, fold, method, lr, seed = key
        if key not in self.records:
            record = dict(kind=kind, fold=fold, method=method, lr=lr, seed=seed)
            record["rows"] = json.loads(json.dumps(fn(*args), default=float))
            self.records[key] = record
            self._append(record)
        return self.records[key]["rows"]
