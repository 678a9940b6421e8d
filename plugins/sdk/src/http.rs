//! A small blocking HTTP client over wasi:http, enough for ACME and health
//! checks: a method, a URL, headers, a body; the status, headers and body
//! back. The host decides whether the request may leave (the job's `net`
//! grant) and which certificate authorities HTTPS trusts (the `ca` grant).
//! Redirects are not followed: a `Location` elsewhere is the caller's to
//! judge.

/// Part of the message of a request the job's `net` grant refused, so a
/// caller can tell a refusal (which waiting will not change) from a
/// server that is down.
pub const DENIED: &str = "refused: not in the job's net grant";

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, at most 4 MiB.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Splits `https://host:port/path?q` into (scheme, authority, path).
pub fn split_url(url: &str) -> Result<(&str, &str, &str), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not a URL (expected https://host/path)"))?;
    if scheme != "https" && scheme != "http" {
        return Err(format!("`{url}`: only http and https URLs are supported"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    Ok((scheme, authority, path))
}

/// The origin (`https://host[:port]`) of a URL, as net grants name it.
pub fn origin(url: &str) -> Result<String, String> {
    let (scheme, authority, _) = split_url(url)?;
    Ok(format!("{scheme}://{authority}"))
}

/// Sends one request and reads the whole response, waiting up to 30 s to
/// connect and 60 s for each part of the answer.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, String> {
    platform::request(
        method,
        url,
        headers,
        body,
        std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(60),
    )
}

/// [`request`] with one limit on connecting and on each wait for the
/// answer: a health check that must not hang on a wedged server.
pub fn request_timeout(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: std::time::Duration,
) -> Result<Response, String> {
    platform::request(method, url, headers, body, timeout, timeout)
}

#[cfg(target_arch = "wasm32")]
mod platform {
    use super::{Response, split_url};

    /// Largest response read into memory (certificate chains and ACME
    /// objects are a few KiB).
    const MAX_BODY: usize = 4 << 20;
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::ErrorCode;

    /// `GET url: why`, a refusal by the grant said as one.
    fn failed(method: &str, url: &str, e: &ErrorCode) -> String {
        if matches!(e, ErrorCode::HttpRequestDenied) {
            format!("{method} {url}: {}", super::DENIED)
        } else {
            format!("{method} {url}: {e}")
        }
    }
    use wasip2::http::types::{
        Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
    };

    pub fn request(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        connect: std::time::Duration,
        wait: std::time::Duration,
    ) -> Result<Response, String> {
        let (scheme, authority, path) = split_url(url)?;
        let fields = Fields::new();
        for (name, value) in headers {
            fields
                .append(name, value.as_bytes())
                .map_err(|e| format!("header {name}: {e:?}"))?;
        }
        let req = OutgoingRequest::new(fields);
        let m = match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            other => Method::Other(other.to_owned()),
        };
        req.set_method(&m).map_err(|()| "bad method".to_owned())?;
        req.set_scheme(Some(&if scheme == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        }))
        .map_err(|()| "bad scheme".to_owned())?;
        req.set_authority(Some(authority))
            .map_err(|()| format!("bad authority `{authority}`"))?;
        req.set_path_with_query(Some(path))
            .map_err(|()| format!("bad path `{path}`"))?;
        let out_body = req.body().map_err(|()| "request body taken".to_owned())?;
        let options = RequestOptions::new();
        let _ = options.set_connect_timeout(Some(connect.as_nanos() as u64));
        let _ = options.set_first_byte_timeout(Some(wait.as_nanos() as u64));
        let _ = options.set_between_bytes_timeout(Some(wait.as_nanos() as u64));
        let future =
            outgoing_handler::handle(req, Some(options)).map_err(|e| failed(method, url, &e))?;
        {
            let stream = out_body
                .write()
                .map_err(|()| "request body stream taken".to_owned())?;
            if let Some(bytes) = body {
                for chunk in bytes.chunks(4096) {
                    stream
                        .blocking_write_and_flush(chunk)
                        .map_err(|e| format!("{method} {url}: sending the body: {e:?}"))?;
                }
            }
        }
        OutgoingBody::finish(out_body, None).map_err(|e| format!("{method} {url}: {e}"))?;
        let response = loop {
            match future.get() {
                Some(Ok(Ok(r))) => break r,
                Some(Ok(Err(e))) => return Err(failed(method, url, &e)),
                Some(Err(())) => return Err(format!("{method} {url}: response already taken")),
                None => future.subscribe().block(),
            }
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| {
                (
                    n.to_ascii_lowercase(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| "response body taken".to_owned())?;
        let mut data = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|()| "response stream taken".to_owned())?;
            loop {
                match stream.blocking_read(65536) {
                    Ok(chunk) => {
                        data.extend_from_slice(&chunk);
                        if data.len() > MAX_BODY {
                            return Err(format!(
                                "{method} {url}: response larger than {} MiB",
                                MAX_BODY >> 20
                            ));
                        }
                    }
                    Err(wasip2::io::streams::StreamError::Closed) => break,
                    Err(e) => return Err(format!("{method} {url}: reading the body: {e:?}")),
                }
            }
        }
        let _ = IncomingBody::finish(incoming);
        Ok(Response {
            status,
            headers,
            body: data,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod platform {
    use super::Response;

    pub fn request(
        method: &str,
        url: &str,
        _headers: &[(&str, &str)],
        _body: Option<&[u8]>,
        _connect: std::time::Duration,
        _wait: std::time::Duration,
    ) -> Result<Response, String> {
        Err(format!(
            "{method} {url}: HTTP is only available inside opsd (wasi:http)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_origin_and_path() {
        assert_eq!(
            split_url("https://localhost:14000/dir").unwrap(),
            ("https", "localhost:14000", "/dir")
        );
        assert_eq!(
            origin("https://acme.example/a/b?c").unwrap(),
            "https://acme.example"
        );
        assert!(split_url("ftp://x/y").is_err());
        assert!(split_url("localhost/dir").is_err());
    }
}
