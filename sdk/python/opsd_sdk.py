"""opsd_sdk: the Python side of the opsd plugin contract (opsd:plugin@0.1.3),
over the bindings componentize-py generates (`wit_world`).

One file, copied into each project by `opsd plugin new --lang python`; its
source is sdk/python/opsd_sdk.py in opsd's repository. What it gives:

- `load_config(text, cls)` / `config(ctx, cls)`: the job's `[job.config]`
  JSON into a dataclass, naming a missing or unknown key;
- `ok`, `warning`, `failed`, `metric` and `Report` (findings, the worst
  wins) for outcomes; `error` and `bad_config` for plugin-errors to raise;
- `trace` ... `error_log` and `progress` for the run's log;
- `run` for a program the job's `exec` grant names, raising `ProcessError`
  with its stderr when it fails;
- `stat`, `set_mode`, `set_owner`, `sync_dir`, `sha256`, `read_text`, `write_text`
  over granted paths, raising `FilesError` with the host's words.

The config part imports nothing from WebAssembly, so `python -m unittest`
tests code that uses it on any Python.
"""

import dataclasses
import json
import os
import typing

__all__ = [
    "ConfigError", "load_config", "config", "bad_config", "error",
    "ok", "warning", "failed", "metric", "Report",
    "trace", "debug", "info", "warn", "error_log", "progress",
    "ProcessError", "run",
    "FilesError", "stat", "set_mode", "set_owner", "sync_dir", "sha256", "read_text", "write_text",
]


# The bindings, resolved when the module is imported: componentize-py
# imports it while building the component, so a module that is missing
# is looked for on the build machine, never at run time inside the
# sandbox (where looking would touch paths the job does not grant).
# componentize-py names the `types` interface `opsd_plugin_types` when
# the world also imports a WASI `types` (wasi:http's). In plain Python
# (unit tests) there are no bindings, and only the config part works.
try:
    from componentize_py_types import Err
    from wit_world.imports import files as _files_api
    from wit_world.imports import log as _log_api
    from wit_world.imports import process as _process_api

    try:
        from wit_world.imports import types as _types_api
    except ImportError:
        from wit_world.imports import opsd_plugin_types as _types_api
except ImportError:
    Err = None
    _files_api = _log_api = _process_api = _types_api = None


def _need(api):
    if api is None:
        raise RuntimeError("opsd_sdk: this call needs the component's bindings (wit_world); it runs inside opsd")
    return api


class ConfigError(ValueError):
    """The job's `[job.config]` is wrong; the message says how to fix it."""


def _type_ok(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, typing.List):
        return isinstance(value, list) and all(_type_ok(v, (typing.get_args(hint) or (object,))[0]) for v in value)
    if origin in (dict, typing.Dict):
        return isinstance(value, dict)
    return True  # Anything richer is the plugin's to check.


def load_config(text: str, cls):
    """`text` (JSON of an object) as dataclass `cls`: a field without a
    default is required, a key that is no field is refused, and fields
    typed str, int, float, bool, Optional[...] or List[...] are checked.
    Raises ConfigError naming the key."""
    try:
        raw = json.loads(text or "{}")
    except ValueError as e:
        raise ConfigError(f"the config is not JSON: {e}")
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a table of keys")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key `{unknown[0]}`; known keys: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    for name, f in fields.items():
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"`{name}` is required")
            continue
        if not _type_ok(raw[name], hints.get(name, object)):
            want = getattr(hints[name], "__name__", str(hints[name]).replace("typing.", ""))
            raise ConfigError(f"`{name}` must be {want}, not {raw[name]!r}")
    return cls(**raw)


def error(message: str, kind: str):
    """A plugin-error to raise from `run`: `raise opsd_sdk.error(...)`."""
    return _need(Err)(_need(_types_api).PluginError(message=message, kind=kind))


def bad_config(ctx, message: str):
    """A `bad-config` plugin-error naming the job, to raise."""
    return error(f"job `{ctx.job}`: {message}", "bad-config")


def config(ctx, cls):
    """The run's config as `cls` (see load_config); raises a bad-config
    plugin-error naming the job and the key."""
    try:
        return load_config(ctx.config, cls)
    except ConfigError as e:
        raise bad_config(ctx, str(e))


def metric(name: str, value: float, unit: typing.Optional[str] = None):
    """A metric record; `value` may be an int."""
    return _need(_types_api).Metric(name=name, value=float(value), unit=unit)


def _outcome(status: str, summary: str, details: str, metrics, artifacts):
    t = _need(_types_api)
    return t.Outcome(
        status=getattr(t.Status, status.upper()),
        summary=summary,
        details=details,
        metrics=list(metrics),
        artifacts=list(artifacts),
    )


def ok(summary: str, details: str = "", metrics=(), artifacts=()):
    """An outcome with status ok."""
    return _outcome("ok", summary, details, metrics, artifacts)


def warning(summary: str, details: str = "", metrics=(), artifacts=()):
    """An outcome with status warning: done, but something needs a look."""
    return _outcome("warning", summary, details, metrics, artifacts)


