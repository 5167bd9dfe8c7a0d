//! porchlight-node: the shells around the protocol and the node core.
//!
//! Everything that touches the world lives here and only here: the wall clock, the OS RNG,
//! files, cameras (GStreamer), the store (sled), the HTTP API (axum) and the mesh (libp2p).
//! Each shell translates between the world and protocol types; none of them decides policy.

pub mod api;
pub mod audit_log;
pub mod authority;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod config;
pub mod consent_state;
pub mod daemon;
pub mod data_dir;
pub mod driver;
pub mod faults;
pub mod fetch;
pub mod health;
pub mod keys;
pub mod ledger;
pub mod media;
pub mod mesh;
pub mod neighborhood_demo;
pub mod received;
pub mod recording;
pub mod store;
pub mod transfers;
pub mod trust;
