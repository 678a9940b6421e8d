//! The built-in `command` plugin through a live daemon: a granted program
//! runs with its exit code, duration and output tail on record; what is
//! not granted is refused; floods are capped; secrets never reach the
//! record. And `opsd run --set`, with and without a daemon.

use crate::util::{Env, metric, text};
use serde_json::Value;

/// A command job: `config` is its [job.config], `grants` its [job.grants].
fn job(name: &str, grants: &str, config: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"command\"\nschedule = \"{}\"\ntimeout = \"30s\"\n\n[job.grants]\n{grants}\n\n[job.config]\n{config}\n\n",
        crate::util::far_off()
    )
}

fn ran(env: &Env, job: &str, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["run", job, "--json"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    let rec = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("opsd run {job}: not JSON ({e}): {}", text(&out)));
    (out.status.code(), rec)
}

#[test]
fn a_granted_program_runs_and_its_exit_and_output_are_recorded() {
    let env = Env::new(&[
        job("seq", "exec = [\"seq\"]", "program = \"seq\"\nargs = [\"1\", \"100\"]\ntail_lines = 3"),
        job(
            "exit3",
            "exec = [\"sh\"]",
            "program = \"sh\"\nargs = [\"-c\", \"echo working; echo 'disk on fire' >&2; exit 3\"]",
        ),
        job(
            "exit3-ok",
            "exec = [\"sh\"]",
            "program = \"sh\"\nargs = [\"-c\", \"exit 3\"]\nsuccess_codes = [0, 3]",
        ),
        job(
            "fail-on",
            "exec = [\"sh\"]",
            "program = \"sh\"\nargs = [\"-c\", \"echo ok; echo 'ERROR: replica lag 300s'\"]\nfail_on = \"(?i)^error\"",
        ),
        job(
            "ok-if",
            "exec = [\"sh\"]",
            "program = \"sh\"\nargs = [\"-c\", \"echo 'not yet'\"]\nok_if = \"^done$\"",
        ),
        job(
            "stdin",
            "exec = [\"wc\"]",
            "program = \"wc\"\nargs = [\"-l\"]\nstdin = \"a\\nb\\nc\\n\"\nok_if = \"^\\\\s*3$\"",
        ),
        job(
            "slow",
            "exec = [\"sleep\"]",
            "program = \"sleep\"\nargs = [\"20\"]\ntimeout = \"1s\"",
        ),
        job(
            "cwd",
            "exec = [\"ls\"]\nfs = [{ host = \"work\", guest = \"/work\", access = \"ro\", create = true }]",
            "program = \"ls\"\ncwd = \"/work\"",
        ),
    ]
    .concat());
    std::fs::create_dir_all(env.path("work")).unwrap();
    std::fs::write(env.path("work/marker-file"), "x").unwrap();
    let check = env.run(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    assert!(
        !String::from_utf8_lossy(&check.stdout).contains("does not say it runs"),
        "{}",
        text(&check)
    );
    let _daemon = env.daemon();

    let (code, rec) = ran(&env, "seq", &[]);
    assert_eq!(
        (code, rec["status"].as_str()),
        (Some(0), Some("ok")),
        "{rec:#}"
    );
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .starts_with("seq 1 100 exited with 0 after"),
        "{rec:#}"
    );
    let details = rec["details"].as_str().unwrap();
    assert!(
        details.contains("98\n99\n100") && details.contains("97 lines before it left out"),
        "{details}"
    );
    assert_eq!(metric(&rec, "exit_code"), 0.0);
    assert!(metric(&rec, "duration_seconds") >= 0.0);
    assert_eq!(metric(&rec, "stdout_bytes"), 292.0);

    let (code, rec) = ran(&env, "exit3", &[]);
    assert_eq!(
        (code, rec["status"].as_str()),
        (Some(1), Some("failed")),
        "{rec:#}"
    );
    let summary = rec["summary"].as_str().unwrap();
    assert!(
        summary.contains("exited with 3") && summary.ends_with(": disk on fire"),
        "{summary}"
    );
    assert_eq!(metric(&rec, "exit_code"), 3.0);
    let logs = env.run(&["logs", rec["id"].as_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("stderr: disk on fire"),
        "{}",
        text(&logs)
    );

    assert_eq!(ran(&env, "exit3-ok", &[]).1["status"], "ok");

    let (_, rec) = ran(&env, "fail-on", &[]);
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .contains("matched fail_on `(?i)^error`: ERROR: replica lag 300s"),
        "{rec:#}"
    );

    let (_, rec) = ran(&env, "ok-if", &[]);
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .contains("never matched ok_if `^done$`"),
        "{rec:#}"
    );

    let (_, rec) = ran(&env, "stdin", &[]);
    assert_eq!(rec["status"], "ok", "{rec:#}");

    let started = std::time::Instant::now();
    let (_, rec) = ran(&env, "slow", &[]);
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert!(
        rec["error"]
            .as_str()
            .unwrap()
            .contains("time limit of 1000 ms"),
        "{rec:#}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));

    let (_, rec) = ran(&env, "cwd", &[]);
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert!(
        rec["details"].as_str().unwrap().contains("marker-file"),
        "{rec:#}"
    );
}

