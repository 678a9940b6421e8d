//! Scheduling policies, driven by an injected clock: the real scheduler,
//! store, runtime and wasm plugins, with time moved by the test instead of
//! waited for. Catch-up after three days down, overlap, retries, jitter,
//! retention and DST nights.

use crate::util::Env;
use chrono::{DateTime, Duration, Utc};
use opsd::clock::ManualClock;
use opsd::config::Config;
use opsd::ops::Ops;
use opsd::record::{RunRecord, RunStatus, Trigger};
use opsd::store::HistoryQuery;
use std::sync::Arc;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// A world with its scheduler running on a manual clock.
struct Sim {
    env: Env,
    clock: Arc<ManualClock>,
    ops: Arc<Ops>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Sim {
    /// Opens a world whose jobs all run the hostile test guest.
    fn open(jobs: &str, at: DateTime<Utc>) -> Sim {
        let env = Env::new(jobs);
        env.install_guest("opsd-test-hostile");
        let clock = ManualClock::new(at);
        let config = Config::load(&env.path("opsd.toml")).expect("config");
        let ops = Arc::new(Ops::open(config, clock.clone()).expect("open ops"));
        Sim {
            env,
            clock,
            ops,
            stop: None,
            task: None,
        }
    }

    /// Starts the scheduler and waits until it has computed every job's
    /// first slot, so moving the clock afterwards is seen as time passing.
    async fn start(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let ops = self.ops.clone();
        self.task = Some(tokio::spawn(async move {
            opsd::scheduler::run(
                ops,
                async {
                    let _ = rx.await;
                },
                std::time::Duration::from_secs(10),
            )
            .await
        }));
        self.stop = Some(tx);
        for _ in 0..200 {
            let ready = self.ops.config().jobs.iter().all(|j| {
                self.ops
                    .store()
                    .job_state(&j.name)
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.definition.as_deref() == Some(j.definition_hash().as_str()))
            });
            if ready {
                // Compiled before the clock moves: a compile takes real
                // time, in which a racing simulated clock moves minutes,
                // and a run's `started` is when its plugin starts.
                if let Err(e) = self.ops.registry().find("test-hostile").await {
                    panic!("loading the test guest: {e}");
                }
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the scheduler did not start");
    }

    /// Closes the store and opens it again with the config on disk (a
    /// restart, minus the process).
    fn reopen(self) -> Sim {
        let Sim {
            env, clock, ops, ..
        } = self;
        drop(ops);
        let config = Config::load(&env.path("opsd.toml")).expect("config");
        // sled lets go of its file lock from a background thread after the
        // last handle is dropped: wait for that, as a restart would.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let ops = loop {
            match Ops::open(config.clone(), clock.clone()) {
                Ok(ops) => break Arc::new(ops),
                Err(e)
                    if format!("{e:#}").contains("in use by another process")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("reopen ops: {e:#}"),
            }
        };
        Sim {
            env,
            clock,
            ops,
            stop: None,
            task: None,
        }
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("scheduler task").expect("scheduler");
        }
    }

    /// Moves the clock and gives the scheduler a moment to act on it.
    async fn set(&self, at: DateTime<Utc>) {
        self.clock.set(at);
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    }

    /// A job's records, oldest first.
    fn runs(&self, job: &str) -> Vec<RunRecord> {
        let mut v = self
            .ops
            .history(&HistoryQuery {
                job: Some(job.into()),
                ..Default::default()
            })
            .unwrap();
        v.reverse();
        v
    }

