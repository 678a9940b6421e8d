//! What `systemctl show UNIT --property=...` says about a unit, read
//! from its `KEY=value` lines, and whether that means it is back.

/// The properties asked for.
pub const PROPERTIES: &str =
    "LoadState,ActiveState,SubState,Result,MainPID,ExecMainStartTimestampMonotonic";

/// A unit's state as systemctl shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    pub load: String,
    pub active: String,
    pub sub: String,
    pub result: String,
    pub main_pid: u32,
    /// When the main process started (monotonic µs): changes on a restart.
    pub started: u64,
}

/// Reads `KEY=value` lines; unknown keys and junk are ignored, values
/// are cut at 64 characters (it is text a program printed).
pub fn parse_show(text: &str) -> UnitState {
    let mut s = UnitState::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v: String = v.trim().chars().take(64).collect();
        match k.trim() {
            "LoadState" => s.load = v,
            "ActiveState" => s.active = v,
            "SubState" => s.sub = v,
            "Result" => s.result = v,
            "MainPID" => s.main_pid = v.parse().unwrap_or(0),
            "ExecMainStartTimestampMonotonic" => s.started = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    s
}

/// Where a unit stands after the action.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Back,
    /// Not yet: why, for the last word if the wait runs out.
    Waiting(String),
    /// Will not come back by waiting.
    Failed(String),
}

impl UnitState {
    /// `active (running), main PID 1234`, for messages.
    pub fn show(&self) -> String {
        let mut s = format!("{} ({})", self.active, self.sub);
        if self.main_pid != 0 {
            s.push_str(&format!(", main PID {}", self.main_pid));
        }
        s
    }

    /// Whether the unit is back after `action`, judged against its state
    /// `before`: active again, and after a restart with a main process
    /// started since (a restart that did not happen is not "back").
    pub fn verdict(&self, before: &UnitState, action: &str) -> Verdict {
        match self.active.as_str() {
            "failed" => Verdict::Failed(format!(
                "the unit failed (Result={}); see journalctl -u for why",
                self.result
            )),
            "active" => {
                let restarted = self.started != before.started
                    || (self.main_pid != 0 && self.main_pid != before.main_pid);
                // A reload keeps the main process; so may reload-or-restart.
                let must_restart = action == "restart" || action == "try-restart";
                if must_restart && !restarted && before.active == "active" {
                    Verdict::Waiting(format!(
                        "still the process that ran before ({})",
                        self.show()
                    ))
                } else {
                    Verdict::Back
                }
            }
            _ => Verdict::Waiting(self.show()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "LoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nMainPID=1234\nExecMainStartTimestampMonotonic=5000000\n";

    #[test]
    fn show_output_is_read_by_key() {
        let s = parse_show(SHOW);
        assert_eq!(s.active, "active");
        assert_eq!(s.main_pid, 1234);
        assert_eq!(s.started, 5_000_000);
        assert_eq!(s.show(), "active (running), main PID 1234");
        let junk = parse_show("garbage\n\x1b[31mActiveState=\nMainPID=x\n");
        assert_eq!(junk.main_pid, 0);
        let missing = parse_show("LoadState=not-found\nActiveState=inactive\nSubState=dead\n");
        assert_eq!(missing.load, "not-found");
    }

    #[test]
    fn back_means_active_with_a_new_main_process_after_a_restart() {
        let before = parse_show(SHOW);
        let same = before.clone();
        assert!(matches!(
            same.verdict(&before, "restart"),
            Verdict::Waiting(_)
        ));
        assert_eq!(same.verdict(&before, "reload"), Verdict::Back);
        let mut new = before.clone();
        new.main_pid = 1300;
        new.started = 9_000_000;
        assert_eq!(new.verdict(&before, "restart"), Verdict::Back);
        let mut activating = new.clone();
        activating.active = "activating".into();
        activating.sub = "start".into();
        assert_eq!(
            activating.verdict(&before, "restart"),
            Verdict::Waiting("activating (start), main PID 1300".into())
        );
        let mut failed = new.clone();
        failed.active = "failed".into();
        failed.result = "exit-code".into();
        assert!(
            matches!(failed.verdict(&before, "restart"), Verdict::Failed(m) if m.contains("Result=exit-code"))
        );
        // A unit that was down comes back by being active.
        let mut down = before.clone();
        down.active = "inactive".into();
        assert_eq!(same.verdict(&down, "restart"), Verdict::Back);
    }
}
