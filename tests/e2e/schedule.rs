//! `opsd schedule next` against croniter, the reference implementation
//! the issue names, on generated expressions across DST transitions.

use crate::util::{opsd_bin, python_with};

#[test]
fn schedule_next_agrees_with_croniter() {
    let python = python_with(&["croniter==7.0.0"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/croniter/compare.py");
    let out = std::process::Command::new(&python)
        .args([
            script,
            "--opsd",
            opsd_bin(),
            "--expressions",
            "300",
            "--count",
            "20",
        ])
        .output()
        .expect("run compare.py");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "opsd and croniter disagree:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains(" 0 mismatches"), "{report}");
}

#[test]
fn schedule_next_explains_bad_input() {
    let run = |args: &[&str]| {
        std::process::Command::new(opsd_bin())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["schedule", "next", "0 25 * * *"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hour field `25`: 25 is out of range 0-23")
    );
    let out = run(&["schedule", "next", "@daily", "--tz", "Mars/Base"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown time zone `Mars/Base`"));
    let out = run(&["schedule", "next", "@daily", "--after", "yesterday"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--after `yesterday` is not an RFC 3339 time")
    );
    // Needs no configuration at all.
    let out = std::process::Command::new(opsd_bin())
        .args([
            "schedule",
            "next",
            "0 2 * * sun",
            "--tz",
            "Europe/Berlin",
            "--after",
            "2026-11-28T12:00:00Z",
            "--count",
            "2",
            "--json",
        ])
        .env("OPSD_CONFIG", "/nonexistent/opsd.toml")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fires: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        fires,
        ["2026-11-29T02:00:00+01:00", "2026-12-06T02:00:00+01:00"]
    );
}
