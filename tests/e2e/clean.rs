//! clean through a live daemon: the same files go as with a real `find
//! DIR -mtime +30 -delete` on a copy of the tree; budgets, patterns and
//! the newest kept; and hostile trees: links out of the grant, a
//! directory swapped for a link while the run goes, a huge tree, files
//! that cannot be removed, `..` in a pattern.

use crate::util::{Env, metric, text};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const DAY: u64 = 86_400;

/// Writes `size` bytes at `p` with a modification time `days` ago.
fn file(p: &Path, days: f64, size: usize) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, vec![b'x'; size]).unwrap();
    age(p, days);
}

fn age(p: &Path, days: f64) {
    let t = SystemTime::now() - Duration::from_secs_f64(days * DAY as f64);
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// A symlink at `p` to `target`, itself `days` old (touch -h).
fn link(target: &Path, p: &Path, days: f64) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - (days * DAY as f64) as u64;
    let out = std::process::Command::new("touch")
        .args(["-h", "-d", &format!("@{secs}")])
        .arg(p)
        .output()
        .unwrap();
    assert!(out.status.success(), "touch -h: {}", text(&out));
}

/// Every path under `root` (files, links and directories), relative.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.insert(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// The same planted tree at `root`; `outside` holds what links point to.
fn plant(root: &Path, outside: &Path) {
    for (rel, days) in [
        ("app.log", 1.0),
        ("app.log.1", 12.0),
        ("app.log.29", 29.9),
        ("app.log.30", 30.5),
        ("app.log.31", 31.2),
        ("app.log.90", 90.0),
        ("old dir/ünïcode name.log", 45.0),
        ("old dir/fresh.log", 2.0),
        ("a/b/c/deep.log", 400.0),
        (".hidden/.cache", 60.0),
    ] {
        file(&root.join(rel), days, 64);
    }
    // Links out of the grant: an old one to a file, an old one to a
    // directory full of old files, a young one; none followed.
    link(&outside.join("secret.txt"), &root.join("old-link"), 40.0);
    link(outside, &root.join("dir-link"), 50.0);
    link(&outside.join("secret.txt"), &root.join("a/young-link"), 3.0);
}

fn clean_job(name: &str, host: &str, config: &str) -> String {
    let far = crate::util::far_off();
    format!(
        r#"
[[job]]
name = "{name}"
plugin = "clean"
schedule = "{far}"
[job.grants]
fs = [{{ host = "{host}", guest = "/data", access = "rw", create = true }}]
[job.config]
{config}
"#
    )
}

#[test]
fn the_same_files_go_as_with_find_mtime_delete() {
    let env = Env::new(&clean_job(
        "clean-logs",
        "mine",
        "paths = [\"/data\"]\nolder_than = \"30d\"",
    ));
    let outside = env.path("outside");
    file(&outside.join("secret.txt"), 100.0, 10);
    file(&outside.join("old.log"), 100.0, 10);
    plant(&env.path("mine"), &outside);
    plant(&env.path("find"), &outside);
    let before = tree(&env.path("mine"));
    let _daemon = env.daemon();

    // A dry run lists what would go and removes nothing.
    let out = env.run(&["run", "clean-logs", "--dry-run", "--json"]);
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_eq!(tree(&env.path("mine")), before, "a dry run removed files");
    let details = rec["details"].as_str().unwrap();
    assert!(details.contains("would remove:"), "{details}");
    assert!(
        details.contains("/data/app.log.90, 64 B, 90.0 days old, older than 30d"),
        "{details}"
    );
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .starts_with("would remove 7 files ("),
        "{rec:#}"
    );

    let find = std::process::Command::new("find")
        .arg(env.path("find"))
        .args(["-mtime", "+30", "-delete"])
        .output()
        .unwrap();
    assert!(find.status.success(), "find: {}", text(&find));
    let rec = env.run_job("clean-logs");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let (mine, found) = (tree(&env.path("mine")), tree(&env.path("find")));
    assert_eq!(mine, found, "clean and find -mtime +30 -delete differ");
    assert_eq!(before.len() - mine.len(), 7, "{mine:?}");
    assert!(!mine.contains("app.log.31") && mine.contains("app.log.30"));
    assert!(!mine.contains("dir-link") && !mine.contains("old-link"));
    assert_eq!(metric(&rec, "files_removed"), 7.0);
    // What the links pointed to is untouched.
    assert!(outside.join("secret.txt").exists() && outside.join("old.log").exists());
}

