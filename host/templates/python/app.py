"""{{name}}: an opsd plugin. It reports how much a directory holds and warns
when that passes a budget; replace `run` with your chore.

Test:    opsd plugin test
Build:   opsd plugin build   (see README.md for the steps it runs)
Install: cp {{name}}.wasm /var/lib/opsd/plugins/
"""

import json
import os

import wit_world
from wit_world.imports.types import Capabilities, Context, Description, FsRequest, Outcome

import opsd_sdk
from logic import Config, verdict

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
        cfg = opsd_sdk.config(ctx, Config)
        try:
            sizes = [e.stat().st_size for e in os.scandir(cfg.dir) if e.is_file()]
        except OSError as e:
            raise opsd_sdk.error(f"{cfg.dir}: {e.strerror or e} (is it in the job's fs grant?)", "io")
        opsd_sdk.info(f"measured {cfg.dir}")
        over, summary = verdict(cfg.dir, len(sizes), sum(sizes), cfg.max_bytes)
        make = opsd_sdk.warning if over else opsd_sdk.ok
        return make(summary, metrics=[opsd_sdk.metric("bytes", sum(sizes), "bytes")])
