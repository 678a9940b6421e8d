//! `opsd daemon`: the scheduler and the control socket, until SIGINT or
//! SIGTERM. Shaped like mini-redis's server: every part runs until a
//! shared shutdown signal fires, then finishes what it is doing.

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

/// How long runs in progress may take to finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs the daemon until a signal asks it to stop.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let socket = config.socket.clone();
    if api::Client::connect(&socket).await.is_some() {
        anyhow::bail!(
            "another opsd daemon is already running: its control socket {} answers",
            socket.display()
        );
    }
    // A CLI command with no daemon running holds the store briefly; wait
    // for it rather than failing at start.
    let ops = {
        let mut tries = 0;
        loop {
            match Ops::open(config.clone(), Arc::new(SystemClock)) {
                Ok(ops) => break Arc::new(ops),
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
    };
    let listener = api::bind(&socket).await?;
    tracing::info!(
        config = %ops.config.path.display(), data_dir = %ops.config.data_dir.display(),
        socket = %socket.display(), jobs = ops.config.jobs.len(), "opsd daemon started"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
        let _ = stop_tx.send(true);
    });

    let api_task = tokio::spawn(api::serve(listener, ops.clone(), stopped(stop_rx.clone())));
    let result = scheduler::run(ops.clone(), stopped(stop_rx), SHUTDOWN_GRACE).await;
    match tokio::time::timeout(Duration::from_secs(5), api_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "control socket"),
        Err(_) => tracing::warn!("control socket requests still open at exit"),
        _ => {}
    }
    let _ = std::fs::remove_file(&socket);
    ops.store.flush()?;
    tracing::info!("opsd daemon stopped");
    result
}