#[test]
fn budgets_patterns_and_the_newest_kept() {
    let config = r#"paths = ["/data/cache", "/data/tmp"]
include = ["*.bin", "*.tmp"]
exclude = ["pinned/**", "*.keep.bin"]
max_size = "300K"
keep_newest = 1
remove_empty_dirs = true
max_deletions = 2"#;
    let env = Env::new(&clean_job("cache", "data", config));
    let d = env.path("data");
    // Six 100 KiB cache files, a day apart, besides one pinned, one
    // marked keep and one not a cache file: over the 300K budget, the
    // three oldest of the six go; in tmp, the older file. max_deletions
    // lets two go per run, oldest first in each root.
    for i in 0..6 {
        file(
            &d.join(format!("cache/s{i}/blob{i}.bin")),
            10.0 - i as f64,
            100 << 10,
        );
    }
    file(&d.join("cache/pinned/big.bin"), 100.0, 500 << 10);
    file(&d.join("cache/x.keep.bin"), 100.0, 500 << 10);
    file(&d.join("cache/notes.txt"), 100.0, 500 << 10);
    file(&d.join("tmp/a.tmp"), 3.0, 400 << 10);
    file(&d.join("tmp/b.tmp"), 2.0, 1);
    let _daemon = env.daemon();
    let rec = env.run_job("cache");
    assert_eq!(rec["status"], "warning", "{rec:#}");
    let left = tree(&d);
    for gone in ["cache/s0/blob0.bin", "cache/s1/blob1.bin"] {
        assert!(!left.contains(gone), "{gone} stayed: {left:?}");
    }
    assert!(
        left.contains("cache/s2/blob2.bin") && left.contains("tmp/a.tmp"),
        "{left:?}"
    );
    // Emptied directories go; the rest stays.
    assert!(
        !left.contains("cache/s0") && left.contains("cache/s2"),
        "{left:?}"
    );
    let details = rec["details"].as_str().unwrap();
    assert!(
        details.contains("/data/cache: 1 more files would go, past max_deletions (2)")
            && details.contains("/data/tmp: 1 more files would go"),
        "{details}"
    );
    // The next run goes on: s2 and a.tmp go, and both are within budget.
    let rec = env.run_job("cache");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_eq!(metric(&rec, "files_removed"), 2.0);
    let left = tree(&d);
    assert!(
        !left.contains("cache/s2/blob2.bin") && !left.contains("tmp/a.tmp"),
        "{left:?}"
    );
    for kept in [
        "cache/s3/blob3.bin",
        "cache/s5/blob5.bin",
        "cache/pinned/big.bin",
        "cache/x.keep.bin",
        "cache/notes.txt",
        "tmp/b.tmp",
    ] {
        assert!(left.contains(kept), "{kept} went: {left:?}");
    }
    let rec = env.run_job("cache");
    assert_eq!(metric(&rec, "files_removed"), 0.0, "{rec:#}");
}

