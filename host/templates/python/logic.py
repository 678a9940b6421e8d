"""The verdict, free of host calls so `python -m unittest` checks it."""


def verdict(directory: str, files: int, total: int, max_bytes: int):
    """(over budget?, one line for the operator)."""
    line = f"{directory} holds {files} files, {total} bytes (budget {max_bytes})"
    if total > max_bytes:
        return True, f"{line}: over budget"
    return False, line
