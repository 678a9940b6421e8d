//! `opsd daemon`: the scheduler, the control socket and the monitoring
//! endpoints, until SIGINT or SIGTERM. Shaped like mini-redis's server:
//! every part runs until a shared shutdown signal fires, then finishes what
//! it is doing.
//!
//! - SIGTERM/SIGINT: stop scheduling, give runs in progress
//!   `shutdown_grace` to finish, interrupt (and record) the rest, exit 0.
//! - SIGHUP: read the configuration again; a broken one is logged, problem
//!   by problem, and the running configuration stays.
//! - Under systemd (`Type=notify`): READY=1 once serving, RELOADING=1 and
//!   STOPPING=1 around those, and WATCHDOG=1 while the scheduler is healthy.

mod fleet_rounds;
use crate::api;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::ops::Ops;
use crate::scheduler;
use crate::store::StoreError;
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Runs the daemon until a signal asks it to stop.
pub async fn run(config: Config) -> anyhow::Result<()> {
    if let Some((before, now)) = crate::grants::raise_descriptor_limit() {
        tracing::debug!(before, now, "descriptor limit");
    }
    let socket = config.socket.clone();
    if api::Client::connect(&socket).await.is_some() {
        anyhow::bail!(
            "another opsd daemon is already running: its control socket {} answers",
            socket.display()
        );
    }
    // What the daemon needs of the file's configuration after the open:
    // the configuration itself lives on only in `ops` (a second copy of
    // 10,000 jobs is tens of MiB).
    let (path, data_dir, grace) = (
        config.path.clone(),
        config.data_dir.clone(),
        config.shutdown_grace,
    );
    let (http_addr, jobs) = (config.http, config.jobs.len());
    let ops = open_waiting(config).await?;
    let http = match http_addr {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} ([http] listen): set another address, or `enabled = false` under [http]")
            })?;
            let bound = l.local_addr()?;
            ops.set_http_addr(bound);
            Some(l)
        }
        None => None,
    };
    ops.start_notifications();
    // `opsd check`'s validation, job by job, before anything fires: a job
    // whose plugin is unknown or whose config its plugin refuses is set
    // aside now, not found out when it fires.
    let checked = crate::check::sift(ops.config().as_ref().clone(), ops.registry()).await;
    put_in_force(&ops, checked, &[]);
    // Serving from here: what the control socket answers is the checked
    // configuration. The loop starts below on this task, with nothing to
    // wait for before it; a health probe served in between (the socket
    // accepts from here) must not find it "not started".
    ops.heartbeat(ops.clock().now());
    let listener = api::bind(&socket).await?;
    tracing::info!(
        config = %path.display(), data_dir = %data_dir.display(), socket = %socket.display(),
        http = ?ops.health(false).http, jobs, "opsd daemon started"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    spawn_signal_handler(ops.clone(), stop_tx)?;
    tokio::spawn(retry_broken_jobs(ops.clone(), stopped(stop_rx.clone())));
    let api_task = tokio::spawn(api::serve(listener, ops.clone(), stopped(stop_rx.clone())));
    let http_task = http.map(|l| {
        let console = crate::console::router(ops.clone(), l.local_addr().ok());
        tokio::spawn(api::serve_http(
            l,
            ops.clone(),
            console,
            stopped(stop_rx.clone()),
        ))
    });
    spawn_watchdog(ops.clone());
    if ops.monitor().samples_itself() {
        tokio::spawn(sample_machine(ops.clone(), stopped(stop_rx.clone())));
    }
    tokio::spawn(crate::plugins::watch(
        ops.registry().clone(),
        stopped(stop_rx.clone()),
    ));
    tokio::spawn(sync_fleet(ops.clone(), stopped(stop_rx.clone())));
    sd_notify("READY=1");

    let result = scheduler::run(ops.clone(), stopped(stop_rx), grace).await;
    for task in [Some(api_task), http_task].into_iter().flatten() {
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %format!("{e:#}"), "server"),
            Err(_) => tracing::warn!("requests still open at exit"),
            _ => {}
        }
    }
    let _ = std::fs::remove_file(&socket);
    ops.store().flush()?;
    tracing::info!("opsd daemon stopped");
    result
}

/// How often a fleet host says it is alive and drains its outbox.
const FLEET_SYNC: Duration = Duration::from_secs(2);

/// Runs copied to PostgreSQL in one statement, at most.
const FLEET_BATCH: usize = 500;

