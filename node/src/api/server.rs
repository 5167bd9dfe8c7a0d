//! The daemon's side of the local API: axum routes over the store and the camera states.
//!
//! Every route requires `Authorization: Bearer <admin token>`, compared in constant time,
//! and a `Host` that names this listener (`host`).
//! Store calls are blocking (sled, files), so they run on tokio's blocking pool. Errors
//! answer with a status code and `{"error": "..."}`, worded for the person at the CLI.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use porchlight_protocol::{ClipId, Timestamp};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::host::{AllowedHosts, check_host};
use super::views::{
    CameraView, ClipTotalsView, ClipView, DegradedView, DiskView, ErrorView, IdView, ImportRequest,
    RebuildView, StatusView, parse_rfc3339, rfc3339,
};
use crate::store::{ClipFilter, ClipRecord, Store, StoreError};

/// A snapshot of every camera's state, supplied by the daemon.
pub type CameraStates = Arc<dyn Fn() -> Vec<CameraView> + Send + Sync>;

/// What the handlers share.
pub struct ApiState {
    pub name: String,
    pub peer_id: String,
    pub vault_public_key: String,
    pub api_address: String,
    pub started_at: Timestamp,
    pub token: Zeroizing<String>,
    pub store: Arc<Store>,
    pub cameras: CameraStates,
    /// The consent driver and the mesh; `None` in a node started without networking.
    pub driver: Option<crate::driver::DriverHandle>,
    pub mesh: Option<crate::mesh::Mesh>,
    /// Which durable writes are failing (the driver keeps it).
    pub health: crate::health::Health,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The API's routes, answering only to the loopback names of `state.api_address`
/// ([`AllowedHosts::loopback`]).
pub fn router(state: Arc<ApiState>) -> Router {
    let hosts = match state.api_address.parse() {
        Ok(bound) => AllowedHosts::loopback(bound),
        // Not an address: answer to exactly what the daemon said it listens on.
        Err(_) => {
            AllowedHosts::loopback(([127, 0, 0, 1], 0).into()).with_name(state.api_address.clone())
        }
    };
    router_for_hosts(state, hosts)
}

/// The API's routes, answering only to requests whose `Host` is one of `hosts`.
pub fn router_for_hosts(state: Arc<ApiState>, hosts: AllowedHosts) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/id", get(id))
        .route("/v1/clips", get(list_clips))
        .route("/v1/clips/import", post(import_clip))
        .route("/v1/clips/{clip}", get(get_clip))
        .route("/v1/clips/{clip}/mp4", get(export_clip))
        .route("/v1/clips/{clip}/hold", post(hold_clip))
        .route("/v1/clips/{clip}/release", post(release_clip))
        .route("/v1/store/rebuild", post(rebuild))
        .merge(super::consent::routes())
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        // Outermost, so a request for another name learns nothing, not even about the token.
        .layer(middleware::from_fn_with_state(Arc::new(hosts), check_host))
        .with_state(state)
}

async fn require_token(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool = presented.as_bytes().ct_eq(state.token.as_bytes()).into();
    if !ok {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token; use the CLI with this node's --data-dir",
        )
        .into_response();
    }
    next.run(request).await
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        let status = match &err {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::InvalidClip { .. }
            | StoreError::Empty { .. }
            | StoreError::ImportRead { .. }
            | StoreError::Held(_)
            | StoreError::Protected { .. } => StatusCode::BAD_REQUEST,
            StoreError::DiskFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // The chain, not just the top line: "could not write clip: No space left on device".
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        ApiError::new(status, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorView {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// Runs a blocking store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store task failed; see the daemon's log",
        )
    })?
}

fn clip_view(record: &ClipRecord) -> ClipView {
    ClipView {
        id: record.clip_id.to_string(),
        camera: record.camera.clone(),
        start: rfc3339(record.start),
        end: rfc3339(record.end),
        bytes: record.size,
        held: record.held,
    }
}

