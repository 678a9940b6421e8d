//! A plugin built against the frozen 0.1.0 contract in `wit/`, not the
//! current one: it describes itself, logs, and reads history, so a host
//! that evolves the contract is tested against what is already deployed.

#[allow(clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
    });
}

use bindings::{Context, Description, Outcome, PluginError};
use bindings::{Guest, export, opsd};

use opsd::plugin::types::{Capabilities, Status};

struct Old;

impl Guest for Old {
    fn describe() -> Description {
        Description {
            name: "contract-0-1-0".into(),
            version: "0.1.0".into(),
            description: "built against opsd:plugin@0.1.0".into(),
            capabilities: Capabilities {
                fs: Vec::new(),
                exec: Vec::new(),
                net: false,
            },
            config_schema: r#"{"type":"object"}"#.into(),
            suggested_schedule: None,
        }
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        opsd::plugin::log::log(opsd::plugin::log::Level::Info, "old plugin, new host");
        let runs = opsd::plugin::history::runs(Some(&ctx.job), None, 10);
        Ok(Outcome {
            status: Status::Ok,
            summary: format!("history has {} runs of this job", runs.len()),
            details: String::new(),
            metrics: Vec::new(),
            artifacts: Vec::new(),
        })
    }
}

export!(Old with_types_in bindings);
