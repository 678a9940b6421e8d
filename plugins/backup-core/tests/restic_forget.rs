//! The retention rules against restic itself: the same snapshot times and
//! the same policies given to `restic forget --dry-run` and to opsd's
//! backup plugin must keep the same snapshots.

use chrono::{DateTime, TimeZone, Utc};
use opsd_backup_core::retention::Retention;
use std::process::Command;

/// A small deterministic generator (xorshift), so the test needs no
/// dependency for randomness and fails the same way twice.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn restic(repo: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", "opsd-test")
        .env("TZ", "UTC")
        .output()
        .expect("restic (Debian package restic) is needed for this test");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn retention_keeps_what_restic_forget_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), "x").unwrap();
    restic(&repo, &["init", "-q"]);

    // 40 snapshots over about a year and a half: bursts, gaps, several a
    // day, crossing ISO-week, month and year boundaries. (restic takes
    // about half a second per snapshot, mostly deriving its key.)
    let mut rng = Rng(0x005e_ed0f_0b5d);
    let mut t = Utc.with_ymd_and_hms(2023, 12, 20, 1, 0, 0).unwrap();
    let mut times: Vec<DateTime<Utc>> = Vec::new();
    for _ in 0..40 {
        let step_hours = match rng.next() % 10 {
            0..=3 => 1 + rng.next() % 6,
            4..=6 => 20 + rng.next() % 40,
            _ => 200 + rng.next() % 1500,
        };
        t += chrono::Duration::hours(step_hours as i64)
            + chrono::Duration::minutes((rng.next() % 60) as i64);
        times.push(t);
    }
    for t in &times {
        let when = t.format("%Y-%m-%d %H:%M:%S").to_string();
        restic(
            &repo,
            &[
                "backup",
                "-q",
                "--host",
                "h",
                "--time",
                &when,
                data.to_str().unwrap(),
            ],
        );
    }

    let policies: Vec<(Vec<&str>, Retention)> = vec![
        (
            vec!["--keep-last", "5"],
            Retention {
                keep_last: Some(5),
                ..Default::default()
            },
        ),
        (
            vec!["--keep-hourly", "10"],
            Retention {
                keep_hourly: Some(10),
                ..Default::default()
            },
        ),
        (
            vec!["--keep-daily", "14"],
            Retention {
                keep_daily: Some(14),
                ..Default::default()
            },
        ),
        (
            vec!["--keep-weekly", "8"],
            Retention {
                keep_weekly: Some(8),
                ..Default::default()
            },
        ),
        (
            vec!["--keep-monthly", "12", "--keep-yearly", "10"],
            Retention {
                keep_monthly: Some(12),
                keep_yearly: Some(10),
                ..Default::default()
            },
        ),
        (
            vec![
                "--keep-last",
                "3",
                "--keep-daily",
                "7",
                "--keep-weekly",
                "4",
                "--keep-monthly",
                "6",
                "--keep-yearly",
                "2",
            ],
            Retention {
                keep_last: Some(3),
                keep_daily: Some(7),
                keep_weekly: Some(4),
                keep_monthly: Some(6),
                keep_yearly: Some(2),
                ..Default::default()
            },
        ),
    ];
    let now = *times.last().unwrap();
    for (args, policy) in policies {
        let mut cmd = vec!["forget", "--dry-run", "--json"];
        cmd.extend(&args);
        let out = restic(&repo, &cmd);
        let groups: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut theirs: Vec<String> = groups[0]["keep"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                DateTime::parse_from_rfc3339(s["time"].as_str().unwrap())
                    .unwrap()
                    .to_utc()
                    .format("%Y-%m-%dT%H:%M")
                    .to_string()
            })
            .collect();
        theirs.sort();
        let (kept, _) = policy.apply(&times, now);
        let mut ours: Vec<String> = kept
            .iter()
            .map(|(t, _)| t.format("%Y-%m-%dT%H:%M").to_string())
            .collect();
        ours.sort();
        assert_eq!(ours, theirs, "policy {args:?}");
    }
}
