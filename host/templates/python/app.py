"""{{name}}: an opsd plugin. It reports how much a directory holds and warns
when that passes a budget; replace `run` with your chore.

Test:    opsd plugin test
Build:   opsd plugin build   (see README.md for the steps it runs)
Install: cp {{name}}.wasm /var/lib/opsd/plugins/
"""

import json
import os

import wit_world
from componentize_py_types import Err
from wit_world.imports import log
from wit_world.imports.types import (
    Capabilities,
    Context,
    Description,
    FsRequest,
    Metric,
    Outcome,
    PluginError,
    Status,
)

from logic import verdict

SCHEMA = json.dumps({
    "type": "object",
    "required": ["dir", "max_bytes"],
    "additionalProperties": False,
    "properties": {"dir": {"type": "string"}, "max_bytes": {"type": "integer"}},
})


class WitWorld(wit_world.WitWorld):
    def describe(self) -> Description:
        return Description(
            name="{{name}}",
            version="0.1.0",
            description="Reports a directory's size against a budget",
            capabilities=Capabilities(
                fs=[FsRequest(guest="/data", write=False, reason="the directory to measure")],
                exec=[],
                net=False,
            ),
            config_schema=SCHEMA,
            suggested_schedule="0 * * * *",
        )

    def run(self, ctx: Context) -> Outcome:
        config = json.loads(ctx.config)
        directory, budget = config.get("dir"), config.get("max_bytes")
        if not isinstance(directory, str) or not isinstance(budget, int):
            raise Err(PluginError(
                message=f"job `{ctx.job}`: set `dir` (a guest path) and `max_bytes` (a number)",
                kind="bad-config",
            ))
        try:
            sizes = [e.stat().st_size for e in os.scandir(directory) if e.is_file()]
        except OSError as e:
            raise Err(PluginError(message=f"{directory}: {e} (is it in the job's fs grant?)", kind="io"))
        log.log(log.Level.INFO, f"measured {directory}")
        warn, summary = verdict(directory, len(sizes), sum(sizes), budget)
        return Outcome(
            status=Status.WARNING if warn else Status.OK,
            summary=summary,
            details="",
            metrics=[Metric(name="bytes", value=float(sum(sizes)), unit="bytes")],
            artifacts=[],
        )