/// Finds one clip by its full id or a unique prefix of at least 8 hex digits.
fn resolve_clip(store: &Store, text: &str) -> Result<ClipRecord, ApiError> {
    if let Ok(id) = text.parse::<ClipId>() {
        return Ok(store.get(&id)?);
    }
    let prefix = text.to_ascii_lowercase();
    if prefix.len() < 8 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "{text:?} is not a clip id; give the full id or at least its first 8 hex digits (see `porchlight clips list`)"
        )));
    }
    let mut matches: Vec<ClipRecord> = store
        .list(&ClipFilter::default())?
        .into_iter()
        .filter(|record| record.clip_id.to_string().starts_with(&prefix))
        .collect();
    match matches.len() {
        0 => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no clip {text}; list clips with `porchlight clips list`"),
        )),
        1 => Ok(matches.remove(0)),
        n => Err(ApiError::bad_request(format!(
            "{n} clips start with {text}; give more digits"
        ))),
    }
}

async fn status(State(state): State<Arc<ApiState>>) -> Result<Json<StatusView>, ApiError> {
    let store = state.store.clone();
    let (stats, free) =
        blocking(move || Ok((store.stats()?, store.available_space().ok()))).await?;
    let cameras = (state.cameras)();
    let mut degraded: Vec<DegradedView> = state
        .health
        .problems()
        .into_iter()
        .map(|(component, problem)| DegradedView {
            component: component.label().to_owned(),
            since: Some(rfc3339(problem.since)),
            last_failure: Some(rfc3339(problem.last_failure)),
            failures: problem.failures,
            error: problem.error,
            effect: "no grant, fetch or revocation can be recorded, so none is carried out"
                .to_owned(),
        })
        .collect();
    for camera in cameras.iter().filter(|camera| camera.state == "retrying") {
        degraded.push(DegradedView {
            component: format!("camera {}", camera.name),
            since: None,
            last_failure: None,
            failures: 1,
            error: camera.detail.clone().unwrap_or_default(),
            effect: "this camera records nothing until it opens again (it is retried by itself)"
                .to_owned(),
        });
    }
    if free.is_some_and(|free| free < DISK_FULL_BELOW) {
        degraded.push(DegradedView {
            component: "disk".to_owned(),
            since: None,
            last_failure: None,
            failures: 1,
            error: format!(
                "{} bytes free on the clip store's disk",
                free.unwrap_or_default()
            ),
            effect: "retention deletes the oldest clips that no grant or hold keeps, to go on recording; free space or lower the retention"
                .to_owned(),
        });
    }
    Ok(Json(StatusView {
        name: state.name.clone(),
        peer_id: state.peer_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: rfc3339(state.started_at),
        cameras,
        clips: ClipTotalsView {
            count: stats.clips,
            bytes: stats.bytes,
            oldest: stats.oldest.map(rfc3339),
            newest: stats.newest.map(rfc3339),
        },
        disk: DiskView { free_bytes: free },
        degraded,
    }))
}

/// Below this much free space `status` calls the disk full: no clip fits any more (the
/// recorder wants a clip's size plus 16 MiB and deletes old footage to get it), and the
/// consent records are close to their own 64 KiB floor.
const DISK_FULL_BELOW: u64 = 1 << 20;

