//! `porchlight node`: the always-on home node.
//!
//! Wires the shells together: settings and keys from the data dir, the store (which locks
//! the data dir against a second daemon), the capture supervisor (one GStreamer pipeline per
//! camera), a pump that seals every segment into the store, a retention sweep, the consent
//! driver (the node core on its own thread, with the signed audit log and the store of
//! received clips), the libp2p mesh and its fetch streams, and the local HTTP API. On
//! SIGINT or SIGTERM it stops the cameras (each finishes and delivers the clip in
//! progress), waits until every delivered segment is sealed and flushed, stops the driver
//! after the inputs it already has, removes its API files and exits 0.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use porchlight_protocol::Timestamp;
use rand_core::{OsRng, RngCore};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use libp2p::Multiaddr;
use porchlight_core::Node;
use porchlight_core::NodeConfig;
use porchlight_protocol::{AgreementSecret, CellId, SigningIdentity};

use crate::api::ApiEndpoint;
use crate::api::server::{ApiState, CameraStates, router};
use crate::api::views::{CameraView, rfc3339};
use crate::audit_log::AuditLog;
use crate::capture::{self, CameraStatus, CaptureOptions, CaptureSupervisor, ClipLength};
use crate::clock;
use crate::config::{Overrides, RawConfig, Settings, environment_overrides};
use crate::data_dir::{DataDir, replace_file, replace_secret};
use crate::driver::{Driver, DriverHandle, DriverInput, Recovery};
use crate::health::Health;
use crate::keys::NodeKeys;
use crate::ledger::Ledger;
use crate::mesh::{Mesh, MeshConfig};
use crate::received::ReceivedStore;
use crate::recording::Segment;
use crate::store::{Store, StoreConfig};
use crate::transfers::Transfers;

/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// Free space to keep in hand beyond the segment being written.
const WRITE_MARGIN: u64 = 16 << 20;

/// Runs the daemon until a signal stops it.
pub fn run(dir: DataDir, flags: Overrides) -> anyhow::Result<()> {
    dir.check_usable()?;
    let settings = Settings::layer(RawConfig::load(&dir)?, environment_overrides()?, flags)?;
    let cameras = capture::parse_cameras(&settings.cameras).context("bad --camera")?;
    for camera in &cameras {
        if let Some(path) = camera.missing_file() {
            anyhow::bail!(
                "camera {}: the file {} does not exist or is not a regular file; check the path given to --camera file:PATH",
                camera.name(),
                path.display()
            );
        }
    }
    let clip_len = ClipLength::from_secs(settings.clip_seconds).context("bad --clip-seconds")?;
    let keys = NodeKeys::load(&dir)?;
    let peer_id = keys.identity.peer_id();
    // A wrong, expired or unreadable credential or trust list stops the start here, rather
    // than leaving requests to go out unverified or to be judged against no roots.
    let credential_chain =
        crate::authority::load_credential_chain(&settings.credentials, &peer_id, clock::now()?)?;
    let trust = crate::trust::TrustList::load(&dir)?;
    tracing::info!(
        credential_links = credential_chain.len(),
        trust_roots = trust.list().len(),
        "authority settings loaded"
    );
    let vault_public = keys.vault.public();
    let vault_copy = AgreementSecret::from_bytes(*keys.vault.to_bytes());
    let store = Store::open(
        dir.root(),
        keys.vault,
        StoreConfig {
            max_age: settings.max_age,
            max_bytes: settings.max_bytes,
        },
    )
    .context("cannot open the clip store")?;
    if !store.recovery().is_clean() {
        tracing::warn!(
            "recovered the store after an unclean stop: {}",
            store.recovery()
        );
    }
    let store = Arc::new(store);
    tracing::info!(%peer_id, data_dir = %dir.root().display(), "starting porchlight node");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let received = ReceivedStore::open(dir.root(), vault_public)
        .context("cannot open the store of received clips")?;
    let audit = AuditLog::open(dir.audit_log()).context("cannot open the audit log")?;
    let cells: BTreeSet<CellId> = settings
        .location
        .map(|(lat, lon)| CellId::containing(lat, lon))
        .transpose()
        .context("bad --location")?
        .into_iter()
        .collect();
    if settings.limits != porchlight_core::RateLimits::default() {
        tracing::info!(limits = ?settings.limits, "request limits raised or lowered by [limits]");
    }
    if settings.fetch_limits != porchlight_core::FetchLimits::default() {
        tracing::info!(limits = ?settings.fetch_limits, "fetch limits raised or lowered by [limits]");
    }
    let node_config = NodeConfig {
        trust_roots: trust.roots(),
        cells: cells.clone(),
        credential_chain,
        limits: settings.limits,
        fetch_limits: settings.fetch_limits,
        rules: settings.rules.clone(),
        // A request for the last few minutes waits for the clip being recorded.
        live_clip_length: (!cameras.is_empty())
            .then(|| std::time::Duration::from_secs(settings.clip_seconds)),
    };
    let mut seed = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(seed.as_mut());
    let mut node = Node::new(
        node_config,
        SigningIdentity::from_secret_bytes(&keys.identity.to_secret_bytes()),
        *seed,
        clock::now()?,
    );
    if let Some(last) = audit.last_entry() {
        node.resume_audit(last).context(
            "the audit log does not continue this node's chain; run `porchlight audit verify`",
        )?;
    }
    let state_path = dir.consent_state();
    node.restore(crate::consent_state::load(&state_path)?)
        .context("cannot restore the consent state")?;
    let state = DaemonParts {
        cells,
        identity: keys.identity,
        vault: vault_copy,
        node,
        received,
        audit,
        dir,
        settings,
        cameras,
        clip_len,
        peer_id: peer_id.to_string(),
        vault_public_key: hex::encode(vault_public.as_bytes()),
        store,
    };
    runtime.block_on(serve(state))
}

