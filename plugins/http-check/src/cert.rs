//! How long the server's certificate has left. wasi:http does not show a
//! plugin the peer's certificate, so the check asks `openssl s_client`,
//! run through the job's `exec` grant: the program runs inside the same
//! grants as the plugin (TCP only to the ports of the `net` grant), so
//! this reads nothing the job could not already reach, and needs no new
//! host call. Validity of the chain is not judged here: the GET itself
//! verified it (public roots and the job's `ca` grant).

use crate::config::Url;
use opsd_sdk::{Command, ExecError, Input};

/// Whole days until the certificate `url`'s server presents expires
/// (negative once expired), or why it could not be read.
pub fn days_left(url: &Url, timeout_ms: u64, now: i64) -> Result<i64, String> {
    let (host, port) = url.host_port();
    let connect = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut cmd = Command::new("openssl")
        .args(["s_client", "-connect", &connect])
        .stdin(Input::None)
        .timeout_ms(timeout_ms);
    if host.parse::<std::net::IpAddr>().is_err() {
        cmd = cmd.args(["-servername", &host]);
    }
    let exit = cmd.run().map_err(|e| match e {
        ExecError::Denied(why) => format!(
            "openssl refused ({why}); add \"openssl\" to the job's `exec = [...]` grant to check certificate expiry"
        ),
        other => format!("openssl s_client: {}", other.text()),
    })?;
    let out = String::from_utf8_lossy(&exit.stdout);
    let pem = leaf_pem(&out).ok_or_else(|| {
        let err = exit.stderr_text();
        let last = err.lines().last().unwrap_or("no output");
        format!(
            "openssl s_client showed no certificate (exit {}): {}",
            exit.status_text(),
            last.chars().take(200).collect::<String>()
        )
    })?;
    let info = opsd_x509::parse_pem(
        &format!("the certificate of {}", url.origin()),
        pem.as_bytes(),
    )?;
    Ok(info.days_left(now))
}

/// The first PEM certificate in `s_client`'s output: the server's own.
pub fn leaf_pem(text: &str) -> Option<&str> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text.find(BEGIN)?;
    let end = text[start..].find(END)? + start + END.len();
    Some(&text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaf_is_the_first_certificate_shown() {
        let out = "CONNECTED(00000003)\n---\nServer certificate\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\nsubject=CN=x\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        assert_eq!(
            leaf_pem(out),
            Some("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----")
        );
        assert_eq!(leaf_pem("CONNECTED\nerror"), None);
        assert_eq!(leaf_pem("-----BEGIN CERTIFICATE-----\ncut short"), None);
    }
}
