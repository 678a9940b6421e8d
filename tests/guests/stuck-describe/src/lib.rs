//! A plugin whose `describe()` spins forever. The daemon must give up on
//! it at load, refuse the file with the reason and keep working.

use opsd_sdk::{Context, Description, Outcome, Plugin, PluginError};

struct Stuck;

impl Plugin for Stuck {
    fn describe() -> Description {
        let mut x: u64 = 0;
        loop {
            x = x.wrapping_add(1);
            std::hint::black_box(x);
        }
    }

    fn run(_ctx: Context) -> Result<Outcome, PluginError> {
        Ok(Outcome::ok("never reached: describe() does not return"))
    }
}

opsd_sdk::export_plugin!(Stuck);
