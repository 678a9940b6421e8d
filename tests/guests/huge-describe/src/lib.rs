//! A plugin whose `describe()` is far larger than any plugin needs: a
//! 64 MiB config schema and a description full of terminal escapes. The
//! daemon must refuse it at load, naming the part and the limit, and
//! print none of it raw.

use opsd_sdk::{Context, Description, Outcome, Plugin, PluginError};

struct Huge;

impl Plugin for Huge {
    fn describe() -> Description {
        Description::new(
            "test-huge-describe",
            "0.1.0",
            "\u{1b}]0;pwned\u{7}\u{1b}[2J\ndenied: forged host line",
        )
        .config_schema(&"x".repeat(64 << 20))
    }

    fn run(_ctx: Context) -> Result<Outcome, PluginError> {
        Ok(Outcome::ok("never reached: describe() is refused"))
    }
}

opsd_sdk::export_plugin!(Huge);
