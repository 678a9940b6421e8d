//! One check's request through wasi:http: the host decides whether it may
//! leave (the job's `net` grant, checked again for every redirect hop) and
//! which certificate authorities HTTPS trusts (the public ones and the
//! job's `ca` grant). A hostile server gets bounded attention: the whole
//! check has one deadline, and the body is read only when `expect_body`
//! asks, only up to 1 MiB, and only until the text is found.

use crate::config::{Plan, Url};
use crate::verdict::Seen;

/// Most of a body read looking for `expect_body`.
pub const MAX_BODY: usize = 1 << 20;
/// Redirects followed at most, as curl's sensible limits go.
pub const MAX_REDIRECTS: usize = 5;

/// Sends the check's GET (following redirects when asked) and reports
/// what came back.
pub fn fetch(plan: &Plan) -> Seen {
    platform::fetch(plan)
}

/// Words for a wasi:http error, with what to do when it is the job's
/// grants: the URL's origin missing from `net`, or a private CA missing
/// from `ca`.
pub fn explain(code: &str, url: &Url) -> String {
    let origin = url.origin();
    if code.contains("HttpRequestDenied") {
        return format!(
            "{origin} is not in the job's `net` grant; add \"{origin}\" to `net = [...]` (denied)"
        );
    }
    if code.contains("Tls") {
        return format!(
            "TLS with {origin} failed ({code}); if its certificate comes from a private CA, add that CA's PEM file to the job's `ca = [...]` grant"
        );
    }
    format!("{origin}: {code}")
}

#[cfg(target_arch = "wasm32")]
mod platform {
    use super::{MAX_BODY, MAX_REDIRECTS, explain};
    use crate::config::{Plan, Url};
    use crate::verdict::{BodyRead, Seen, shown_location};
    use std::time::{Duration, Instant};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        Fields, IncomingResponse, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
    };
    use wasip2::io::streams::StreamError;

    pub fn fetch(plan: &Plan) -> Seen {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(plan.timeout_ms);
        let mut url = plan.url.clone();
        let mut hops = 0;
        let mut seen = Seen::default();
        loop {
            let response = match head(&url, deadline, plan.timeout_ms) {
                Ok(r) => r,
                Err(e) => {
                    seen.error = Some(if hops > 0 {
                        format!("{e} (after {hops} redirects, at {})", url.shown())
                    } else {
                        e
                    });
                    return seen;
                }
            };
            let status = response.status();
            let location = response
                .headers()
                .get("location")
                .first()
                .map(|v| String::from_utf8_lossy(v).into_owned());
            if plan.follow_redirects
                && (300..400).contains(&status)
                && let Some(to) = &location
            {
                if hops == MAX_REDIRECTS {
                    seen.error = Some(format!(
                        "more than {MAX_REDIRECTS} redirects (the last to {})",
                        shown_location(to)
                    ));
                    return seen;
                }
                match url.follow(to) {
                    Ok(next) => {
                        url = next;
                        hops += 1;
                        continue;
                    }
                    Err(e) => {
                        seen.error = Some(format!("a redirect to an unusable Location: {e}"));
                        return seen;
                    }
                }
            }
            seen.status = Some(status);
            seen.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            seen.location = location;
            if let Some(want) = &plan.expect_body {
                seen.body = Some(read_body(
                    response,
                    want.as_bytes(),
                    deadline,
                    plan.timeout_ms,
                ));
            }
            return seen;
        }
    }

    /// Sends a GET and waits for the response head, until `deadline`.
    fn head(url: &Url, deadline: Instant, timeout_ms: u64) -> Result<IncomingResponse, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no answer within timeout_ms ({timeout_ms} ms)"));
        }
        let headers = Fields::new();
        headers
            .append("user-agent", b"opsd-http-check")
            .map_err(|e| format!("header: {e:?}"))?;
        let req = OutgoingRequest::new(headers);
        req.set_method(&Method::Get)
            .map_err(|()| "bad method".to_owned())?;
        req.set_scheme(Some(if url.https {
            &Scheme::Https
        } else {
            &Scheme::Http
        }))
        .map_err(|()| "bad scheme".to_owned())?;
        req.set_authority(Some(&url.authority))
            .map_err(|()| format!("bad host `{}`", url.authority))?;
        req.set_path_with_query(Some(&url.path))
            .map_err(|()| "bad path".to_owned())?;
        let body = req.body().map_err(|()| "request body taken".to_owned())?;
        let options = RequestOptions::new();
        let nanos = left.as_nanos().min(u128::from(u64::MAX)) as u64;
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
        let future = outgoing_handler::handle(req, Some(options))
            .map_err(|e| explain(&format!("{e:?}"), url))?;
        OutgoingBody::finish(body, None).map_err(|e| explain(&format!("{e:?}"), url))?;
        loop {
            match future.get() {
                Some(Ok(Ok(r))) => return Ok(r),
                Some(Ok(Err(e))) => return Err(explain(&format!("{e:?}"), url)),
                Some(Err(())) => return Err("the response was already taken".into()),
                None => {
                    let ready = future.subscribe();
                    let left = deadline.saturating_duration_since(Instant::now());
                    let timer = wasip2::clocks::monotonic_clock::subscribe_duration(
                        left.as_nanos().min(u128::from(u64::MAX)) as u64,
                    );
                    let which = wasip2::io::poll::poll(&[&ready, &timer]);
                    if !which.contains(&0) && Instant::now() >= deadline {
                        return Err(format!("no answer within timeout_ms ({timeout_ms} ms)"));
                    }
                }
            }
        }
    }

    /// Reads the body looking for `want`: until found, the end, 1 MiB or
    /// the deadline, whichever comes first.
    fn read_body(
        response: IncomingResponse,
        want: &[u8],
        deadline: Instant,
        timeout_ms: u64,
    ) -> BodyRead {
        let mut read = BodyRead::default();
        let Ok(incoming) = response.consume() else {
            read.stopped = Some("the body was already taken".into());
            return read;
        };
        let Ok(stream) = incoming.stream() else {
            read.stopped = Some("the body was already taken".into());
            return read;
        };
        let mut buf: Vec<u8> = Vec::new();
        {
            let ready = stream.subscribe();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    read.stopped = Some(format!(
                        "the body did not end within timeout_ms ({timeout_ms} ms)"
                    ));
                    break;
                }
                let timer = wasip2::clocks::monotonic_clock::subscribe_duration(
                    left.as_nanos().min(u128::from(u64::MAX)) as u64,
                );
                wasip2::io::poll::poll(&[&ready, &timer]);
                drop(timer);
                let room = (MAX_BODY - buf.len()) as u64;
                match stream.read(room.min(65536)) {
                    Ok(chunk) => {
                        let from = buf.len().saturating_sub(want.len());
                        buf.extend_from_slice(&chunk);
                        if buf[from..].windows(want.len()).any(|w| w == want) {
                            read.found = true;
                            break;
                        }
                        if buf.len() >= MAX_BODY {
                            read.stopped =
                                Some(format!("read no further than {} MiB", MAX_BODY >> 20));
                            break;
                        }
                    }
                    Err(StreamError::Closed) => break,
                    Err(e) => {
                        read.stopped = Some(format!("reading the body failed: {e:?}"));
                        break;
                    }
                }
            }
        }
        read.bytes = buf.len();
        drop(stream);
        drop(incoming);
        read
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod platform {
    use crate::config::Plan;
    use crate::verdict::Seen;

    pub fn fetch(_plan: &Plan) -> Seen {
        Seen {
            error: Some("HTTP is only available inside opsd (wasi:http)".into()),
            ..Seen::default()
        }
    }
}
