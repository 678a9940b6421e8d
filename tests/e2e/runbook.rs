//! The runbook as config: `examples/runbook.toml`, the operations guide's
//! automatable lines as jobs and alerts, checked with `opsd check` and
//! every job run through a live daemon against real services: the test
//! PostgreSQL, Pebble as the ACME server, a real HTTP service kept by a
//! supervisor (the agent, with its /health), a `git daemon` as the
//! remote, npm running the app's scripts, and a tree standing for the
//! install's `/` (logs, cache, memory files, `.env`, logrotate config).
//!
//! What the test changes is the same for every job (every fs grant's host
//! path moves under the tree's root, guest paths stay; the service
//! addresses become the test's; schedules never fire) plus, per job, what
//! [`rows`] says with why. A job in the file without a row fails the test,
//! as does a row for a job the file no longer has.

use crate::pebble::pebble;
use crate::pg::pg;
use crate::service_restart::Supervisor;
use crate::util::{Env, text, wait_for};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};
use toml::{Table, Value as Toml};

/// The example, as shipped.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/runbook.toml")
}

/// What a job's run must end as.
enum Expect {
    Ok,
    /// `ok` or `warning`, for the reason given (something of this machine
    /// the test does not control).
    OkOrWarning(&'static str),
}

/// One job of the example: how the test adapts it, runs it and checks
/// what it did.
struct Row {
    job: &'static str,
    /// Besides host paths and service addresses: what the test changes in
    /// the job, and why ("" when nothing).
    why: &'static str,
    adapt: fn(&mut Table, &World),
    /// `opsd run` arguments after the job's name.
    args: &'static [&'static str],
    expect: Expect,
    /// What the run must have done.
    then: fn(&Env, &World, &Value),
}

fn nothing(_: &mut Table, _: &World) {}
fn no_check(_: &Env, _: &World, _: &Value) {}

/// The services and the tree the jobs run against.
struct World {
    /// Stands for the install's `/`: every fs grant's host path moves here.
    root: PathBuf,
    /// The database standing for `codie`.
    db: String,
    agent: Supervisor,
    git: GitDaemon,
}

impl World {
    /// A path of the install, under the test's root.
    fn at(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }
}

/// `git daemon` serving the app's remote over git://; killed on drop.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        // Its own process group: the daemon and a connection it serves.
        // SAFETY: signalling the group of a child we started.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// Debian's git (not whatever else is first on PATH).
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/git")
        .args(["-c", "user.name=ops", "-c", "user.email=ops@example.com"])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .output()
        .expect("run /usr/bin/git (Debian package git)");
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const PACKAGE_JSON: &str = r#"{
  "name": "codie",
  "version": "1.0.0",
  "private": true,
  "scripts": {
    "metrics:daily": "node -e \"console.log('requests 1200, errors 3, p95 180 ms')\"",
    "report:weekly": "node -e \"console.log('weekly report: 8400 requests, 0.3 % errors')\"",
    "report:monthly": "node -e \"console.log('monthly report: 36000 requests, 0.2 % errors')\"",
    "audit:performance": "node -e \"console.log('performance audit: p95 180 ms, within budget')\"",
    "audit:security": "node -e \"console.log('security audit: 0 issues')\"",
    "security:scan": "node -e \"console.log('security scan: 0 findings')\"",
    "config:validate": "node -e \"const e = require('fs').readFileSync('.env', 'utf8'); if (!/^JWT_SECRET=.+/m.test(e)) { console.error('JWT_SECRET missing'); process.exit(1) } console.log('config ok')\"",
    "diagnose": "node -e \"console.log('diagnosis: database reachable, LLM reachable')\""
  }
}
"#;

const PACKAGE_LOCK: &str = r#"{
  "name": "codie",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": { "name": "codie", "version": "1.0.0" }
  }
}
"#;

/// /etc/logrotate.d/codie as the app ships it (the agent keeps its log
/// open, hence copytruncate).
const LOGROTATE_CODIE: &str = "/var/log/codie/*.log {\n    weekly\n    rotate 8\n    compress\n    delaycompress\n    copytruncate\n    missingok\n    notifempty\n}\n";

const ENV_FILE: &str = "NODE_ENV=production\nJWT_SECRET=the-old-secret-0123456789\nPORT=3000\n";

