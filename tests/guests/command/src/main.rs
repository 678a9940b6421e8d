//! A component of another world (`wasi:cli/command`): valid wasm, valid
//! component, not an opsd plugin.

fn main() {
    println!("hello from a command, not a plugin");
}
