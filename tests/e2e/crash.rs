//! The real daemon killed with SIGKILL in the middle of a run: the next
//! start marks the orphan interrupted, applies catch-up, and never runs a
//! slot twice.

use crate::util::{Env, wait_for};
use std::collections::HashSet;
use std::time::Duration;

#[test]
fn kill_9_mid_run_then_restart() {
    let env = Env::new(
        r#"
[[job]]
name = "slow"
plugin = "test-hostile"
schedule = "*/2 * * * * *"
catch_up = "latest"
[job.config]
action = "sleep"
seconds = 3
"#,
    );
    env.install_guest("opsd-test-hostile");
    let history = || env.json(&["history", "--json", "--limit", "1000"]);
    let daemon = env.daemon();
    let orphan = wait_for(Duration::from_secs(20), || {
        history()
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "running")
            .map(|r| r["id"].as_str().unwrap().to_owned())
    })
    .unwrap_or_else(|| panic!("no run started; daemon log:\n{}", daemon.log()));
    daemon.kill9();

    // With no daemon, the CLI opens the store itself: the record is still
    // there, still saying running.
    let daemon = env.daemon();
    let recovered = wait_for(Duration::from_secs(20), || {
        let h = history();
        let orphan_rec = h
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == orphan.as_str())
            .cloned()?;
        let later_done = h
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "ok" || r["status"] == "skipped");
        (orphan_rec["status"] == "interrupted" && later_done).then_some(orphan_rec)
    })
    .unwrap_or_else(|| {
        panic!(
            "no recovery; history: {:#}\nlog:\n{}",
            history(),
            daemon.log()
        )
    });
    assert!(
        recovered["error"]
            .as_str()
            .unwrap()
            .contains("opsd stopped while this run was in progress"),
        "{recovered:#}"
    );
    assert!(daemon.stop().success());

    let all = history();
    let runs = all.as_array().unwrap();
    let mut slots = HashSet::new();
    for r in runs {
        assert!(
            slots.insert(r["scheduled"].as_str().unwrap().to_owned()),
            "slot {} taken twice: {all:#}",
            r["scheduled"]
        );
        assert_ne!(
            r["status"], "running",
            "nothing left running after a clean stop: {r:#}"
        );
    }
}
