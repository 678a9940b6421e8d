//! `opsd import crontab` on real crontabs: the config it prints passes
//! `opsd check`, its jobs run through a live daemon, and its schedules
//! fire when cron fires (croniter with cron's day rule as the reference).

use crate::util::{Env, opsd_bin, python_with, text};
use std::process::Command;

/// Debian's `/etc/crontab` as cron-daemon-common 3.0pl1-162 installs it
/// (taken from the package, tabs and all).
const DEBIAN_CRONTAB: &str = "# /etc/crontab: system-wide crontab
# Unlike any other crontab you don't have to run the `crontab'
# command to install the new version when you edit this file
# and files in /etc/cron.d. These files also have username fields,
# that none of the other crontabs do.

SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin

# Example of job definition:
# .---------------- minute (0 - 59)
# |  .------------- hour (0 - 23)
# |  |  .---------- day of month (1 - 31)
# |  |  |  .------- month (1 - 12) OR jan,feb,mar,apr ...
# |  |  |  |  .---- day of week (0 - 6) (Sunday=0 or 7) OR sun,mon,tue,wed,thu,fri,sat
# |  |  |  |  |
# *  *  *  *  * user-name command to be executed
17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly
25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }
47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }
52 6\t1 * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }
#
";

/// A user's crontab with what people write in one.
const USER_CRONTAB: &str = r#"# m h  dom mon dow   command
MAILTO=ops@example.com
CRON_TZ=UTC
*/15 * * * * /usr/bin/true
0 9-17 * * mon-fri date +\%Y-\%m-\%d
30 2 1,15 * sun seq 1 3
@daily cat /etc/hostname | wc -c
@reboot true
0 4 * * 7 wc -l%first%second
0 0 */2 * mon true
5 4 * jan,jul * echo "$HOME" > /dev/null && true
CRON_TZ=America/New_York
0 12 * * 1-5 true
"#;

fn import(args: &[&str]) -> String {
    let out = Command::new(opsd_bin())
        .args(["import", "crontab"])
        .args(args)
        .output()
        .expect("run opsd import");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// An Env whose config is the imported text.
fn env_of(imported: &str) -> Env {
    Env::new(imported)
}

#[test]
fn imported_crontabs_pass_check_and_run_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("user.tab");
    std::fs::write(&user, USER_CRONTAB).unwrap();
    let debian = dir.path().join("crontab");
    std::fs::write(&debian, DEBIAN_CRONTAB).unwrap();

    let mut imports = vec![
        ("user", import(&[user.to_str().unwrap()])),
        ("debian", import(&["--system", debian.to_str().unwrap()])),
    ];
    // Whatever this machine has in /etc/cron.d, read as cron reads it.
    if std::path::Path::new("/etc/cron.d").is_dir() {
        imports.push(("cron.d", import(&["/etc/cron.d"])));
    }
    for (what, imported) in &imports {
        let env = env_of(imported);
        let check = env.run(&["check"]);
        assert_eq!(
            check.status.code(),
            Some(0),
            "{what}:\n{imported}\n{}",
            text(&check)
        );
    }

    let (_, user_toml) = &imports[0];
    for needle in [
        "schedule = \"*/15 * * * *\"",
        "schedule = \"0 9-17 * * mon-fri\"",
        "schedule = \"@reboot\"",
        "REVIEW: @reboot: opsd runs it once when the daemon starts",
        "MAILTO=ops@example.com: opsd mails nothing",
        "args = [\"+%Y-%m-%d\"]",
        "stdin = \"first\\nsecond\"",
        "NOT IMPORTED",
        "has no way to say AND",
        "timezone = \"America/New_York\"",
        "program = \"/usr/bin/sh\"",
        "REVIEW: uses shell syntax",
    ] {
        assert!(user_toml.contains(needle), "lacks {needle:?}:\n{user_toml}");
    }
    let (_, debian_toml) = &imports[1];
    assert!(
        debian_toml.contains("cron ran this as `root`"),
        "{debian_toml}"
    );
    assert!(
        debian_toml.contains("schedule = \"47 6 * * 7\""),
        "{debian_toml}"
    );
    assert!(debian_toml.contains("run-parts"), "{debian_toml}");

    // The imported jobs run, through a live daemon.
    let env = env_of(user_toml);
    let _daemon = env.daemon();
    let rec = env.run_job("cron-user.tab-date");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let today = chrono::Utc::now().format("%Y-%m-").to_string();
    assert!(rec["details"].as_str().unwrap().contains(&today), "{rec:#}");
    let rec = env.run_job("cron-user.tab-wc");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    // `%first%second`: "first\nsecond" on stdin, one newline.
    assert!(
        rec["details"]
            .as_str()
            .unwrap()
            .contains("stdout (last lines):\n1"),
        "{rec:#}"
    );
    let rec = env.run_job("cron-user.tab-cat");
    assert_eq!(rec["status"], "ok", "{rec:#}");
}

/// Vixie cron's rule for the day fields: AND when either starts with
/// `*`, OR otherwise; croniter computes each given `day_or`.
const CRON_NEXT: &str = r#"
import json, sys
from datetime import datetime
from zoneinfo import ZoneInfo
from croniter import croniter
out = []
for case in json.load(sys.stdin):
    expr, tz = case["expr"], ZoneInfo(case["tz"])
    f = expr.split()
    day_or = not (len(f) == 5 and (f[2].startswith("*") or f[4].startswith("*")))
    start = datetime.fromisoformat(case["after"]).astimezone(tz)
    it = croniter(expr, start, day_or=day_or)
    out.append([int(it.get_next(datetime).timestamp()) for _ in range(case["count"])])
