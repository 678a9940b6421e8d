"""The config and the verdict, free of host calls so `python -m unittest`
checks them."""

from dataclasses import dataclass


@dataclass
class Config:
    """The job's `[job.config]`; opsd_sdk.config fills it and names a
    missing or unknown key."""

    dir: str
    max_bytes: int


def verdict(directory: str, files: int, total: int, max_bytes: int):
    """(over budget?, one line for the operator)."""
    line = f"{directory} holds {files} files, {total} bytes (budget {max_bytes})"
    if total > max_bytes:
        return True, f"{line}: over budget"
    return False, line