/// Lines of the agent's log: API requests, a few warnings and errors.
fn log_lines(n: usize, errors_every: usize) -> String {
    (1..=n)
        .map(|i| {
            if errors_every > 0 && i % errors_every == 0 {
                format!(
                    "2026-11-30T08:{:02}:00Z ERROR db timeout on request {i}\n",
                    i % 60
                )
            } else if i % 50 == 0 {
                format!("2026-11-30T08:{:02}:00Z WARN slow query {i}\n", i % 60)
            } else {
                format!(
                    "2026-11-30T08:{:02}:00Z INFO API GET /v1/chat 200 {i}\n",
                    i % 60
                )
            }
        })
        .collect()
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn age(path: &Path, days: u64) {
    let when = SystemTime::now() - Duration::from_secs(days * 86_400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// The install's tree under `root`, the app's git remote, the database.
fn world(dir: &Path) -> World {
    let root = dir.join("root");
    let p = |abs: &str| root.join(abs.trim_start_matches('/'));

    // The app: its scripts, .env and a checkout tracking a remote that is
    // one commit ahead.
    let app = p("/srv/codie");
    write(&app.join("package.json"), PACKAGE_JSON);
    write(&app.join("package-lock.json"), PACKAGE_LOCK);
    write(&app.join(".gitignore"), ".env\n");
    write(&app.join(".env"), ENV_FILE);
    std::fs::set_permissions(app.join(".env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let remotes = dir.join("git");
    let bare = remotes.join("codie.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "--quiet", "--bare", "-b", "main"]);
    git(&app, &["init", "--quiet", "-b", "main"]);
    git(&app, &["add", "."]);
    git(&app, &["commit", "--quiet", "-m", "release 1.0.0"]);
    git(&app, &["push", "--quiet", bare.to_str().unwrap(), "main"]);
    let port = free_port();
    git(
        &app,
        &[
            "remote",
            "add",
            "origin",
            &format!("git://127.0.0.1:{port}/codie.git"),
        ],
    );
    git(&app, &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    git(&app, &["branch", "--quiet", "-u", "origin/main"]);
    let upstream = dir.join("upstream");
    git(
        dir,
        &[
            "clone",
            "--quiet",
            bare.to_str().unwrap(),
            upstream.to_str().unwrap(),
        ],
    );
    write(&upstream.join("HOTFIX"), "fix\n");
    git(&upstream, &["add", "HOTFIX"]);
    git(&upstream, &["commit", "--quiet", "-m", "hotfix 1.0.1"]);
    git(&upstream, &["push", "--quiet", "origin", "main"]);
    // git-daemon itself, not `git daemon` (whose child would outlive a kill).
    let child = Command::new("/usr/lib/git-core/git-daemon")
        .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", remotes.display()))
        .arg(&remotes)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git daemon (Debian package git)");
    let git_daemon = GitDaemon { child, port };
    assert!(
        wait_for(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .ok())
        .is_some(),
        "git daemon did not listen"
    );

    // Logs, with rotated logs of another program: one past 30 days.
    write(&p("/var/log/codie/agent.log"), &log_lines(200, 100));
    write(&p("/var/log/codie/worker.log.1.gz"), "old");
    age(&p("/var/log/codie/worker.log.1.gz"), 40);
    write(&p("/var/log/codie/worker.log.2.gz"), "recent");
    age(&p("/var/log/codie/worker.log.2.gz"), 3);
    write(&p("/etc/logrotate.d/codie"), LOGROTATE_CODIE);
    // Data: memory files and a cache to clear.
    write(
        &p("/var/lib/codie/memory/conversations.json"),
        "{\"n\": 1}\n",
    );
    write(&p("/var/lib/codie/cache/embeddings/a.bin"), "aaaa");
    write(&p("/var/lib/codie/cache/b.bin"), "bbbb");
    // nginx's webroot, for HTTP-01.
    std::fs::create_dir_all(p("/var/www/html")).unwrap();

    let db = pg().create_db("codie");
    pg().sql(
        &db,
        "CREATE TABLE memories (id serial PRIMARY KEY, body text);
         INSERT INTO memories (body) SELECT 'memory ' || g FROM generate_series(1, 2000) g;
         CREATE INDEX memories_body ON memories (body);
         CREATE TABLE interactions (id serial PRIMARY KEY, memory int REFERENCES memories(id), at timestamptz DEFAULT now());
         INSERT INTO interactions (memory) SELECT (g % 2000) + 1 FROM generate_series(1, 3000) g;
         DELETE FROM interactions WHERE id % 3 = 0;",
    );
    let agent = Supervisor::start(dir);
    World {
        root,
        db,
        agent,
        git: git_daemon,
    }
}

// ---------------------------------------------------------------------
// Rewriting the example
// ---------------------------------------------------------------------

/// Every string in `v` equal to `from` becomes `to`.
fn swap(v: &mut Toml, from: &str, to: &str) {
    match v {
        Toml::String(s) if s == from => *s = to.to_owned(),
        Toml::String(s) if s.starts_with(&format!("{from}/")) => {
            *s = format!("{to}{}", &s[from.len()..]);
        }
        Toml::Array(a) => a.iter_mut().for_each(|x| swap(x, from, to)),
        Toml::Table(t) => t.iter_mut().for_each(|(_, x)| swap(x, from, to)),
        _ => {}
    }
}

fn table<'a>(t: &'a mut Table, key: &str) -> &'a mut Table {
    t.entry(key)
        .or_insert_with(|| Toml::Table(Table::new()))
        .as_table_mut()
        .unwrap_or_else(|| panic!("`{key}` is not a table"))
}

fn strings(v: Option<&Toml>) -> Vec<String> {
    v.and_then(Toml::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces the job's `net` grant entry `from` by `to` (removing it when
/// `to` is None), keeping each entry once.
fn net(job: &mut Table, from: &str, to: Option<&str>) {
    let grants = table(job, "grants");
    let mut list = strings(grants.get("net"));
    assert!(
        list.iter().any(|e| e == from),
        "no net grant {from} in {list:?}"
    );
    list = list
        .into_iter()
        .filter_map(|e| {
            if e == from {
                to.map(str::to_owned)
            } else {
                Some(e)
            }
        })
        .collect();
    list.dedup();
    grants.insert(
        "net".into(),
        Toml::Array(list.into_iter().map(Toml::String).collect()),
    );
}

/// The connection to the test's PostgreSQL (a Unix socket only) instead
/// of 127.0.0.1:5432, and its database standing for `codie`.
fn to_test_pg(job: &mut Table, w: &World) {
    net(job, "127.0.0.1:5432", Some(&pg().unix_grant()));
    let config = table(job, "config");
    let mut conn = Table::new();
    conn.insert(
        "host".into(),
        Toml::String(pg().socket_dir.display().to_string()),
    );
    conn.insert("port".into(), Toml::Integer(pg().port.into()));
    conn.insert("user".into(), Toml::String("postgres".into()));
    config.insert("postgres".into(), Toml::Table(conn));
    let mut v = Toml::Table(std::mem::take(config));
    swap(&mut v, "codie", &w.db);
    if let Toml::Table(t) = v {
        *config = t;
    }
}

/// What every job gets: host paths under the root (guest paths stay),
/// the schedule moved where it never fires during the test.
fn common(job: &mut Table, w: &World) {
    if job.contains_key("schedule") {
        job.insert("schedule".into(), Toml::String(crate::util::far_off()));
    }
    let mut moved = Vec::new();
    if let Some(fs) = job
        .get_mut("grants")
        .and_then(|g| g.get_mut("fs"))
        .and_then(Toml::as_array_mut)
    {
        for grant in fs {
            let grant = grant.as_table_mut().expect("fs grant is a table");
            let host = grant["host"].as_str().expect("host").to_owned();
            assert!(
                host.starts_with('/'),
                "the example names absolute paths: {host}"
            );
            let new = w.at(&host).display().to_string();
            grant.insert("host".into(), Toml::String(new.clone()));
            moved.push((host, new));
        }
    }
    // A program sees host paths: the few it is given in its arguments
    // move with the grants.
    if let Some(args) = job
        .get_mut("config")
        .and_then(|c| c.get_mut("args"))
        .and_then(Toml::as_array_mut)
    {
        for arg in args.iter_mut() {
            if let Toml::String(s) = arg {
                for (host, new) in &moved {
                    *s = s.replace(&format!(" {host}/"), &format!(" {new}/"));
                }
            }
        }
    }
}

/// The example with the test's world in place of the install.
fn adapt(text: &str, w: &World, rows: &[Row]) -> String {
    let mut doc: Table = toml::from_str(text).expect("examples/runbook.toml parses");
    // The daemon's own places are the test's (Env adds them).
    for key in ["data_dir", "http"] {
        assert!(doc.remove(key).is_some(), "the example sets `{key}`");
    }
    let agent = format!("http://127.0.0.1:{}", w.agent.port);
    let mut all = Toml::Table(doc);
    // The agent and the LLM server are the test's HTTP service.
    swap(&mut all, "http://127.0.0.1:3000", &agent);
    swap(&mut all, "http://127.0.0.1:11434", &agent);
    let Toml::Table(mut doc) = all else {
        unreachable!()
    };
    // Webhooks go to the test's service (which refuses POST: delivered
    // nowhere, as intended).
    for n in doc
        .get_mut("notify")
        .and_then(Toml::as_array_mut)
        .expect("[[notify]]")
    {
        table_of(n).insert("url".into(), Toml::String(format!("{agent}/hook")));
    }
    for job in doc
        .get_mut("job")
        .and_then(Toml::as_array_mut)
        .expect("[[job]]")
    {
        let job = table_of(job);
        let name = job["name"].as_str().unwrap().to_owned();
        let row = rows
            .iter()
            .find(|r| r.job == name)
            .unwrap_or_else(|| panic!("job `{name}` of examples/runbook.toml has no row in tests/e2e/runbook.rs: add one saying how the test runs it"));
        common(job, w);
        (row.adapt)(job, w);
    }
    toml::to_string(&doc).expect("serialise the adapted example")
}

fn table_of(v: &mut Toml) -> &mut Table {
    v.as_table_mut().expect("a table")
}

// ---------------------------------------------------------------------
// The jobs, in the order they run
// ---------------------------------------------------------------------

fn record_text(rec: &Value) -> String {
    format!(
        "{} {} {}",
        rec["summary"].as_str().unwrap_or(""),
        rec["details"].as_str().unwrap_or(""),
        rec["error"].as_str().unwrap_or("")
    )
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            job: "health",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: |_, _, rec| assert!(record_text(rec).contains("2 checks"), "{rec:#}"),
        },
        Row {
            job: "db-ping",
            why: "psql reaches the test's server on its Unix socket",
            adapt: |job, w| {
                net(job, "127.0.0.1:5432", Some(&pg().unix_grant()));
                let config = table(job, "config");
                let sock = pg().socket_dir.display().to_string();
                let port = pg().port.to_string();
                let mut args = Toml::Array(
                    strings(config.get("args"))
                        .into_iter()
                        .map(Toml::String)
                        .collect(),
                );
                swap(&mut args, "127.0.0.1", &sock);
                swap(&mut args, "5432", &port);
                swap(&mut args, "codie", &w.db);
                config.insert("args".into(), args);
            },
            args: &[],
            expect: Expect::Ok,
            then: no_check,
        },
        Row {
            job: "log-audit",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: |env, w, _| {
                // The error rate climbs past 5 %: the next run says so.
                let log = w.at("/var/log/codie/agent.log");
                let mut text = std::fs::read_to_string(&log).unwrap();
                text.push_str(&log_lines(100, 5));
                std::fs::write(&log, text).unwrap();
                let rec = env.run_job("log-audit");
                assert_eq!(rec["status"], "warning", "{rec:#}");
                assert!(
                    record_text(&rec).contains("log-rate")
                        && record_text(&rec).contains("error-rate"),
                    "{rec:#}"
                );
            },
        },
        Row {
            job: "backup",
            why: "PostgreSQL on the test server's socket",
            adapt: to_test_pg,
            args: &[],
            expect: Expect::Ok,
            then: |_, w, _| {
                let names: Vec<String> = std::fs::read_dir(w.at("/backups"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                for (prefix, ext) in [("db-", ".dump"), ("memory-", ".tar.gz"), ("env-", ".copy")] {
                    assert!(
                        names
                            .iter()
                            .any(|n| n.starts_with(prefix) && n.ends_with(ext)),
                        "no {prefix}*{ext} in {names:?}"
                    );
                }
            },
        },
        Row {
            job: "restore-drill",
            why: "PostgreSQL on the test server's socket",
            adapt: to_test_pg,
            args: &[],
            expect: Expect::Ok,
            then: |_, _, rec| {
                let summary = rec["summary"].as_str().unwrap_or("");
                assert!(
                    summary.starts_with("restore drill: db: the dump of "),
                    "{rec:#}"
                );
                assert_eq!(
                    pg().sql(
                        "postgres",
                        "SELECT count(*) FROM pg_database WHERE datname LIKE 'opsd\\_verify\\_db\\_%'"
                    ),
                    "0"
                );
            },
        },
        Row {
            job: "verify-backups",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: |_, _, rec| {
                assert!(record_text(rec).contains("db-"), "{rec:#}");
            },
        },
        Row {
            job: "backup-monthly",
            why: "PostgreSQL on the test server's socket",
            adapt: to_test_pg,
            args: &[],
            expect: Expect::Ok,
            then: |env, w, rec| {
                let log = env.json(&["logs", rec["id"].as_str().unwrap(), "--json"]);
                let drill = format!("restore drill of db ({}):", w.db);
                assert!(
                    log.as_array().unwrap().iter().any(|l| {
                        let m = l["message"].as_str().unwrap_or("");
                        m.starts_with(&drill) && m.contains("counts match")
                    }),
                    "the monthly backup restores its dump: {log:#}"
                );
            },
        },
        Row {
            job: "daily-report",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: no_check,
        },
        Row {
            job: "fetch-updates",
            why: "the remote is the test's git daemon (git://) instead of GitHub",
            adapt: |job, w| {
                let to = format!("127.0.0.1:{}", w.git.port);
                net(job, "github.com:443", Some(&to));
            },
            args: &[],
            expect: Expect::Ok,
            then: no_check,
        },
        Row {
            job: "update-status",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: |_, _, rec| {
                assert!(
                    record_text(rec).contains("[behind 1]"),
                    "the fetched hotfix shows: {rec:#}"
                );
            },
        },
        Row {
            job: "metrics-daily",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: |_, _, rec| assert!(record_text(rec).contains("requests 1200"), "{rec:#}"),
        },
        Row {
            job: "rotate-logs",
            why: "",
            adapt: nothing,
            // The runbook's Common Tasks: `logrotate -f`.
            args: &["--set", "force=true"],
            expect: Expect::Ok,
            then: |_, w, _| {
                let rotated = w.at("/var/log/codie/agent.log.1");
                assert!(
                    std::fs::metadata(&rotated).is_ok_and(|m| m.len() > 0),
                    "{} rotated",
                    rotated.display()
                );
                let live = std::fs::metadata(w.at("/var/log/codie/agent.log")).unwrap();
                assert_eq!(live.len(), 0, "copytruncate leaves the live log empty");
            },
        },
        Row {
            job: "clean-logs",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: |_, w, _| {
                assert!(!w.at("/var/log/codie/worker.log.1.gz").exists());
                assert!(w.at("/var/log/codie/worker.log.2.gz").exists());
                assert!(w.at("/var/log/codie/agent.log.1").exists());
            },
        },
        Row {
            job: "vacuum",
            why: "PostgreSQL on the test server's socket",
            adapt: to_test_pg,
            args: &[],
            expect: Expect::Ok,
            then: no_check,
        },
        Row {
            job: "clear-cache",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: |_, w, _| {
                let cache = w.at("/var/lib/codie/cache");
                let left: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
                assert!(left.is_empty(), "cache emptied: {left:?}");
            },
        },
        Row {
            job: "npm-outdated",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: no_check,
        },
        Row {
            job: "app-report-weekly",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: |_, w, _| report_file(w, "week-", "weekly report"),
        },
        Row {
            job: "weekly-report",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: no_check,
        },
        Row {
            job: "security-audit",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::OkOrWarning(
                "its apt check reads this machine's package lists: pending security updates here are a P2 finding",
            ),
            then: |_, _, rec| {
                let all = record_text(rec);
                assert!(
                    !all.contains("secret-readable") && !all.contains("backup-readable"),
                    ".env and the backups are private: {rec:#}"
                );
            },
        },
        Row {
            job: "renew-certs",
            why: "Pebble instead of Let's Encrypt (trusting its TLS CA); no systemd here to reload nginx, so no deploy hook",
            adapt: |job, _| {
                let p = pebble();
                net(job, "https://acme-v02.api.letsencrypt.org", Some(&p.origin));
                net(job, "unix:/run/systemd/private", None);
                let grants = table(job, "grants");
                grants.remove("exec");
                grants.insert(
                    "ca".into(),
                    Toml::Array(vec![Toml::String(p.tls_ca.display().to_string())]),
                );
                let config = table(job, "config");
                config.remove("deploy_hook");
                table(config, "acme").insert("directory".into(), Toml::String(p.directory.clone()));
            },
            args: &[],
            expect: Expect::Ok,
            then: |_, w, rec| {
                assert!(record_text(rec).contains("renewed 1 of 1"), "{rec:#}");
                assert!(
                    w.at("/etc/ssl/codie/codie.example.com/fullchain.pem")
                        .exists()
                );
                assert!(
                    w.at("/etc/ssl/codie/codie.example.com/privkey.pem")
                        .exists()
                );
            },
        },
        Row {
            job: "performance-audit",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: no_check,
        },
        Row {
            job: "app-security-audit",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: no_check,
        },
        Row {
            job: "security-scan",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: no_check,
        },
        Row {
            job: "app-report-monthly",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: |_, w, _| report_file(w, "month-", "monthly report"),
        },
        Row {
            job: "monthly-report",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: no_check,
        },
        Row {
            job: "reindex",
            why: "PostgreSQL on the test server's socket",
            adapt: to_test_pg,
            args: &[],
            expect: Expect::Ok,
            then: no_check,
        },
        Row {
            job: "rotate-jwt-secret",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: |_, w, rec| {
                let env_file = w.at("/srv/codie/.env");
                let text = std::fs::read_to_string(&env_file).unwrap();
                let secret = text
                    .lines()
                    .find_map(|l| l.strip_prefix("JWT_SECRET="))
                    .expect("JWT_SECRET kept");
                assert!(
                    secret.len() >= 80 && secret != "the-old-secret-0123456789",
                    "{text}"
                );
                assert!(text.starts_with("NODE_ENV=production\n") && text.ends_with("PORT=3000\n"));
                let mode = std::fs::metadata(&env_file).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
                assert!(
                    !rec.to_string().contains(secret),
                    "the secret is in the record"
                );
            },
        },
        Row {
            job: "restart-agent",
            why: "no systemd as PID 1 here: the agent's supervisor restarts it instead, asked through a pinned curl (as tests/e2e/service_restart.rs)",
            adapt: |job, w| {
                let sock = w.agent.socket.display().to_string();
                let restart = [
                    "curl",
                    "-sSf",
                    "--unix-socket",
                    &sock,
                    "-X",
                    "POST",
                    "http://supervisor/restart",
                ]
                .map(|s| Toml::String(s.to_owned()));
                net(
                    job,
                    "unix:/run/systemd/private",
                    Some(&format!("unix:{sock}")),
                );
                let grants = table(job, "grants");
                let mut pinned = Table::new();
                pinned.insert("program".into(), Toml::String("curl".into()));
                pinned.insert("args".into(), Toml::Array(restart[1..].to_vec()));
                grants.insert("exec".into(), Toml::Array(vec![Toml::Table(pinned)]));
                let config = table(job, "config");
                assert!(config.remove("unit").is_some());
                config.insert("command".into(), Toml::Array(restart.to_vec()));
                config.insert("interval".into(), Toml::String("200ms".into()));
            },
            args: &[],
            expect: Expect::Ok,
            then: |_, w, _| assert_eq!(w.agent.generation(), 2, "the agent was restarted once"),
        },
        Row {
            job: "diagnose",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: no_check,
        },
        Row {
            job: "config-validate",
            why: "",
            adapt: nothing,
            args: &[],
            expect: Expect::Ok,
            then: |_, _, rec| assert!(record_text(rec).contains("config ok"), "{rec:#}"),
        },
    ]
}

/// The app's report, written by the job's shell redirection.
fn report_file(w: &World, prefix: &str, content: &str) {
    let reports: Vec<PathBuf> = std::fs::read_dir(w.at("/reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".txt"))
        })
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let text = std::fs::read_to_string(&reports[0]).unwrap();
    assert!(text.contains(content), "{text}");
}

#[test]
fn the_runbook_example_checks_and_every_job_runs_green_against_real_services() {
    let rows = rows();
    let original = std::fs::read_to_string(example()).expect("read examples/runbook.toml");
    let parsed: Table = toml::from_str(&original).expect("examples/runbook.toml parses");
    let jobs: Vec<String> = parsed["job"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_owned())
        .collect();
    // Every job has a row, every row a job, each once.
    let missing: Vec<&String> = jobs
        .iter()
        .filter(|j| !rows.iter().any(|r| r.job == j.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "jobs of examples/runbook.toml with no row in tests/e2e/runbook.rs: {missing:?}"
    );
    let stale: Vec<&str> = rows
        .iter()
        .map(|r| r.job)
        .filter(|r| !jobs.iter().any(|j| j == r))
        .collect();
    assert!(
        stale.is_empty(),
        "rows for jobs the example no longer has: {stale:?}"
    );
    assert_eq!(
        jobs.len(),
        rows.len(),
        "a job twice in the example or the rows"
    );
    // Each job says which runbook lines it automates.
    for name in &jobs {
        let at = original
            .find(&format!("name = \"{name}\""))
            .expect("job name in the text");
        let block_start = original[..at].rfind("[[job]]").unwrap();
        let comment: Vec<&str> = original[..block_start]
            .lines()
            .rev()
            .take_while(|l| l.starts_with('#'))
            .collect();
        assert!(
            comment.iter().any(|l| l.starts_with("# runbook: ")),
            "job `{name}` has no `# runbook: Section > ... > line` comment right above it"
        );
    }

    // The world stands under /var/tmp: a job with a private /tmp may name
    // nothing under /tmp.
    let env = Env::new_in(Path::new("/var/tmp"), "");
    let w = world(env.dir.path());
    let adapted = adapt(&original, &w, &rows);
    env.write_config(&adapted);
    for r in &rows {
        if !r.why.is_empty() {
            eprintln!("runbook test: {} adapted: {}", r.job, r.why);
        }
        if let Expect::OkOrWarning(why) = r.expect {
            eprintln!("runbook test: {} may end `warning`: {why}", r.job);
        }
    }

    let check = env.run(&["check"]);
    let said = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);
    assert_eq!(
        check.status.code(),
        Some(0),
        "opsd check:\n{}\n--- config\n{adapted}",
        text(&check)
    );
    assert!(
        !said.contains(": error:") && !said.contains(": warning:"),
        "opsd check found problems:\n{said}"
    );

    // Every job runs, whatever the one before did; the failures are told
    // together at the end.
    let daemon = env.daemon();
    let mut failures = Vec::new();
    for row in &rows {
        let mut args = vec!["run", row.job, "--json"];
        args.extend_from_slice(row.args);
        let out = env.run(&args);
        let Ok(rec) = serde_json::from_slice::<Value>(&out.stdout) else {
            failures.push(format!("opsd run {}: not JSON: {}", row.job, text(&out)));
            continue;
        };
        let status = rec["status"].as_str().unwrap_or("");
        eprintln!(
            "runbook test: {} ended {status}: {}",
            row.job,
            rec["summary"].as_str().unwrap_or("")
        );
        let good = match row.expect {
            Expect::Ok => status == "ok",
            Expect::OkOrWarning(_) => status == "ok" || status == "warning",
        };
        if !good {
            let logs = text(&env.run(&["logs", rec["id"].as_str().unwrap_or("")]));
            failures.push(format!("job {} ended {status}: {rec:#}\n{logs}", row.job));
            continue;
        }
        let checked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (row.then)(&env, &w, &rec)));
        if checked.is_err() {
            failures.push(format!(
                "job {}: what it did is wrong (see the panic above)",
                row.job
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} jobs failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );

    // The monitoring table's alerts are watched, none active: the agent
    // is up and no threshold held for its `for`.
    let status = env.json(&["status", "--json"]);
    let alerts = status["alerts"].as_array().expect("alerts in status");
    for alert in parsed["alert"].as_array().expect("[[alert]]") {
        let name = alert["name"].as_str().unwrap();
        let seen = alerts
            .iter()
            .find(|a| a["alert"] == name)
            .unwrap_or_else(|| panic!("alert {name} not in opsd status: {status:#}"));
        if name == "agent-down" {
            assert_eq!(seen["active"], false, "{seen:#}");
        }
    }
    assert!(daemon.stop().success());
}
