//! Control-socket requests: whatever bytes a local client sends, the daemon
//! answers with a response that is not a server error, and does not panic.
//! Requests go through the same HTTP server and routes the daemon serves
//! (hyper + `opsd::api::router`), over an in-memory pipe, to a real `Ops`
//! on a real sled store with two jobs whose runs fail fast.
#![no_main]

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use libfuzzer_sys::fuzz_target;
use opsd::config::Config;
use opsd::ops::Ops;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Daemon {
    rt: tokio::runtime::Runtime,
    ops: Arc<Ops>,
    _dir: tempfile::TempDir,
}

fn daemon() -> &'static Daemon {
    static DAEMON: OnceLock<Daemon> = OnceLock::new();
    DAEMON.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let text = r#"
data_dir = "data"
[[job]]
name = "nightly"
plugin = "no-such-plugin"
schedule = "0 2 * * *"
[[job]]
name = "off"
plugin = "no-such-plugin"
schedule = "@daily"
enabled = false
"#;
        let config = Config::parse(&dir.path().join("opsd.toml"), text).expect("the fuzz config");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let ops = rt
            .block_on(async { Ops::open(config, Arc::new(opsd::clock::SystemClock)) })
            .expect("opening the store");
        Daemon {
            rt,
            ops: Arc::new(ops),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let d = daemon();
    let router = opsd::api::router(d.ops.clone());
    let response = d.rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let conn = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), TowerToHyperService::new(router)),
        );
        // A client that sends garbage and hangs up is the case to survive.
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut response = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut response));
        let _ = read.await;
        conn.abort();
        response
    });
    // Every answer is a status line; a 500 means bad input reached a path
    // that treats it as the daemon's own failure.
    let status = response.get(9..12).unwrap_or_default();
    assert_ne!(status, b"500", "{}", String::from_utf8_lossy(&response));
});