/// Bytes of records in one statement, at most (a run's details may be
/// megabytes; PostgreSQL refuses a message over 1 GiB).
const FLEET_BATCH_BYTES: usize = 8 << 20;

/// While a `[fleet]` is set: keeps a connection to its PostgreSQL, says
/// every [`FLEET_SYNC`] that this host is alive, and copies the outbox's
/// finished runs to the central history, oldest first, removing each
/// only once PostgreSQL has it. It also keeps the fleet jobs' side:
/// which hosts are alive, the definitions hosts agree on, slots whose
/// lease ran out elsewhere and slots held while PostgreSQL was away.
/// PostgreSQL away stops nothing else: runs wait in the outbox, and the
/// loop tries again, saying once that it lost the connection and once
/// that it has it back.
async fn sync_fleet(ops: Arc<Ops>, stop: impl Future<Output = ()>) {
    use crate::fleet::Central;
    tokio::pin!(stop);
    let mut central: Option<(Arc<Central>, crate::config::FleetSettings)> = None;
    let mut down_since: Option<String> = None;
    let mut jobs = fleet_rounds::Rounds::default();
    loop {
        let settings = ops.config().fleet.clone();
        if let Some(settings) = settings {
            ops.store().enable_outbox();
            if central
                .as_ref()
                .is_some_and(|(c, s)| c.is_closed() || *s != settings)
            {
                central = None;
                ops.fleet().set_coordinator(None);
            }
            if central.is_none() {
                match Central::connect(&settings).await {
                    Ok(c) => {
                        tracing::info!(at = %c.at(), host = %settings.host, "connected to the fleet's PostgreSQL");
                        down_since = None;
                        let c = Arc::new(c);
                        ops.fleet().set_coordinator(Some(c.clone()));
                        central = Some((c, settings.clone()));
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if down_since.as_deref() != Some(text.as_str()) {
                            tracing::warn!(error = %text, outbox = ops.store().outbox_len(), "fleet: runs wait in the outbox until PostgreSQL answers");
                            down_since = Some(text);
                        }
                    }
                }
            }
            if let Some((c, s)) = &central {
                let round = async {
                    drain_outbox(&ops, c, s).await?;
                    jobs.round(&ops, c, s).await.map_err(anyhow::Error::from)
                };
                if let Err(e) = round.await {
                    tracing::warn!(error = %e, outbox = ops.store().outbox_len(), "fleet: runs wait in the outbox until PostgreSQL answers");
                    down_since = Some(e.to_string());
                    central = None;
                    ops.fleet().set_coordinator(None);
                }
            }
            ops.set_fleet_contact(central.is_some());
        } else if central.take().is_some() {
            ops.fleet().set_coordinator(None);
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(FLEET_SYNC) => {}
        }
    }
}

/// The outbox in batches until it is empty, then a heartbeat saying
/// what is left (runs that finished meanwhile).
async fn drain_outbox(
    ops: &Ops,
    central: &crate::fleet::Central,
    settings: &crate::config::FleetSettings,
) -> anyhow::Result<()> {
    loop {
        let store = ops.store().clone();
        let batch =
            tokio::task::spawn_blocking(move || store.outbox_batch(FLEET_BATCH, FLEET_BATCH_BYTES))
                .await??;
        if batch.is_empty() {
            central
                .heartbeat(settings, ops.store().outbox_len() as u64)
                .await?;
            return Ok(());
        }
        for (id, why) in central.publish(&settings.host, &batch).await? {
            tracing::error!(run = %id, error = %why, "fleet: PostgreSQL refuses this run's record; it stays in this host's history only");
        }
        let ids: Vec<String> = batch.into_iter().map(|r| r.id).collect();
        let store = ops.store().clone();
        tokio::task::spawn_blocking(move || store.outbox_done(&ids)).await??;
    }
}