#[test]
fn what_the_grants_do_not_allow_is_refused() {
    let env = Env::new(
        &[
            // Not granted at all.
            job(
                "ungranted",
                "exec = [\"true\"]",
                "program = \"sh\"\nargs = [\"-c\", \"id\"]",
            ),
            // Path trickery around a granted name.
            job(
                "dotdot",
                "exec = [\"sh\"]",
                "program = \"/usr/bin/../bin/sh\"\nargs = [\"-c\", \"id\"]",
            ),
            // An allowed program asked to start a shell for the job.
            job(
                "smuggle",
                "exec = [\"env\"]",
                "program = \"env\"\nargs = [\"sh\", \"-c\", \"echo escaped\"]",
            ),
            // Pinned arguments stay pinned.
            job(
                "pinned",
                "exec = [{ program = \"sh\", args = [\"-c\", \"true\"] }]",
                "program = \"sh\"\nargs = [\"-c\", \"cat /etc/shadow\"]",
            ),
            // A variable the env grant does not name.
            job(
                "env",
                "exec = [\"true\"]",
                "program = \"true\"\nenv = { LD_PRELOAD = \"/tmp/x.so\" }",
            ),
        ]
        .concat(),
    );
    let check = env.run(&["check"]);
    let said = String::from_utf8_lossy(&check.stdout).into_owned();
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(
        said.contains("job `ungranted`: error: config program `sh` is not in the job's exec grant"),
        "{said}"
    );
    let _daemon = env.daemon();
    for (name, needle) in [
        ("ungranted", "program `sh` is not in the job's exec grant"),
        (
            "dotdot",
            "program `/usr/bin/../bin/sh` is not in the job's exec grant",
        ),
        ("pinned", "pins it to args = [\"-c\", \"true\"]"),
        ("env", "`LD_PRELOAD` is not in the job's env grant"),
    ] {
        let (code, rec) = ran(&env, name, &[]);
        assert_eq!(code, Some(1), "{name}: {rec:#}");
        assert_eq!(rec["status"], "failed", "{name}: {rec:#}");
        let error = rec["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{name}: {error}");
    }
    let (_, rec) = ran(&env, "smuggle", &[]);
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let all = rec.to_string();
    assert!(
        !rec["details"]
            .as_str()
            .unwrap_or_default()
            .contains("escaped"),
        "{all}"
    );
    let error = rec["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("grant violation: confined `env` tried to run")
            && error.contains("which the job's exec grant (env) does not name"),
        "{error}"
    );
}

#[test]
fn floods_are_capped_and_secrets_never_reach_the_record() {
    let secret = "tok-5ecret-value-42";
    let env = Env::new(&[
        job(
            "flood",
            "exec = [\"seq\"]\nlimits = { output = \"1M\" }",
            "program = \"seq\"\nargs = [\"1\", \"3000000\"]\nfail_on = \"never-printed\"",
        ),
        job(
            "leak",
            "exec = [\"sh\"]\nenv = [\"OPSD_TEST_TOKEN\"]",
            "program = \"sh\"\nargs = [\"-c\", \"echo token=$OPSD_TEST_TOKEN; printf '%s' \\\"$OPSD_TEST_TOKEN\\\" | rev >&2; echo $OPSD_TEST_TOKEN >&2; exit 1\"]\nfail_on = \"tok-\"",
        ),
    ]
    .concat());
    let _daemon = env.daemon_with_env(&[("OPSD_TEST_TOKEN", secret)]);
    let (_, rec) = ran(&env, "flood", &[]);
    assert_eq!(rec["status"], "warning", "{rec:#}");
    assert_eq!(metric(&rec, "output_truncated"), 1.0);
    assert_eq!(metric(&rec, "stdout_bytes"), 1048576.0);
    let details = rec["details"].as_str().unwrap();
    assert!(details.len() < 20_000, "{} bytes of details", details.len());
    assert!(details.contains("output cap"), "{details}");
    // The tail is the output's real end, not where the capture stopped.
    assert!(details.contains("\n2999999\n3000000"), "{details}");

    let (_, rec) = ran(&env, "leak", &[]);
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let all = rec.to_string();
    assert!(!all.contains(secret), "{all}");
    assert!(all.contains("token=[OPSD_TEST_TOKEN]"), "{all}");
    let logs = env.run(&["logs", rec["id"].as_str().unwrap(), "--json"]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("[OPSD_TEST_TOKEN]") && !logs.contains(secret),
        "{logs}"
    );
}

