"""http-check: GETs a health endpoint and checks its status, body and
latency. A Python opsd plugin built with componentize-py; the request goes
through wasi:http, so the job's `net` grant decides where it may go."""

import time
from typing import Tuple

import wit_world
from componentize_py_types import Err
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as http
from wit_world.imports.opsd_plugin_types import Capabilities, Context, Description, Outcome

import opsd_sdk
from checks import Config, ConfigError, parse_config, verdict

SCHEMA = """{
  "type": "object",
  "required": ["url"],
  "additionalProperties": false,
  "properties": {
    "url": {"type": "string", "description": "the endpoint, such as http://127.0.0.1:8080/health"},
    "expect_status": {"description": "status code(s) that count as up", "default": [200]},
    "expect_body": {"type": "string", "description": "text the body must contain"},
    "warn_ms": {"type": "integer", "default": 500},
    "fail_ms": {"type": "integer", "default": 2000},
    "timeout_ms": {"type": "integer", "default": 5000}
  }
}"""

MAX_BODY = 1 << 20
OUTCOME = {"ok": opsd_sdk.ok, "warning": opsd_sdk.warning, "failed": opsd_sdk.failed}


class Unreachable(Exception):
    """The request got no response: refused, timed out, denied."""


def _error_name(code) -> str:
    # ErrorCode_ConnectionRefused -> connection refused
    name = type(code).__name__.removeprefix("ErrorCode_")
    words = "".join(" " + c.lower() if c.isupper() else c for c in name).strip()
    value = getattr(code, "value", None)
    return f"{words} ({value})" if value is not None else words


def fetch(cfg: Config) -> Tuple[int, float, bytes]:
    """(status, milliseconds to the response head, body up to 1 MiB)."""
    headers = http.Fields.from_list([("user-agent", b"opsd-http-check/0.1")])
    request = http.OutgoingRequest(headers)
    request.set_method(http.Method_Get())
    request.set_scheme(http.Scheme_Https() if cfg.scheme == "https" else http.Scheme_Http())
    request.set_authority(cfg.authority)
    request.set_path_with_query(cfg.path)
    options = http.RequestOptions()
    nanos = cfg.timeout_ms * 1_000_000
    options.set_connect_timeout(nanos)
    options.set_first_byte_timeout(nanos)
    options.set_between_bytes_timeout(nanos)
    started = time.monotonic()
    try:
        future = outgoing_handler.handle(request, options)
    except Err as e:
        raise Unreachable(_error_name(e.value))
    with future:
        with future.subscribe() as ready:
            ready.block()
        answer = future.get()
    latency_ms = (time.monotonic() - started) * 1000
    if answer is None or isinstance(answer, Err) or isinstance(answer.value, Err):
        inner = answer.value.value if answer is not None and isinstance(answer.value, Err) else None
        raise Unreachable(_error_name(inner) if inner is not None else "no response")
    with answer.value.value as response:
        status = response.status()
        body = b""
        with response.consume() as incoming:
            with incoming.stream() as stream:
                while len(body) < MAX_BODY:
                    try:
                        body += stream.blocking_read(MAX_BODY - len(body))
                    except Err as e:
                        if isinstance(e.value, streams.StreamError_Closed):
                            break
                        raise Unreachable(f"reading the body: {e.value}")
    return status, latency_ms, body


class WitWorld(wit_world.WitWorld):
    def describe(self) -> Description:
        return Description(
            name="py-http-check",
            version="0.1.0",
            description="Checks an HTTP health endpoint's status, body and latency (Python example)",
            capabilities=Capabilities(fs=[], exec=[], net=True),
            config_schema=SCHEMA,
            suggested_schedule="*/5 * * * *",
        )

    def run(self, ctx: Context) -> Outcome:
        try:
            cfg = parse_config(ctx.config)
        except (ConfigError, ValueError) as e:
            raise opsd_sdk.bad_config(ctx, str(e))
        if ctx.dry_run:
            return opsd_sdk.ok(f"would GET {cfg.url}")
        opsd_sdk.info(f"GET {cfg.url}")
        try:
            status, latency_ms, body = fetch(cfg)
        except Unreachable as e:
            return opsd_sdk.failed(
                f"{cfg.url} did not answer: {e}",
                details="no response; if the reason is `http request denied`, add the URL's origin to the job's `net` grant",
                metrics=[opsd_sdk.metric("up", 0)],
            )
        outcome, line = verdict(cfg, status, latency_ms, body)
        opsd_sdk.info(line)
        return OUTCOME[outcome](
            line,
            details=body[:200].decode("utf-8", "replace"),
            metrics=[
                opsd_sdk.metric("up", 1 if outcome != "failed" else 0),
                opsd_sdk.metric("status_code", status),
                opsd_sdk.metric("latency_ms", round(latency_ms, 1), "ms"),
                opsd_sdk.metric("body_bytes", len(body), "bytes"),
            ],
        )