print(json.dumps(out))
"#;

#[test]
fn imported_schedules_fire_when_cron_does() {
    let lines = [
        ("UTC", "*/15 * * * *"),
        ("UTC", "0 9-17 * * mon-fri"),
        ("UTC", "30 2 1,15 * sun"),
        ("UTC", "15 10 1-7 * mon"),
        ("UTC", "0 0 13 * fri"),
        ("UTC", "0 0 1-31 * mon"),
        ("UTC", "0 0 */3 * *"),
        ("UTC", "0 12 */2 * 0-7"),
        ("UTC", "0 0 1 * */1"),
        ("UTC", "0 0 */1 * 1"),
        ("UTC", "0 3 1-7 * */1"),
        ("UTC", "0 6 */10 * *"),
        ("UTC", "0 0 1 */2 *"),
        ("UTC", "*/7 */5 * * *"),
        ("UTC", "5 4 * jan,jul sun"),
        ("UTC", "0 0 * * 7"),
        ("UTC", "0 22 * * 1-5"),
        ("UTC", "@daily"),
        ("UTC", "@weekly"),
        ("UTC", "@monthly"),
        ("America/New_York", "0 12 * * 1-5"),
        ("Asia/Kolkata", "30 8 1,15 * mon"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    let mut translated = Vec::new();
    for (tz, expr) in lines {
        let file = dir.path().join("tab");
        std::fs::write(&file, format!("CRON_TZ={tz}\n{expr} /usr/bin/true\n")).unwrap();
        let imported = import(&[file.to_str().unwrap()]);
        let config: toml::Table = toml::from_str(&imported).unwrap();
        let job = &config["job"].as_array().unwrap()[0];
        let schedule = job["schedule"].as_str().unwrap().to_owned();
        assert_eq!(job["timezone"].as_str(), Some(tz), "{imported}");
        translated.push((tz, expr, schedule));
        cases.push(serde_json::json!({
            "expr": expr, "tz": tz, "after": "2026-01-01T00:00:00+00:00", "count": 40
        }));
    }
    let python = python_with(&["croniter==7.0.0"]);
    let mut child = Command::new(python)
        .args(["-c", CRON_NEXT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&cases).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let cron: Vec<Vec<i64>> = serde_json::from_slice(&out.stdout).unwrap();
    let mut mismatches = Vec::new();
    for ((tz, expr, schedule), want) in translated.iter().zip(&cron) {
        let out = Command::new(opsd_bin())
            .args(["schedule", "next", schedule, "--tz", tz])
            .args(["--after", "2026-01-01T00:00:00Z", "--count", "40", "--json"])
            .output()
            .unwrap();
        let got: Vec<String> = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{schedule}: {e}: {}", text(&out)));
        let got: Vec<i64> = got
            .iter()
            .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp())
            .collect();
        if &got != want {
            mismatches.push(format!("cron `{expr}` ({tz}) imported as `{schedule}`"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // What opsd cannot say is not imported, and said why.
    let file = dir.path().join("tab");
    std::fs::write(
        &file,
        "0 0 */2 * mon /usr/bin/true\n0 0 1 * */2 /usr/bin/true\n",
    )
    .unwrap();
    let imported = import(&[file.to_str().unwrap()]);
    assert_eq!(imported.matches("NOT IMPORTED").count(), 2, "{imported}");
    assert!(!imported.contains("[[job]]"), "{imported}");
}

/// With no FILE, the user's own crontab as `crontab -l` lists it; a
/// `crontab -l` that fails (no crontab) says so and what to do instead.
#[test]
fn with_no_file_the_users_crontab_is_imported_through_crontab_l() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let listed = dir.path().join("listed");
    std::fs::write(&listed, USER_CRONTAB).unwrap();
    // A stand-in `crontab` that prints the crontab for `-l` and records
    // how it was asked.
    let script = bin.join("crontab");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" > {asked}\n[ \"$1\" = -l ] || exit 2\n[ -e {listed} ] || {{ echo \"no crontab for $USER\" >&2; exit 1; }}\ncat {listed}\n",
            asked = dir.path().join("asked").display(),
            listed = listed.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let run = || {
        Command::new(opsd_bin())
            .args(["import", "crontab"])
            .env("PATH", &path)
            .env("USER", "alice")
            .output()
            .expect("run opsd import")
    };
    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("asked")).unwrap(),
        "-l\n"
    );
    let imported = String::from_utf8(out.stdout).unwrap();
    assert!(
        imported.contains("# ---- crontab of alice ----")
            && imported.contains("name = \"cron-crontab-of-alice-true\"")
            && imported.contains("cron ran this as `alice`"),
        "{imported}"
    );
    let from_file = import(&[listed.to_str().unwrap()]);
    let schedules = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("schedule = "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        schedules(&imported),
        schedules(&from_file),
        "the same jobs as from the file"
    );
    // What it prints is a config opsd accepts.
    let env = env_of(&imported);
    let check = env.run(&["check"]);
    assert!(check.status.success(), "{}", text(&check));

    std::fs::remove_file(&listed).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("`crontab -l` failed: no crontab for alice")
            && said.contains("opsd import crontab FILE"),
        "{said}"
    );
}
