//! The node's local HTTP API: what `porchlight status`, `clips …` and (later) the phone page
//! talk to.
//!
//! **API Boundary.** The JSON shapes here are the contract between the daemon and its
//! clients; they are mirror types, kept apart from the protocol's and the store's own
//! types so either can change without changing what a script sees. Every request carries
//! the admin token the daemon writes to `<data dir>/api-token` (0600), so a command only
//! needs `--data-dir` to find and use its node. The API listens on loopback by default.

pub mod client;
pub mod consent;
pub mod host;
pub mod server;
pub mod views;

/// Where the daemon says it listens: `<data dir>/api.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApiEndpoint {
    pub address: std::net::SocketAddr,
    pub pid: u32,
}
