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

/// A small deterministic generator, so a failing cycle can be replayed.
fn next_random(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn kill_9_at_random_points_across_100_cycles() {
    let env = Env::new(
        r#"
[[job]]
name = "fast"
plugin = "test-hostile"
schedule = "* * * * * *"
[job.config]
action = "ok"

[[job]]
name = "stepping"
plugin = "test-hostile"
schedule = "*/2 * * * * *"
[job.config]
action = "chatty"
seconds = 1
"#,
    );
    env.install_guest("opsd-test-hostile");
    let history = || -> Vec<serde_json::Value> {
        env.json(&["history", "--json", "--limit", "100000"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let seed: u64 = std::env::var("OPSD_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    eprintln!("seed {seed} (OPSD_CRASH_SEED replays it)");
    let mut rng = seed;
    // Every finished record seen so far, as it was: none may vanish or change.
    let mut finished: std::collections::HashMap<String, serde_json::Value> = Default::default();
    for cycle in 0..100 {
        // The store opens every time: the daemon would not start otherwise.
        let daemon = env.daemon();
        std::thread::sleep(Duration::from_millis(200 + next_random(&mut rng) % 1500));
        daemon.kill9();
        for r in history() {
            let id = r["id"].as_str().unwrap_or_default().to_owned();
            // Opening the store (as this CLI does) marks runs a killed
            // daemon left running as interrupted, so none shows running.
            assert_ne!(r["status"], "running", "cycle {cycle}: {r:#}");
            if let Some(before) = finished.get(&id) {
                assert_eq!(before, &r, "cycle {cycle}: a finished record changed");
            } else {
                finished.insert(id, r);
            }
        }
        let now: HashSet<String> = history()
            .iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        for id in finished.keys() {
            assert!(
                now.contains(id),
                "cycle {cycle}: finished run {id} was lost"
            );
        }
    }
    // A last clean start and stop, then the whole history.
    let daemon = env.daemon();
    std::thread::sleep(Duration::from_millis(300));
    assert!(daemon.stop().success());
    let all = history();
    let by_id: std::collections::HashMap<&str, &serde_json::Value> = all
        .iter()
        .map(|r| (r["id"].as_str().unwrap_or_default(), r))
        .collect();
    // Each says why.
    let interrupted: Vec<&&serde_json::Value> = by_id
        .values()
        .filter(|r| r["status"] == "interrupted")
        .collect();
    for r in &interrupted {
        assert!(
            r["error"]
                .as_str()
                .unwrap_or_default()
                .contains("opsd stopped while this run was in progress"),
            "{r:#}"
        );
    }
    let mut slots = HashSet::new();
    for r in all
        .iter()
        .filter(|r| r["trigger"] != "manual" && r["attempt"] == 1)
    {
        assert!(
            slots.insert((r["job"].to_string(), r["scheduled"].to_string())),
            "slot run twice: {r:#}"
        );
    }
    eprintln!(
        "100 kills: {} finished runs kept, {} runs in progress marked interrupted, {} slots each run once",
        finished.len(),
        interrupted.len(),
        slots.len()
    );
    assert!(
        finished.len() > 100 && !interrupted.is_empty(),
        "the kills hit runs in progress"
    );
}