async fn id(State(state): State<Arc<ApiState>>) -> Json<IdView> {
    let listen_addresses = match &state.mesh {
        Some(mesh) => mesh
            .status()
            .await
            .map(|status| {
                status
                    .listen_addresses
                    .iter()
                    .map(|address| format!("{address}/p2p/{}", status.peer_id))
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    Json(IdView {
        peer_id: state.peer_id.clone(),
        vault_public_key: state.vault_public_key.clone(),
        listen_addresses,
        api: state.api_address.clone(),
    })
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    camera: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

async fn list_clips(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ClipView>>, ApiError> {
    let parse = |text: Option<String>| {
        text.map(|t| parse_rfc3339(&t))
            .transpose()
            .map_err(ApiError::bad_request)
    };
    let filter = ClipFilter {
        camera: query.camera,
        from: parse(query.from)?,
        to: parse(query.to)?,
    };
    let store = state.store.clone();
    let records = blocking(move || Ok(store.list(&filter)?)).await?;
    Ok(Json(records.iter().map(clip_view).collect()))
}

async fn get_clip(
    State(state): State<Arc<ApiState>>,
    Path(clip): Path<String>,
) -> Result<Json<ClipView>, ApiError> {
    let store = state.store.clone();
    let record = blocking(move || resolve_clip(&store, &clip)).await?;
    Ok(Json(clip_view(&record)))
}

async fn hold_clip(
    State(state): State<Arc<ApiState>>,
    Path(clip): Path<String>,
) -> Result<Json<ClipView>, ApiError> {
    set_hold(state, clip, true).await
}

async fn release_clip(
    State(state): State<Arc<ApiState>>,
    Path(clip): Path<String>,
) -> Result<Json<ClipView>, ApiError> {
    set_hold(state, clip, false).await
}

async fn set_hold(
    state: Arc<ApiState>,
    clip: String,
    hold: bool,
) -> Result<Json<ClipView>, ApiError> {
    let store = state.store.clone();
    let record = blocking(move || {
        let record = resolve_clip(&store, &clip)?;
        if hold {
            store.hold(&record.clip_id)?;
        } else {
            store.release(&record.clip_id)?;
        }
        Ok(store.get(&record.clip_id)?)
    })
    .await?;
    Ok(Json(clip_view(&record)))
}

async fn import_clip(
    State(state): State<Arc<ApiState>>,
    Json(request): Json<ImportRequest>,
) -> Result<Json<ClipView>, ApiError> {
    let path = PathBuf::from(&request.path);
    if !path.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "import path {} must be absolute",
            path.display()
        )));
    }
    let start = request
        .start
        .as_deref()
        .map(parse_rfc3339)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let store = state.store.clone();
    let record = blocking(move || {
        let file = std::fs::File::open(&path).map_err(|err| {
            ApiError::bad_request(format!("cannot read import file {}: {err}", path.display()))
        })?;
        let meta = file.metadata().map_err(|err| {
            ApiError::bad_request(format!("cannot read import file {}: {err}", path.display()))
        })?;
        if !meta.is_file() {
            return Err(ApiError::bad_request(format!(
                "import file {} is not a regular file",
                path.display()
            )));
        }
        let duration = crate::media::probe_duration(&path)
            .map_err(|err| ApiError::bad_request(format!("{err:#}")))?;
        let start = match start {
            Some(start) => start,
            None => crate::media::modified_time(&meta).saturating_sub(duration),
        };
        let end = start.saturating_add(duration);
        Ok(store.import(file, &request.camera, start, end)?)
    })
    .await?;
    // The core matches requests against the clips it was told of: an imported clip is
    // footage like any recorded one.
    if let Some(driver) = &state.driver {
        driver.send(crate::driver::DriverInput::ClipAdded {
            clip_id: record.clip_id,
            camera: record.camera.clone(),
            start: record.start,
            end: record.end,
        });
    }
    Ok(Json(clip_view(&record)))
}

async fn rebuild(State(state): State<Arc<ApiState>>) -> Result<Json<RebuildView>, ApiError> {
    let store = state.store.clone();
    let report = blocking(move || Ok(store.rebuild()?)).await?;
    Ok(Json(RebuildView {
        clips: (report.clips_ok + report.reindexed.len()) as u64,
        quarantined: report.quarantined.len() as u64,
        summary: report.to_string(),
    }))
}

/// Streams a clip's decrypted MP4. Each chunk is authenticated before it is sent; if a later
/// chunk fails, the stream is cut off (the client sees a short body against Content-Length
/// and discards what it got).
async fn export_clip(
    State(state): State<Arc<ApiState>>,
    Path(clip): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let record = blocking(move || resolve_clip(&store, &clip)).await?;
    let plaintext_len = record.media_len;
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter { tx: tx.clone() };
        if let Err(err) = store.export(&record.clip_id, &mut writer) {
            tracing::warn!(clip = %record.clip_id, error = %err, "export failed part-way");
            let _ = tx.blocking_send(Err(io::Error::other(err.to_string())));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(plaintext_len));
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// A `Write` that hands each write to the response body.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
