//! Host-side bindings of the plugin contract in `wit/plugin.wit`.
//!
//! `process.run` is async (it waits on a child process), and so is
//! `files.sha256` (it reads a whole file, off the async workers); every
//! other import is a quick synchronous call. Exports are called async so the
//! epoch deadline can yield to tokio and a run can be timed out.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: {
        "opsd:plugin/process.run": async,
        "opsd:plugin/files.sha256": async,
    },
    exports: { default: async },
});
