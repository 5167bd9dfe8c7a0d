//! The `Host` check in front of the local API: a request must name this listener by one of
//! the names it answers to.
//!
//! The admin token already stops a web page that rebinds a DNS name to 127.0.0.1 (the page
//! cannot read the token), but a page that can reach the API through a name of its own is
//! one leaked token away from driving it. Checking `Host` closes that door too, and costs
//! nothing: the CLI always connects to the address the daemon wrote to `api.json`.
//!
//! The names are a list, not a rule about loopback, so a later LAN listener (the phone page)
//! can add the names it is reached by with [`AllowedHosts::with_name`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::server::ApiError;

/// The `host:port` forms a listener answers to, compared without regard to ASCII case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// The names of a loopback listener bound to `bound`: `127.0.0.1:PORT`,
    /// `localhost:PORT`, `[::1]:PORT` and the bound address itself.
    pub fn loopback(bound: SocketAddr) -> AllowedHosts {
        let port = bound.port();
        AllowedHosts { names: Vec::new() }
            .with_name(format!("127.0.0.1:{port}"))
            .with_name(format!("localhost:{port}"))
            .with_name(format!("[::1]:{port}"))
            .with_name(bound.to_string())
    }

    /// Also answers to `host_port` (for example `porch.local:7070`).
    pub fn with_name(mut self, host_port: impl Into<String>) -> AllowedHosts {
        let name = host_port.into().to_ascii_lowercase();
        if !self.names.contains(&name) {
            self.names.push(name);
        }
        self
    }

    /// Whether a request whose `Host` is `host` is for this listener.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim();
        self.names
            .iter()
            .any(|name| name.eq_ignore_ascii_case(host))
    }

    fn listed(&self) -> String {
        self.names.join(", ")
    }
}

/// Middleware: refuses with 421 Misdirected Request a request whose `Host` (or, without
/// one, whose URI authority) is not one of `allowed`, or that names none.
pub async fn check_host(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    let host = match request.headers().get(header::HOST) {
        Some(value) => value.to_str().ok().map(str::to_owned),
        None => request
            .uri()
            .authority()
            .map(|authority| authority.to_string()),
    };
    match host {
        Some(host) if allowed.allows(&host) => next.run(request).await,
        Some(host) => ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this porchlight API answers only to {}, not to Host {host:?}; connect to the address in the data dir's api.json",
                allowed.listed()
            ),
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "the request names no host (or one that is not text); this porchlight API answers only to {}",
                allowed.listed()
            ),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use axum::Router;
    use axum::routing::get;

    use super::*;

    #[test]
    fn loopback_names_are_allowed_and_others_are_not() {
        let hosts = AllowedHosts::loopback("127.0.0.1:7070".parse().unwrap());
        for host in [
            "127.0.0.1:7070",
            "localhost:7070",
            "LocalHost:7070",
            "[::1]:7070",
        ] {
            assert!(hosts.allows(host), "{host}");
        }
        for host in [
            "evil.example:7070",
            "127.0.0.1:7071",
            "localhost",
            "127.0.0.1",
            "localhost.evil.example:7070",
            "",
        ] {
            assert!(!hosts.allows(host), "{host}");
        }
        let hosts = AllowedHosts::loopback("[::1]:9".parse().unwrap());
        assert!(hosts.allows("[::1]:9"));
        let lan = hosts.with_name("Porch.local:9");
        assert!(lan.allows("porch.local:9"));
    }

    /// The status line of a raw HTTP/1.1 request to `address` with these header lines.
    fn status_of(address: SocketAddr, headers: &str) -> String {
        let mut stream = TcpStream::connect(address).unwrap();
        write!(
            stream,
            "GET /ping HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or("").to_owned()
    }

    #[test]
    fn a_request_for_another_host_is_refused_with_421() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap();
        let allowed = Arc::new(AllowedHosts::loopback(address));
        let app = Router::new()
            .route("/ping", get(|| async { "pong" }))
            .layer(axum::middleware::from_fn_with_state(allowed, check_host));
        let server = runtime.spawn(async move { axum::serve(listener, app).await });
        let port = address.port();
        let _guard = runtime.enter();
        let check = |headers: String| {
            runtime.block_on(tokio::task::spawn_blocking(move || {
                status_of(address, &headers)
            }))
        };
        for allowed in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ] {
            let status = check(format!("Host: {allowed}\r\n")).unwrap();
            assert!(status.contains(" 200 "), "{allowed}: {status}");
        }
        for refused in [
            format!("Host: rebound.evil.example:{port}\r\n"),
            format!("Host: 127.0.0.1:{}\r\n", port.wrapping_add(1)),
            String::new(),
        ] {
            let status = check(refused.clone()).unwrap();
            assert!(status.contains(" 421 "), "{refused:?}: {status}");
        }
        server.abort();
    }
}
