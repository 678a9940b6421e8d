//! Host-side bindings of the plugin contract in `wit/plugin.wit`.
//!
//! `process.run` is async (it waits on a child process); every other
//! import is a quick synchronous call. Exports are called async so the
//! epoch deadline can yield to tokio and a run can be timed out.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: {
        "opsd:plugin/process.run": async,
    },
    exports: { default: async },
});