#[test]
fn hostile_trees_remove_nothing_outside_and_say_what_they_could_not() {
    let env = Env::new(&format!(
        "{}{}{}{}",
        clean_job(
            "swap",
            "swap",
            "paths = [\"/data\"]\nolder_than = \"1d\"\nremove_empty_dirs = true"
        ),
        clean_job(
            "huge",
            "huge",
            "paths = [\"/data\"]\nolder_than = \"1d\"\nmax_entries = 5000"
        ),
        clean_job(
            "via-link",
            "vialink",
            "paths = [\"/data/link\"]\nolder_than = \"1d\""
        ),
        clean_job(
            "dotdot",
            "dotdot",
            "paths = [\"/data\"]\ninclude = [\"../outside/*\"]\nolder_than = \"1d\""
        ),
    ));
    let outside = env.path("outside");
    for i in 0..50 {
        file(&outside.join(format!("precious{i}.dat")), 30.0, 8);
    }
    // A directory swapped for a link to `outside` and back, over and
    // over, while the run walks and removes.
    let swap = env.path("swap");
    for i in 0..2000 {
        file(&swap.join(format!("d/old{i}.log")), 5.0, 8);
    }
    let huge = env.path("huge");
    for i in 0..20_000 {
        file(&huge.join(format!("h{}/f{i}", i % 100)), 5.0, 1);
    }
    std::fs::create_dir_all(env.path("vialink")).unwrap();
    std::os::unix::fs::symlink(&outside, env.path("vialink/link")).unwrap();
    std::fs::create_dir_all(env.path("dotdot")).unwrap();
    let _daemon = env.daemon();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, swap, outside) = (stop.clone(), swap.clone(), outside.clone());
        std::thread::spawn(move || {
            let mut swaps = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if std::fs::rename(swap.join("d"), swap.join("d.real")).is_ok() {
                    let _ = std::os::unix::fs::symlink(&outside, swap.join("d"));
                    std::thread::sleep(Duration::from_micros(200));
                    let _ = std::fs::remove_file(swap.join("d"));
                    let _ = std::fs::rename(swap.join("d.real"), swap.join("d"));
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let rec = env.run_job("swap");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0, "the swapper never swapped");
    assert!(
        ["ok", "warning", "failed"].contains(&rec["status"].as_str().unwrap()),
        "{rec:#}"
    );
    for i in 0..50 {
        assert!(
            outside.join(format!("precious{i}.dat")).exists(),
            "precious{i}.dat was removed through a swapped link ({swaps} swaps): {rec:#}"
        );
    }
    // Run again with nothing swapping: the rest goes.
    let rec = env.run_job("swap");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert!(!swap.join("d").exists(), "{:?}", tree(&swap));

    // A huge tree: the scan stops at max_entries, in bounded time, and
    // what it saw past older_than goes; the run says so.
    let start = Instant::now();
    let rec = env.run_job("huge");
    let took = start.elapsed();
    assert_eq!(rec["status"], "warning", "{rec:#}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(
        rec["details"]
            .as_str()
            .unwrap()
            .contains("the scan stopped early (max_entries 5000"),
        "{rec:#}"
    );
    let removed = metric(&rec, "files_removed");
    assert!(removed > 0.0 && removed < 5000.0, "{removed}");

    // A root that is a link out of the grant is refused, not followed.
    let rec = env.run_job("via-link");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert!(
        rec["error"]
            .as_str()
            .unwrap()
            .contains("/data/link is a symlink or not a directory"),
        "{rec:#}"
    );
    let rec = env.run_job("dotdot");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert!(
        rec["error"]
            .as_str()
            .unwrap()
            .contains("include `../outside/*` has `..`"),
        "{rec:#}"
    );
    assert_eq!(tree(&outside).len(), 50);
}

/// Files on a read-only mount inside the grant cannot be removed: named,
/// and the run is a warning while others went, failed when none could.
#[test]
#[cfg_attr(
    not(opsd_privileged),
    ignore = "needs root (mounts a small tmpfs and remounts it read-only)"
)]
fn files_that_cannot_be_removed_are_named() {
    let env = Env::new(&clean_job(
        "ro",
        "ro",
        "paths = [\"/data\"]\nolder_than = \"1d\"",
    ));
    let ro = env.path("ro");
    file(&ro.join("gone.log"), 5.0, 8);
    let disk = crate::util::SmallDisk::mount(ro.join("stuck"), "1m");
    file(&ro.join("stuck/old.log"), 5.0, 8);
    let out = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(ro.join("stuck"))
        .output()
        .unwrap();
    if !out.status.success() {
        panic!("cannot remount read-only: {}", text(&out));
    }
    let _daemon = env.daemon();
    let rec = env.run_job("ro");
    assert_eq!(rec["status"], "warning", "{rec:#}");
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .contains("/data/stuck/old.log: cannot remove"),
        "{rec:#}"
    );
    assert!(!ro.join("gone.log").exists());
    let rec = env.run_job("ro");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert_eq!(metric(&rec, "failures"), 1.0);
    drop(disk);
}