struct DaemonParts {
    cells: BTreeSet<CellId>,
    identity: SigningIdentity,
    vault: AgreementSecret,
    node: Node,
    received: ReceivedStore,
    audit: AuditLog,
    dir: DataDir,
    settings: Settings,
    cameras: Vec<capture::CameraSpec>,
    clip_len: ClipLength,
    peer_id: String,
    vault_public_key: String,
    store: Arc<Store>,
}

async fn serve(parts: DaemonParts) -> anyhow::Result<()> {
    let DaemonParts {
        cells,
        identity,
        vault,
        node,
        received,
        audit,
        dir,
        settings,
        cameras,
        clip_len,
        peer_id,
        vault_public_key,
        store,
    } = parts;
    let listener = TcpListener::bind(settings.api).await.with_context(|| {
        format!(
            "cannot listen on {}; is another program using it? choose another address with --api",
            settings.api
        )
    })?;
    let address = listener
        .local_addr()
        .context("cannot read the API's address")?;
    if !address.ip().is_loopback() {
        tracing::warn!(
            api = %address,
            "the local API listens beyond this machine: its admin token and exported video cross the network unencrypted; prefer 127.0.0.1"
        );
    }

    // A fresh admin token per start, readable by the owner only.
    let mut token_bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(token_bytes.as_mut());
    let token = Zeroizing::new(hex::encode(token_bytes.as_ref()));
    replace_secret(&dir.api_token(), token.as_bytes())?;
    let endpoint = ApiEndpoint {
        address,
        pid: std::process::id(),
    };
    let endpoint_json = serde_json::to_vec_pretty(&endpoint).context("cannot encode api.json")?;
    replace_file(&dir.api_address(), &endpoint_json, 0o644)?;

    // The consent driver: the core on its own thread, fed by the mesh, the store and the API.
    let (driver, driver_inputs) = crate::driver::channel();
    let mesh_driver = driver.clone();
    let (mesh, mesh_task) = Mesh::start(
        MeshConfig {
            identity_secret: identity.to_secret_bytes(),
            listen: parse_multiaddrs("listen", &settings.listen)?,
            bootstrap: parse_multiaddrs("bootstrap", &settings.bootstrap)?,
            relay_server: settings.relay_server,
            mdns: settings.mdns,
            cells,
            peer_book: dir.peer_book(),
        },
        move |event| mesh_driver.send(DriverInput::Mesh(event)),
    )?;
    let transfers = Transfers::new(
        mesh.control(),
        driver.clone(),
        received.clone(),
        tokio::runtime::Handle::current(),
    );
    transfers.serve_incoming()?;
    // Every stored clip can match a request from the start.
    for record in store
        .list(&crate::store::ClipFilter::default())
        .context("cannot list the stored clips")?
    {
        driver.send(DriverInput::ClipAdded {
            clip_id: record.clip_id,
            camera: record.camera,
            start: record.start,
            end: record.end,
        });
    }
    // `tokens list` and `tokens revoke` keep working across a restart.
    let history: Vec<_> = crate::audit_log::read_all(&dir.audit_log())
        .map(|records| records.into_iter().map(|record| record.entry).collect())
        .unwrap_or_default();
    let ledger = Ledger::rebuild(
        &history,
        &received.list().unwrap_or_default(),
        node.peer_id(),
    );
    let health = Health::default();
    let core = Driver {
        node,
        store: store.clone(),
        received,
        audit,
        audit_identity: identity,
        mesh: mesh.clone(),
        transfers,
        ledger,
        vault,
        saved_generation: 0,
        state_path: dir.consent_state(),
        health: health.clone(),
        recovery: Recovery::default(),
    };
    let driver_thread = std::thread::Builder::new()
        .name("consent-driver".into())
        .spawn(move || core.run(driver_inputs))
        .context("cannot start the consent driver")?;

    // Cameras deliver segments on a channel; one thread seals them into the store in order.
    let (segments_tx, segments_rx) = mpsc::channel::<Segment>();
    let options = CaptureOptions {
        clip_length: clip_len,
        ..CaptureOptions::default()
    };
    let supervisor =
        CaptureSupervisor::start(cameras, options, segments_tx).context("cannot start capture")?;
    let pump_store = store.clone();
    let pump_driver = driver.clone();
    let pump = std::thread::Builder::new()
        .name("segment-pump".into())
        .spawn(move || pump_segments(segments_rx, &pump_store, &pump_driver))
        .context("cannot start the segment pump")?;

    let retention_store = store.clone();
    let retention_driver = driver.clone();
    let retention = tokio::spawn(async move {
        let mut every = tokio::time::interval(RETENTION_EVERY);
        loop {
            every.tick().await;
            let store = retention_store.clone();
            let driver = retention_driver.clone();
            let _ = tokio::task::spawn_blocking(move || apply_retention(&store, &driver)).await;
        }
    });

    let camera_handle = supervisor.status_handle();
    let cameras: CameraStates = Arc::new(move || {
        camera_handle
            .snapshot()
            .into_iter()
            .map(|camera| {
                let (state, detail) = match camera.status {
                    CameraStatus::Starting => ("starting", None),
                    CameraStatus::Recording => ("recording", None),
                    CameraStatus::Retrying {
                        attempt,
                        next_retry_at,
                        last_error,
                    } => (
                        "retrying",
                        Some(format!(
                            "attempt {attempt} failed: {last_error}; next try at {}",
                            rfc3339(next_retry_at)
                        )),
                    ),
                    CameraStatus::Stopped => ("stopped", None),
                };
                CameraView {
                    name: camera.name,
                    source: camera.spec,
                    state: state.to_owned(),
                    detail,
                    clips_recorded: camera.clips_delivered,
                    last_clip_at: camera.last_clip_at.map(rfc3339),
                }
            })
            .collect()
    });
    tokio::spawn(print_ready(
        settings.name.clone(),
        address.to_string(),
        mesh.clone(),
        cameras.clone(),
    ));
    let api_state = Arc::new(ApiState {
        name: settings.name.clone(),
        peer_id,
        vault_public_key,
        api_address: address.to_string(),
        started_at: clock::now()?,
        token,
        store: store.clone(),
        cameras,
        driver: Some(driver.clone()),
        mesh: Some(mesh.clone()),
        health,
    });
    tracing::info!(api = %address, "local API listening");
    let served = axum::serve(listener, router(api_state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the local API failed");

    tracing::info!("stopping: finishing the clips in progress");
    retention.abort();
    let stopped = tokio::task::spawn_blocking(move || {
        if let Err(err) = supervisor.stop() {
            tracing::error!(error = %err, "a camera did not stop cleanly");
        }
        // The supervisor held the last sender: the pump drains what was delivered and ends.
        pump.join()
    })
    .await;
    // Every clip is sealed; the driver finishes what it was given, then the mesh stops.
    driver.send(DriverInput::Stop);
    let _ = tokio::task::spawn_blocking(move || driver_thread.join()).await;
    // The last handle gone, the swarm saves its peer book and ends.
    drop(mesh);
    if tokio::time::timeout(Duration::from_secs(3), mesh_task)
        .await
        .is_err()
    {
        tracing::warn!("the mesh did not stop in time");
    }
    let _ = std::fs::remove_file(dir.api_address());
    let _ = std::fs::remove_file(dir.api_token());
    match stopped {
        Ok(Ok(())) => {}
        _ => tracing::error!(
            "the segment pump did not stop cleanly; the next start recovers the store"
        ),
    }
    // Every clip was flushed when it was stored; dropping the store releases its lock.
    drop(store);
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Prints, once the mesh listens (or after a few seconds), the one summary an owner reads
/// at start: where the API and the mesh are, what is recorded, and how to stop.
async fn print_ready(name: String, api: String, mesh: Mesh, cameras: CameraStates) {
    let mut addresses = Vec::new();
    for _ in 0..30 {
        if let Some(status) = mesh.status().await {
            addresses = status
                .listen_addresses
                .iter()
                .map(|address| format!("{address}/p2p/{}", status.peer_id))
                .collect();
            if !addresses.is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cameras: Vec<String> = cameras()
        .into_iter()
        .map(|camera| format!("{} ({})", camera.name, camera.source))
        .collect();
    let mut summary = format!(
        "porchlight node {name:?} is ready\n  api      {api}   (porchlight status, requests list, ...)\n"
    );
    if addresses.is_empty() {
        summary.push_str("  mesh     not listening yet (see the log)\n");
    }
    for address in &addresses {
        summary.push_str(&format!("  mesh     {address}\n"));
    }
    summary.push_str(&format!(
        "  cameras  {}\n  stop     Ctrl-C, or SIGTERM (systemctl stop porchlight): clips in progress are sealed first",
        if cameras.is_empty() {
            "none".to_owned()
        } else {
            cameras.join(", ")
        }
    ));
    eprintln!("{summary}");
}

/// Seals every segment into the store, in order, until every camera has stopped, and tells
/// the driver about each new clip.
fn pump_segments(segments: mpsc::Receiver<Segment>, store: &Store, driver: &DriverHandle) {
    for segment in segments {
        let needed = segment.mp4.len() as u64 + WRITE_MARGIN;
        if store.available_space().is_ok_and(|free| free < needed) {
            make_room(store, needed, driver);
        }
        let mut result = store.add_segment(&segment);
        if matches!(&result, Err(err) if err.is_disk_full()) {
            make_room(store, needed, driver);
            result = store.add_segment(&segment);
        }
        match result {
            // The store logs each stored clip; this is the pump's own trace.
            Ok(record) => {
                tracing::debug!(clip = %record.clip_id, "segment sealed");
                driver.send(DriverInput::ClipAdded {
                    clip_id: record.clip_id,
                    camera: record.camera,
                    start: record.start,
                    end: record.end,
                });
            }
            Err(err) => tracing::error!(
                camera = %segment.camera,
                error = %err,
                "could not store a clip; it is lost (nothing partial was kept)"
            ),
        }
    }
}

fn make_room(store: &Store, bytes: u64, driver: &DriverHandle) {
    let now = clock::now().unwrap_or(Timestamp::EPOCH);
    let result = store.free_space_for(bytes, now);
    if let Ok(report) = &result {
        for deleted in &report.deleted {
            driver.send(DriverInput::ClipRemoved(deleted.clip_id));
        }
    }
    match result {
        Ok(report) if report.satisfied => tracing::warn!(
            deleted = report.deleted.len(),
            "disk nearly full: deleted the oldest clips to make room"
        ),
        Ok(report) => tracing::error!(
            free = report.available_after,
            wanted = bytes,
            "disk full and held clips take the space: new clips cannot be stored until space is freed"
        ),
        Err(err) => tracing::error!(error = %err, "disk full and making room failed"),
    }
}

fn apply_retention(store: &Store, driver: &DriverHandle) {
    let Ok(now) = clock::now() else { return };
    match store.apply_retention(now) {
        Ok(report) if !report.deleted.is_empty() => {
            tracing::info!(
                deleted = report.deleted.len(),
                freed = report.freed_bytes,
                "retention deleted old clips"
            );
            for deleted in &report.deleted {
                driver.send(DriverInput::ClipRemoved(deleted.clip_id));
            }
        }
        Ok(_) => {}
        Err(err) => tracing::error!(error = %err, "retention failed; it runs again in a minute"),
    }
}

fn parse_multiaddrs(what: &str, addresses: &[String]) -> anyhow::Result<Vec<Multiaddr>> {
    addresses
        .iter()
        .map(|address| {
            address.parse::<Multiaddr>().with_context(|| {
                format!(
                    "{what} address {address:?} is not a multiaddr such as /ip4/0.0.0.0/tcp/4001"
                )
            })
        })
        .collect()
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