/// Samples the machine every `[monitor] interval` into the monitor until
/// `stop` resolves: the probes first (they wait on the network), then
/// sysinfo and statvfs on a blocking thread.
async fn sample_machine(ops: Arc<Ops>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    use crate::monitor::{Probe, Sampler, probe};
    let Ok(mut sampler) = tokio::task::spawn_blocking(Sampler::new).await else {
        return;
    };
    loop {
        let config = ops.config();
        let (watched, urls) = config.watched();
        let limit = config.monitor_interval.min(Duration::from_secs(30));
        let probes = futures_util::future::join_all(urls.into_iter().map(|t| async move {
            match probe::probe(&t.url, limit, &t.ca_roots).await {
                Ok(a) => Probe {
                    url: t.url,
                    seconds: Some(a.seconds),
                    status: Some(a.status),
                    error: None,
                },
                Err(e) => Probe {
                    url: t.url,
                    seconds: None,
                    status: None,
                    error: Some(e),
                },
            }
        }))
        .await;
        let taken = ops.clock().now();
        let read = tokio::task::spawn_blocking(move || {
            let sample = sampler.sample(taken, &watched, probes);
            (sampler, sample)
        })
        .await;
        let Ok((back, sample)) = read else {
            tracing::error!("sampling the machine failed; conditions will not fire");
            return;
        };
        sampler = back;
        ops.monitor().push(sample);
        tokio::select! {
            _ = tokio::time::sleep(config.monitor_interval) => {}
            _ = &mut stop => return,
        }
    }
}

/// Opens the store, waiting a little for a CLI command that holds it.
async fn open_waiting(config: Config) -> anyhow::Result<Arc<Ops>> {
    let mut tries = 0;
    let pooled = crate::runtime::InstancePool::wanted();
    loop {
        match Ops::open_for_daemon(config.clone(), Arc::new(SystemClock), pooled) {
            Ok(ops) => return Ok(Arc::new(ops)),
            Err(e)
                if tries < 50
                    && matches!(
                        e.downcast_ref::<StoreError>(),
                        Some(StoreError::Locked { .. })
                    ) =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn spawn_signal_handler(ops: Arc<Ops>, stop: watch::Sender<bool>) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = sigterm.recv() => "SIGTERM",
                _ = sigint.recv() => "SIGINT",
                _ = sighup.recv() => {
                    reload(&ops).await;
                    continue;
                }
            };
            tracing::info!(signal = name, "shutting down");
            sd_notify("STOPPING=1");
            let _ = stop.send(true);
            return;
        }
    });
    Ok(())
}

/// Reads the configuration file again and puts it in force: every job
/// that is valid, with the broken ones set aside and said; a file that is
/// broken as a whole leaves the running configuration in force.
pub async fn reload(ops: &Ops) {
    sd_notify("RELOADING=1");
    let path = ops.config().path.clone();
    match crate::config::Config::load_trusted(&path) {
        Ok(new) => {
            let new = crate::check::sift(new, ops.registry()).await;
            let (jobs, broken) = (new.jobs.len(), new.broken.len());
            put_in_force(ops, new, &ops.config().broken);
            tokio::task::spawn_blocking(crate::idle_memory::release_all);
            if broken > 0 {
                tracing::warn!(config = %path.display(), jobs, broken, "configuration reloaded; {broken} broken job{} set aside (opsd schedule list says why)", if broken == 1 { "" } else { "s" });
            } else {
                tracing::info!(config = %path.display(), jobs, "configuration reloaded");
            }
        }
        Err(e) => tracing::error!(
            "configuration reload failed; the running configuration stays in force. {e}"
        ),
    }
    sd_notify("READY=1");
}

/// Puts `new` in force through [`Ops::put_in_force`], its notes logged.
fn put_in_force(ops: &Ops, new: crate::config::Config, before: &[crate::config::BrokenJob]) {
    for note in ops.put_in_force(new, before) {
        tracing::warn!("{note}");
    }
}

/// How often the daemon looks again at broken jobs.
const RETRY_BROKEN_EVERY: Duration = Duration::from_secs(15);

/// While jobs are broken, checks them again every
/// [`RETRY_BROKEN_EVERY`] against the configuration in force (its text,
/// not the file, which may hold edits not yet applied): a job whose
/// cause went away (the mount appeared, the plugin was dropped in) runs
/// again by itself.
async fn retry_broken_jobs(ops: Arc<Ops>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RETRY_BROKEN_EVERY) => {}
            _ = &mut stop => return,
        }
        ops.recheck().await;
    }
}

/// Tells systemd about the daemon's state, when started by systemd with
/// `Type=notify` (`$NOTIFY_SOCKET` set); does nothing otherwise.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, state, "sd_notify failed");
    }
}

/// Pets systemd's watchdog at half its interval, while the scheduler loop
/// is alive and the store takes writes; a stuck daemon gets restarted.
fn spawn_watchdog(ops: Arc<Ops>) {
    let Some(usec) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(500));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let health = ops.health(true);
            if health.status == crate::ops::HealthStatus::Ok {
                sd_notify("WATCHDOG=1");
            } else {
                tracing::error!(reasons = ?health.reasons, "unhealthy; not petting the systemd watchdog");
            }
        }
    });
}