def failed(summary: str, details: str = "", metrics=(), artifacts=()):
    """An outcome with status failed: the chore was not done."""
    return _outcome("failed", summary, details, metrics, artifacts)


class Report:
    """Findings gathered during a run; the worst decides the status and
    every finding is a line of the details."""

    _RANK = {"ok": 0, "warning": 1, "failed": 2}

    def __init__(self):
        self.status = "ok"
        self.lines: typing.List[str] = []
        self.metrics: list = []

    def note(self, line: str):
        self.lines.append(line)

    def warn(self, line: str):
        self._raise("warning")
        self.lines.append(f"warning: {line}")

    def fail(self, line: str):
        self._raise("failed")
        self.lines.append(f"failed: {line}")

    def metric(self, name: str, value: float, unit: typing.Optional[str] = None):
        self.metrics.append(metric(name, value, unit))

    def _raise(self, status: str):
        if self._RANK[status] > self._RANK[self.status]:
            self.status = status

    def outcome(self, summary: str, artifacts=()):
        return _outcome(self.status, summary, "\n".join(self.lines), self.metrics, artifacts)


def _log(level: str, message: str):
    log = _need(_log_api)
    log.log(getattr(log.Level, level), message)


def trace(message: str):
    _log("TRACE", message)


def debug(message: str):
    _log("DEBUG", message)


def info(message: str):
    _log("INFO", message)


def warn(message: str):
    _log("WARN", message)


def error_log(message: str):
    """An error line in the run's log (`error` makes a plugin-error)."""
    _log("ERROR", message)


def progress(done: int, total: typing.Optional[int], message: str):
    """Progress: `done` of `total` (None when unknown)."""
    _need(_log_api).progress(done, total, message)


class ProcessError(Exception):
    """A program could not run or failed; the message carries its stderr.
    `exit` is the process' exit record when it ran."""

    def __init__(self, message: str, exit=None):
        super().__init__(message)
        self.exit = exit


def run(program: str, *args: str, stdin=None, cwd=None, env=(), timeout_ms=None,
        stdout_file=None, check=True):
    """Runs `program` (named in the job's `exec` grant) with `args`, no
    shell. `stdin` is bytes, str or None; `stdout_file` a guest path in a
    read-write grant to write the output to instead of capturing it.
    Returns the exit record (`.code`, `.stdout`, `.stderr` bytes); raises
    ProcessError when it cannot start, times out or (with `check`) exits
    non-zero. A denied program fails the run whatever the plugin does."""
    p = _need(_process_api)
    if isinstance(stdin, str):
        stdin = stdin.encode()
    cmd = p.Command(
        program=program,
        args=list(args),
        cwd=cwd,
        env=list(env),
        stdin=p.Input_Bytes(stdin) if stdin is not None else p.Input_None_(),
        stdout=p.Output_File(stdout_file) if stdout_file else p.Output_Capture(),
        stderr=p.Output_Capture(),
        timeout_ms=timeout_ms,
    )
    try:
        exit = p.run(cmd)
    except Err as e:
        why = type(e.value).__name__.removeprefix("ExecError_").lower()
        raise ProcessError(f"{program}: {why}: {e.value.value}")
    if check and exit.code != 0:
        how = f"exit code {exit.code}" if exit.code is not None else f"signal {exit.signal}"
        stderr = exit.stderr.decode("utf-8", "replace").strip()
        raise ProcessError(f"{program} failed ({how}): {stderr or '(no stderr)'}", exit)
    return exit


class FilesError(OSError):
    """A files call the host refused or could not do, in its words."""


def _files(call, path, *args):
    try:
        return call(path, *args)
    except Err as e:
        raise FilesError(f"{path}: {e.value}")


def stat(path: str):
    """Mode, owner, size and the free space of the filesystem holding
    `path` (a file-info record)."""
    return _files(_need(_files_api).stat, path)


def set_mode(path: str, mode: int):
    """Permission bits, 0o777 at most (read-write grant)."""
    _files(_need(_files_api).set_mode, path, mode)


def set_owner(path: str, owner: typing.Optional[str] = None, group: typing.Optional[str] = None):
    """Owner and/or group by name or number (read-write grant)."""
    _files(_need(_files_api).set_owner, path, owner, group)


def sync_dir(path: str):
    """Makes a rename into directory `path` durable."""
    _files(_need(_files_api).sync_dir, path)


def sha256(path: str):
    """The sha256 (hex) and size of a regular file in a grant, hashed by
    the host at native speed (a file-digest record)."""
    return _files(_need(_files_api).sha256, path)


def read_text(path: str) -> str:
    """The UTF-8 text of a file in a grant; FilesError names the path."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise FilesError(f"{path}: {e.strerror or e} (is it in the job's fs grant?)")


def write_text(path: str, text: str, mode: typing.Optional[int] = None):
    """Replaces a file in a read-write grant with `text`: written beside
    it, synced, renamed over it, so a reader sees the old or the new file
    whole."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.opsd-tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise FilesError(f"{path}: {e.strerror or e} (is it in a read-write fs grant?)")
    if mode is not None:
        set_mode(path, mode)
    sync_dir(os.path.dirname(path) or ".")
