"""What http-check decides, without any WebAssembly: the config and the
verdict on a response. Tested with `python -m unittest` in this directory."""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union
from urllib.parse import urlsplit

from opsd_sdk import ConfigError, load_config


@dataclass
class Settings:
    """`[job.config]` as written; opsd_sdk.load_config names a missing,
    unknown or mistyped key."""

    url: str
    expect_status: Union[int, List[int]] = 200
    expect_body: Optional[str] = None
    warn_ms: int = 500
    fail_ms: int = 2000
    timeout_ms: int = 5000


@dataclass
class Config:
    url: str
    scheme: str
    authority: str
    path: str
    expect_status: List[int] = field(default_factory=lambda: [200])
    expect_body: Optional[str] = None
    warn_ms: int = 500
    fail_ms: int = 2000
    timeout_ms: int = 5000


def _ms(raw: Settings, key: str) -> int:
    value = getattr(raw, key)
    if value <= 0:
        raise ConfigError(f"`{key}` must be a positive number of milliseconds, not {value!r}")
    return value


def parse_config(text: str) -> Config:
    raw = load_config(text, Settings)
    url = raw.url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"`url` {url!r} must be an absolute http:// or https:// URL")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    expect = raw.expect_status
    if isinstance(expect, int):
        expect = [expect]
    if not expect or not all(isinstance(s, int) and 100 <= s <= 599 for s in expect):
        raise ConfigError(f"`expect_status` must be a status code or a list of them, not {expect!r}")
    cfg = Config(
        url=url,
        scheme=parts.scheme,
        authority=parts.netloc,
        path=path,
        expect_status=expect,
        expect_body=raw.expect_body,
        warn_ms=_ms(raw, "warn_ms"),
        fail_ms=_ms(raw, "fail_ms"),
        timeout_ms=_ms(raw, "timeout_ms"),
    )
    if cfg.warn_ms > cfg.fail_ms:
        raise ConfigError(f"`warn_ms` ({cfg.warn_ms}) must not be above `fail_ms` ({cfg.fail_ms})")
    return cfg


def verdict(cfg: Config, status: int, latency_ms: float, body: bytes) -> Tuple[str, str]:
    """("ok" | "warning" | "failed", one line for the operator)."""
    said = f"{cfg.url} answered {status} in {latency_ms:.0f} ms"
    if status not in cfg.expect_status:
        expected = " or ".join(str(s) for s in cfg.expect_status)
        return "failed", f"{said}; expected {expected}"
    if cfg.expect_body is not None and cfg.expect_body.encode() not in body:
        return "failed", f"{said}, but the body does not contain {cfg.expect_body!r}"
    if latency_ms > cfg.fail_ms:
        return "failed", f"{said}; slower than fail_ms ({cfg.fail_ms} ms)"
    if latency_ms > cfg.warn_ms:
        return "warning", f"{said}; slower than warn_ms ({cfg.warn_ms} ms)"
    return "ok", said