    /// Waits (real time) until `job` has `n` finished records.
    async fn wait_runs(&self, job: &str, n: usize) -> Vec<RunRecord> {
        for _ in 0..400 {
            let runs = self.runs(job);
            if runs
                .iter()
                .filter(|r| r.status != RunStatus::Running)
                .count()
                >= n
            {
                return runs;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "job {job} did not reach {n} finished runs: {:#?}",
            self.runs(job)
        );
    }
}

fn job(name: &str, schedule: &str, action: &str, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"test-hostile\"\nschedule = \"{schedule}\"\n{extra}\n[job.config]\n{action}\n\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_after_three_days_down_for_each_policy() {
    let jobs = [
        job(
            "skip",
            "0 * * * *",
            "action = \"ok\"",
            "catch_up = \"skip\"",
        ),
        job(
            "latest",
            "0 * * * *",
            "action = \"ok\"",
            "catch_up = \"latest\"",
        ),
        job("all", "0 * * * *", "action = \"ok\"", "catch_up = \"all\""),
        job(
            "all-deadline",
            "0 * * * *",
            "action = \"ok\"",
            "catch_up = \"all\"\ncatch_up_deadline = \"3h\"",
        ),
    ]
    .concat();
    let last_fire = t("2026-11-25T10:00:00Z");
    let mut sim = Sim::open(&jobs, t("2026-11-28T10:30:00Z"));
    // The daemon last fired these jobs three days ago, then went down.
    for j in &sim.ops.config().jobs {
        sim.ops
            .store()
            .update_job_state(&j.name, |s| {
                s.last_fire = Some(last_fire);
                s.definition = Some(j.definition_hash());
            })
            .unwrap();
    }
    sim.start().await;

    // 72 hourly slots passed (11:00 on the 25th to 10:00 on the 28th).
    let all = sim.wait_runs("all", 72).await;
    assert_eq!(all.len(), 72);
    assert!(
        all.iter()
            .all(|r| r.trigger == Trigger::CatchUp && r.status == RunStatus::Ok)
    );
    let slots: Vec<_> = all.iter().map(|r| r.scheduled).collect();
    assert_eq!(slots.first(), Some(&t("2026-11-25T11:00:00Z")));
    assert_eq!(slots.last(), Some(&t("2026-11-28T10:00:00Z")));
    assert!(
        slots.windows(2).all(|w| w[1] - w[0] == Duration::hours(1)),
        "oldest first, each once"
    );

    let latest = sim.wait_runs("latest", 1).await;
    assert_eq!(latest.len(), 1);
    assert_eq!(
        (latest[0].scheduled, latest[0].trigger),
        (t("2026-11-28T10:00:00Z"), Trigger::CatchUp)
    );

    let deadline = sim.wait_runs("all-deadline", 3).await;
    assert_eq!(
        deadline.iter().map(|r| r.scheduled).collect::<Vec<_>>(),
        [
            t("2026-11-28T08:00:00Z"),
            t("2026-11-28T09:00:00Z"),
            t("2026-11-28T10:00:00Z")
        ]
    );

    assert!(sim.runs("skip").is_empty());
    let state = sim.ops.store().job_state("skip").unwrap().unwrap();
    assert_eq!(state.missed_total, 72);
    assert_eq!(state.next_fire, Some(t("2026-11-28T11:00:00Z")));

    // Then the schedule carries on as usual, once per slot.
    sim.set(t("2026-11-28T11:00:00Z")).await;
    let skip = sim.wait_runs("skip", 1).await;
    assert_eq!(
        (skip[0].scheduled, skip[0].trigger),
        (t("2026-11-28T11:00:00Z"), Trigger::Schedule)
    );
    assert_eq!(sim.wait_runs("latest", 2).await.len(), 2);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_policies_with_a_slow_plugin() {
    let slow = "action = \"sleep\"\nseconds = 3";
    let jobs = [
        job("forbid", "* * * * *", slow, "overlap = \"forbid\""),
        job("allow", "* * * * *", slow, "overlap = \"allow\""),
        job("replace", "* * * * *", slow, "overlap = \"replace\""),
        job("queue", "* * * * *", slow, "overlap = \"queue\""),
    ]
    .concat();
    let mut sim = Sim::open(&jobs, t("2026-11-28T10:00:30Z"));
    sim.start().await;
    sim.set(t("2026-11-28T10:01:00Z")).await;
    // All four first runs are going (each sleeps 3 s of real time).
    for _ in 0..100 {
        if sim.ops.running().values().map(Vec::len).sum::<usize>() == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sim.set(t("2026-11-28T10:02:00Z")).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let running = sim.ops.running();
    assert_eq!(
        running.get("allow").map(Vec::len),
        Some(2),
        "allow runs both at once"
    );
    assert_eq!(
        running.get("queue").map(Vec::len),
        Some(1),
        "queue waits its turn"
    );

    let forbid = sim.wait_runs("forbid", 2).await;
    assert_eq!(forbid[1].status, RunStatus::Skipped, "{forbid:#?}");
    assert!(
        forbid[1]
            .summary
            .contains("still going (overlap = \"forbid\")"),
        "{}",
        forbid[1].summary
    );
    assert_eq!(forbid[1].scheduled, t("2026-11-28T10:02:00Z"));
    let forbid = sim.wait_runs("forbid", 2).await;
    assert_eq!(forbid[0].status, RunStatus::Ok);

    let allow = sim.wait_runs("allow", 2).await;
    assert!(
        allow.iter().all(|r| r.status == RunStatus::Ok),
        "{allow:#?}"
    );

    let replace = sim.wait_runs("replace", 2).await;
    assert_eq!(replace[0].status, RunStatus::Cancelled, "{replace:#?}");
    assert!(
        replace[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("replaced by a newer run")
    );
    assert_eq!(replace[1].status, RunStatus::Ok);

    let queue = sim.wait_runs("queue", 2).await;
    assert!(
        queue.iter().all(|r| r.status == RunStatus::Ok),
        "{queue:#?}"
    );
    let created = |r: &RunRecord| ulid::Ulid::from_string(&r.id).unwrap().timestamp_ms();
    assert!(
        created(&queue[1]) >= created(&queue[0]) + 2_500,
        "the queued run started only after the first (which sleeps 3 s) finished"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_exponentially_up_to_the_cap() {
    let jobs = job(
        "flaky",
        "0 * * * *",
        "action = \"fail\"",
        "retries = 3\nretry_backoff = \"1m\"\nretry_backoff_max = \"3m\"",
    );
    let mut sim = Sim::open(&jobs, t("2026-11-28T09:59:00Z"));
    sim.start().await;
    sim.set(t("2026-11-28T10:00:00Z")).await;
    sim.wait_runs("flaky", 1).await;
    sim.set(t("2026-11-28T10:00:59Z")).await;
    assert_eq!(sim.runs("flaky").len(), 1, "no retry before the backoff");
    sim.set(t("2026-11-28T10:01:00Z")).await;
    sim.wait_runs("flaky", 2).await;
    sim.set(t("2026-11-28T10:03:00Z")).await;
    sim.wait_runs("flaky", 3).await;
    sim.set(t("2026-11-28T10:05:59Z")).await;
    assert_eq!(
        sim.runs("flaky").len(),
        3,
        "the third wait is capped at 3m, not shorter"
    );
    sim.set(t("2026-11-28T10:06:00Z")).await;
    let runs = sim.wait_runs("flaky", 4).await;
    sim.set(t("2026-11-28T10:30:00Z")).await;
    assert_eq!(
        sim.runs("flaky").len(),
        4,
        "retries = 3 means four attempts in all"
    );
    assert_eq!(
        runs.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(
        runs.iter().map(|r| r.trigger).collect::<Vec<_>>(),
        [
            Trigger::Schedule,
            Trigger::Retry,
            Trigger::Retry,
            Trigger::Retry
        ]
    );
    assert!(
        runs.iter()
            .all(|r| r.scheduled == t("2026-11-28T10:00:00Z") && r.status == RunStatus::Failed)
    );
    assert_eq!(
        runs.iter().map(|r| r.started).collect::<Vec<_>>(),
        [
            t("2026-11-28T10:00:00Z"),
            t("2026-11-28T10:01:00Z"),
            t("2026-11-28T10:03:00Z"),
            t("2026-11-28T10:06:00Z")
        ]
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_delays_within_bounds_and_fixed_jitter_is_stable() {
    let jobs = [
        job(
            "random",
            "*/10 * * * *",
            "action = \"ok\"",
            "jitter = \"2m\"",
        ),
        job(
            "fixed",
            "*/10 * * * *",
            "action = \"ok\"",
            "jitter = \"2m\"\njitter_fixed = true",
        ),
    ]
    .concat();
    let start = t("2026-11-28T09:59:59Z");
    let mut sim = Sim::open(&jobs, start);
    sim.start().await;
    // Walk four slots in 5-second steps.
    let mut now = start;
    while now < t("2026-11-28T10:35:00Z") {
        now += Duration::seconds(5);
        sim.clock.set(now);
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }
    let random = sim.wait_runs("random", 4).await;
    let fixed = sim.wait_runs("fixed", 4).await;
    for r in random.iter().chain(&fixed) {
        let delay = r.started - r.scheduled;
        assert!(
            delay >= Duration::zero() && delay < Duration::minutes(2) + Duration::seconds(5),
            "{r:#?}"
        );
    }
    // The simulated clock races real time (5 s every 15 ms), so on a
    // loaded machine a run may start a step or two after its instant: a
    // fixed jitter's delays agree within 10 s. Four random draws over two
    // minutes all land that close about once in 500.
    let delays: Vec<i64> = fixed
        .iter()
        .map(|r| (r.started - r.scheduled).num_seconds())
        .collect();
    let spread = delays.iter().max().unwrap() - delays.iter().min().unwrap();
    assert!(
        spread <= 10,
        "a fixed jitter is the same every time: {delays:?}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_applied_at_start_and_periodically() {
    let at = t("2026-11-28T10:00:30Z");
    let mut sim = Sim::open(&job("r", "* * * * *", "action = \"ok\"", ""), at);
    sim.start().await;
    for i in 1..=6 {
        sim.set(at + Duration::minutes(i)).await;
        sim.wait_runs("r", i as usize).await;
    }
    sim.stop().await;
    assert_eq!(sim.runs("r").len(), 6);

    // A tighter config applies to the history already there, at start.
    sim.env.write_config(&job(
        "r",
        "* * * * *",
        "action = \"ok\"",
        "keep_runs = 4\nkeep_days = 1",
    ));
    let mut sim = sim.reopen();
    sim.start().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(sim.runs("r").len(), 4, "keep_runs = 4, applied at start");

    // Two days later the periodic pass removes what is older than a day.
    sim.set(at + Duration::days(2)).await;
    let mut left = Vec::new();
    for _ in 0..100 {
        left = sim.runs("r");
        if !left.is_empty() && left.iter().all(|r| r.started > at + Duration::days(1)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        !left.is_empty() && left.iter().all(|r| r.started > at + Duration::days(1)),
        "{left:#?}"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_nights_fire_fixed_times_once() {
    let jobs = [
        job(
            "nightly",
            "30 2 * * *",
            "action = \"ok\"",
            "timezone = \"Europe/Berlin\"",
        ),
        job(
            "hourly",
            "30 * * * *",
            "action = \"ok\"",
            "timezone = \"Europe/Berlin\"",
        ),
    ]
    .concat();
    // Spring forward in Berlin: 2026-03-29 02:00 CET becomes 03:00 CEST.
    let mut sim = Sim::open(&jobs, t("2026-03-28T23:00:00Z"));
    sim.start().await;
    let mut now = t("2026-03-28T23:00:00Z");
    while now < t("2026-03-29T03:00:00Z") {
        now += Duration::minutes(10);
        sim.set(now).await;
    }
    let nightly = sim.wait_runs("nightly", 1).await;
    assert_eq!(nightly.len(), 1, "{nightly:#?}");
    assert_eq!(
        nightly[0].scheduled,
        t("2026-03-29T01:00:00Z"),
        "03:00 CEST, the first valid instant after 02:30"
    );
    let hourly = sim.wait_runs("hourly", 3).await;
    assert_eq!(
        hourly.iter().map(|r| r.scheduled).collect::<Vec<_>>(),
        [
            t("2026-03-28T23:30:00Z"),
            t("2026-03-29T00:30:00Z"),
            t("2026-03-29T01:30:00Z"),
            t("2026-03-29T02:30:00Z")
        ][..hourly.len()]
    );
    sim.stop().await;

    // Fall back: 2026-10-25 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    let mut sim = Sim::open(&jobs, t("2026-10-24T22:00:00Z"));
    sim.start().await;
    let mut now = t("2026-10-24T22:00:00Z");
    while now < t("2026-10-25T03:00:00Z") {
        now += Duration::minutes(10);
        sim.set(now).await;
    }
    let nightly = sim.wait_runs("nightly", 1).await;
    assert_eq!(nightly.len(), 1, "{nightly:#?}");
    assert_eq!(
        nightly[0].scheduled,
        t("2026-10-25T00:30:00Z"),
        "the first 02:30 (CEST) only"
    );
    let hourly = sim.wait_runs("hourly", 5).await;
    let slots: Vec<_> = hourly.iter().map(|r| r.scheduled).collect();
    assert!(
        slots.contains(&t("2026-10-25T00:30:00Z")) && slots.contains(&t("2026-10-25T01:30:00Z")),
        "both 02:30s: {slots:?}"
    );
    sim.stop().await;
}

/// Resident KiB of this process's mappings of compiled plugin code.
fn resident_compiled_code_kib() -> u64 {
    opsd::idle_memory::resident_kib(|path| path.ends_with(".cwasm"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_compiled_code_is_released_and_the_next_run_still_works() {
    let sim = Sim::open(
        &job("a", "@yearly", "action = \"ok\"", ""),
        t("2026-11-28T10:00:00Z"),
    );
    let at = t("2026-11-28T10:00:00Z");
    let run = || {
        sim.ops
            .run_job("a", opsd::ops::Start::new(Trigger::Manual, at))
    };
    assert_eq!(run().await.expect("first run").status, RunStatus::Ok);
    let runtime = sim.ops.registry().runtime();
    // Just used: kept.
    assert_eq!(
        runtime.release_idle_code(std::time::Duration::from_secs(60)),
        0
    );
    let before = resident_compiled_code_kib();
    assert!(
        before > 0,
        "the compiled guest is mapped from its cache file"
    );
    assert_eq!(runtime.release_idle_code(std::time::Duration::ZERO), 1);
    let after = resident_compiled_code_kib();
    assert!(
        after < before,
        "resident compiled code {before} KiB -> {after} KiB"
    );
    // Released once until used again.
    assert_eq!(runtime.release_idle_code(std::time::Duration::ZERO), 0);
    assert_eq!(
        run().await.expect("run after release").status,
        RunStatus::Ok
    );
    assert_eq!(runtime.release_idle_code(std::time::Duration::ZERO), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_jumps_neither_storm_nor_repeat_slots() {
    let jobs = [
        job(
            "latest",
            "* * * * *",
            "action = \"ok\"",
            "catch_up = \"latest\"",
        ),
        job(
            "skip",
            "* * * * *",
            "action = \"ok\"",
            "catch_up = \"skip\"",
        ),
    ]
    .concat();
    let mut sim = Sim::open(&jobs, t("2026-11-28T10:00:30Z"));
    sim.start().await;
    for m in 1..=3 {
        sim.set(t("2026-11-28T10:00:30Z") + Duration::minutes(m))
            .await;
    }
    assert_eq!(sim.wait_runs("latest", 3).await.len(), 3);
    assert_eq!(sim.wait_runs("skip", 3).await.len(), 3);

    // Forward three hours (NTP after a long drift, a resumed VM): the slot
    // due now runs once; the 179 before it are missed, not a storm, and
    // "latest" adds no extra run since the slot due now is the latest.
    sim.set(t("2026-11-28T13:03:30Z")).await;
    for name in ["latest", "skip"] {
        let runs = sim.wait_runs(name, 4).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(sim.runs(name).len(), 4, "{:#?}", sim.runs(name));
        assert_eq!(
            (runs[3].scheduled, runs[3].trigger, runs[3].status),
            (t("2026-11-28T13:03:00Z"), Trigger::Schedule, RunStatus::Ok)
        );
        let state = sim.ops.store().job_state(name).unwrap().unwrap();
        assert_eq!(state.missed_total, 179, "10:04 to 13:02 were missed");
    }

    // The schedule carries on.
    sim.set(t("2026-11-28T13:04:30Z")).await;
    for name in ["latest", "skip"] {
        assert_eq!(
            sim.wait_runs(name, 5).await[4].scheduled,
            t("2026-11-28T13:04:00Z")
        );
    }

    // Back an hour (the clock had been fast): slots that already fired are
    // not fired again, and nothing piles up while the clock catches up.
    for m in 0..5 {
        sim.set(t("2026-11-28T12:00:30Z") + Duration::minutes(m))
            .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sim.runs("latest").len(), 5);
    assert_eq!(sim.runs("skip").len(), 5);
    // Once past the last fired slot, each slot runs once again.
    sim.set(t("2026-11-28T13:05:30Z")).await;
    for name in ["latest", "skip"] {
        let runs = sim.wait_runs(name, 6).await;
        let last = runs.last().unwrap();
        assert_eq!(
            (last.scheduled, last.trigger),
            (t("2026-11-28T13:05:00Z"), Trigger::Schedule)
        );
        let mut slots: Vec<_> = runs.iter().map(|r| r.scheduled).collect();
        slots.dedup();
        assert_eq!(slots.len(), runs.len(), "a slot ran twice: {runs:#?}");
    }
    sim.stop().await;
}

/// `when` conditions on injected samples: CPU above 80 % for five minutes
/// runs the job once, a dip ends the episode, the cooldown holds back the
/// next one; network errors fire on their hourly rate. Runs say which
/// condition started them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_conditions_fire_on_injected_samples_once_per_episode() {
    let jobs = r#"
[[job]]
name = "cpu-watch"
plugin = "test-hostile"
schedule = "0 3 * * *"
when = { metric = "cpu_percent", above = 80, for = "5m", cooldown = "30m" }
[job.config]
action = "ok"

[[job]]
name = "net-watch"
plugin = "test-hostile"
when = [{ metric = "network_errors_per_hour", above = 100 }]
[job.config]
action = "ok"
"#;
    let t0 = t("2026-11-28T12:00:00Z");
    let mut sim = Sim::open(jobs, t0);
    sim.ops.monitor().feed_externally();
    sim.start().await;
    // (minutes from t0, cpu percent, network errors since boot)
    let mut fed = 0;
    let mut feed = |from: i64, to: i64, cpu: f64, errors_per_step: u64| {
        let mut steps = Vec::new();
        let mut m = from * 2;
        while m < to * 2 {
            fed += errors_per_step;
            steps.push((t0 + Duration::seconds(m * 30), cpu, fed));
            m += 1;
        }
        steps
    };
    let mut plan = feed(0, 11, 95.0, 0);
    plan.extend(feed(11, 12, 50.0, 0));
    plan.extend(feed(12, 40, 95.0, 0));
    // 20 errors every 30 s from 12:40: past 100 in the hour at 12:42:30.
    plan.extend(feed(40, 43, 10.0, 20));
    for (at, cpu, errors) in plan {
        sim.set(at).await;
        sim.ops.monitor().push(opsd::monitor::Sample {
            taken: at,
            cpu_percent: cpu,
            memory_total_bytes: 1 << 30,
            memory_used_bytes: 1 << 29,
            network_errors: errors,
            ..Default::default()
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let cpu = sim.wait_runs("cpu-watch", 2).await;
    let fired: Vec<_> = cpu
        .iter()
        .map(|r| (r.scheduled, r.trigger, r.condition.clone()))
        .collect();
    assert_eq!(
        fired,
        vec![
            // Held from 12:00 for five minutes.
            (
                t("2026-11-28T12:05:00Z"),
                Trigger::Condition,
                Some("cpu_percent > 80 for 5m: 95.0".into())
            ),
            // Held again from 12:12 (after the dip at 12:11), but the
            // cooldown lasts until 12:35.
            (
                t("2026-11-28T12:35:00Z"),
                Trigger::Condition,
                Some("cpu_percent > 80 for 5m: 95.0".into())
            ),
        ],
        "{cpu:#?}"
    );
    assert!(cpu.iter().all(|r| r.status == RunStatus::Ok));
    let net = sim.wait_runs("net-watch", 1).await;
    assert_eq!(net.len(), 1, "{net:#?}");
    assert_eq!(net[0].trigger, Trigger::Condition);
    assert_eq!(net[0].scheduled, t("2026-11-28T12:42:30Z"), "{net:#?}");
    assert_eq!(
        net[0].condition.as_deref(),
        Some("network_errors_per_hour > 100: 120.0")
    );
    sim.stop().await;
}