#[test]
fn a_manual_run_overrides_config_for_itself_only() {
    let env = Env::new(&job(
        "greet",
        "exec = [\"sh\"]",
        "program = \"sh\"\nargs = [\"-c\", \"echo configured\"]",
    ));
    let daemon = env.daemon();
    let (code, rec) = ran(
        &env,
        "greet",
        &[
            "--set",
            r#"args=["-c", "echo overridden"]"#,
            "--set",
            "tail_lines=5",
        ],
    );
    assert_eq!(code, Some(0), "{rec:#}");
    assert!(
        rec["details"].as_str().unwrap().contains("overridden"),
        "{rec:#}"
    );
    assert_eq!(rec["overrides"]["tail_lines"], 5, "{rec:#}");
    assert_eq!(rec["overrides"]["args"][1], "echo overridden", "{rec:#}");
    let logs = env.run(&["logs", rec["id"].as_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&logs.stdout)
            .contains("differs from the file's (opsd run --set): args="),
        "{}",
        text(&logs)
    );
    // --set reaches config, and the grants still bind what it says.
    let (code, rec) = ran(&env, "greet", &["--set", "program=/usr/bin/id"]);
    assert_eq!(
        (code, rec["status"].as_str()),
        (Some(1), Some("failed")),
        "{rec:#}"
    );
    assert!(
        rec["error"]
            .as_str()
            .unwrap()
            .contains("program `/usr/bin/id` is not in the job's exec grant"),
        "{rec:#}"
    );
    let history = env.run(&["history"]);
    let listed = String::from_utf8_lossy(&history.stdout);
    assert!(
        listed.contains("[--set args,tail_lines]") && listed.contains("[--set program]"),
        "{}",
        text(&history)
    );
    // The next run is the configured one again.
    let (_, rec) = ran(&env, "greet", &[]);
    assert!(
        rec["details"].as_str().unwrap().contains("configured"),
        "{rec:#}"
    );
    assert!(rec.get("overrides").is_none(), "{rec:#}");

    let refused = |env: &Env, set: &str, needle: &str| {
        let out = env.run(&["run", "greet", "--set", set]);
        assert_eq!(out.status.code(), Some(2), "{set}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{set}: {err}");
    };
    let all_refused = |env: &Env| {
        refused(
            env,
            "grants.exec=[\"bash\"]",
            "--set grants.exec: `grants` is not a key of the job's [job.config]",
        );
        refused(
            env,
            "schedule=* * * * *",
            "never the job's grants or settings",
        );
        refused(
            env,
            "tail_lines=many",
            "--set tail_lines: plugin command's config schema refuses the result",
        );
        refused(env, "args", "has no `=`");
    };
    all_refused(&env);
    // Following the run's log through the daemon: the same.
    let out = env.run(&[
        "run",
        "greet",
        "--follow",
        "--json",
        "--set",
        "args=[\"-c\", \"echo followed\"]",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("followed"),
        "{}",
        text(&out)
    );
    let out = env.run(&["run", "greet", "--follow", "--set", "grants.exec=[]"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`grants` is not a key"),
        "{}",
        text(&out)
    );
    // Without the daemon: the same answers, and --set works.
    daemon.stop();
    all_refused(&env);
    let (code, rec) = ran(&env, "greet", &["--set", "args=[\"-c\", \"echo local\"]"]);
    assert_eq!(code, Some(0), "{rec:#}");
    assert!(
        rec["details"].as_str().unwrap().contains("local"),
        "{rec:#}"
    );
    assert!(rec["overrides"]["args"].is_array(), "{rec:#}");
}
