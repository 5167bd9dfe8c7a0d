//! The consent routes of the local API: send a request, list and decide incoming ones,
//! list and revoke tokens, fetch and export granted footage, and the mesh's status.
//!
//! Each handler checks its input (ids, times, durations, areas), hands one
//! [`Command`] to the driver thread and maps its answer to JSON. The driver and the core
//! decide; these handlers only translate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Json, Router, routing::get, routing::post};
use porchlight_protocol::geo::cells_covering;
use porchlight_protocol::{ClipId, PeerId, RequestId, RequestTarget, TimeWindow, TokenId};
use serde::{Deserialize, Serialize};

use super::server::{ApiError, ApiState};
use super::views::parse_rfc3339;
use crate::driver::{Command, CommandError, CommandReply};
use crate::ledger::{RequestsView, TokensView};
use crate::mesh::{MeshStatus, from_libp2p, peer_of};

/// `POST /v1/requests`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendRequestBody {
    /// A peer id, or a multiaddr ending in `/p2p/PEER_ID`.
    pub peer: Option<String>,
    /// `LAT,LON,RADIUS_M`.
    pub area: Option<String>,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub case: Option<String>,
    /// How long access is asked for, e.g. `2h` (default 24h).
    pub access: Option<String>,
}

/// `POST /v1/requests/{id}/approve`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApproveBody {
    /// e.g. `2h`; default 24h; capped at 30 days.
    pub duration: Option<String>,
    /// Clip ids; default every matching clip.
    pub clips: Option<Vec<String>>,
    #[serde(default)]
    pub retain: bool,
}

/// `POST /v1/requests/{id}/deny`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DenyBody {
    /// Sent to the requester; without one the deny is silent.
    pub message: Option<String>,
}

/// `POST /v1/fetch/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FetchBody {
    /// An absolute directory to write decrypted MP4 files into.
    pub output_dir: Option<String>,
}

/// `POST /v1/requests`: the new request's id, and a note when its window is not all
/// recorded yet (see [`crate::ledger::window_note`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestSentAnswer {
    pub id: String,
    pub window_note: Option<String>,
}

/// Answers that name an id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdAnswer {
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchAnswer {
    pub exported: Vec<String>,
}

/// The default access a requester asks for and an owner grants.
pub const DEFAULT_ACCESS: Duration = Duration::from_secs(24 * 3600);

pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/requests", get(list_requests).post(send_request))
        .route("/v1/requests/{id}/approve", post(approve))
        .route("/v1/requests/{id}/deny", post(deny))
        .route("/v1/tokens", get(list_tokens))
        .route("/v1/tokens/{id}/revoke", post(revoke))
        .route("/v1/fetch/{id}", post(fetch))
        .route("/v1/mesh", get(mesh_status))
}

async fn run(state: &ApiState, command: Command) -> Result<CommandReply, ApiError> {
    let Some(driver) = &state.driver else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node runs without the mesh",
        ));
    };
    driver.command(command).await.map_err(|err| match err {
        CommandError::Invalid(message) => ApiError::new(StatusCode::BAD_REQUEST, message),
        CommandError::NotFound(message) => ApiError::new(StatusCode::NOT_FOUND, message),
        CommandError::Failed(message) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message),
        CommandError::Unwritable(message) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    })
}

fn unexpected() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "unexpected answer from the node",
    )
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// Parses a duration such as `90m` or `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("{text:?} is not a duration such as 30m, 2h or 7d ({err})"))
}

/// Parses `LAT,LON,RADIUS_M` into the cells it covers.
pub fn parse_area(text: &str) -> Result<Vec<porchlight_protocol::CellId>, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [lat, lon, radius] = parts.as_slice() else {
        return Err(format!(
            "{text:?} is not LAT,LON,RADIUS_M (for example 52.37,4.89,500)"
        ));
    };
    let number = |part: &str, what: &str| {
        part.parse::<f64>()
            .map_err(|_| format!("{what} {part:?} in {text:?} is not a number"))
    };
    cells_covering(
        number(lat, "latitude")?,
        number(lon, "longitude")?,
        number(radius, "radius")?,
    )
    .map_err(|err| format!("area {text:?}: {err}"))
}

async fn send_request(
    State(state): State<Arc<ApiState>>,
    Json(body): Json<SendRequestBody>,
) -> Result<Json<RequestSentAnswer>, ApiError> {
    let (target, target_label) = match (&body.peer, &body.area) {
        (Some(peer), None) => {
            let peer_id = if peer.starts_with('/') {
                let address: libp2p::Multiaddr = peer
                    .parse()
                    .map_err(|err| bad(format!("{peer:?} is not a multiaddr: {err}")))?;
                let libp2p_peer = peer_of(&address).ok_or_else(|| {
                    bad(format!("{peer:?} does not end in /p2p/PEER_ID, so the owner cannot be authenticated"))
                })?;
                let peer_id = from_libp2p(&libp2p_peer)
                    .ok_or_else(|| bad(format!("{libp2p_peer} is not an Ed25519 peer")))?;
                if let Some(mesh) = &state.mesh {
                    mesh.add_address(peer_id, address);
                }
                peer_id
            } else {
                peer.parse::<PeerId>()
                    .map_err(|err| bad(format!("{peer:?} is not a peer id: {err}")))?
            };
            (RequestTarget::Peer(peer_id), peer_id.to_string())
        }
        (None, Some(area)) => {
            let cells = parse_area(area).map_err(bad)?;
            let label = format!("area {area} ({} cells)", cells.len());
            (RequestTarget::Area(cells), label)
        }
        _ => return Err(bad("give exactly one of --peer or --area")),
    };
    let window = TimeWindow {
        from: parse_rfc3339(&body.from).map_err(bad)?,
        to: parse_rfc3339(&body.to).map_err(bad)?,
    };
    let access = body
        .access
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(bad)?
        .unwrap_or(DEFAULT_ACCESS);
    match run(
        &state,
        Command::SendRequest {
            target,
            target_label,
            window,
            reason: body.reason,
            case_number: body.case,
            access,
        },
    )
    .await?
    {
        CommandReply::RequestSent(id) => Ok(Json(RequestSentAnswer {
            id: id.to_string(),
            window_note: crate::clock::now()
                .ok()
                .and_then(|now| crate::ledger::window_note(&window, now)),
        })),
        _ => Err(unexpected()),
    }
}

fn request_id(text: &str) -> Result<RequestId, ApiError> {
    text.parse::<RequestId>().map_err(|_| {
        bad(format!(
            "{text:?} is not a request id; `porchlight requests list` shows them"
        ))
    })
}

fn token_id(text: &str) -> Result<TokenId, ApiError> {
    text.parse::<TokenId>().map_err(|_| {
        bad(format!(
            "{text:?} is not a token id; `porchlight tokens list` shows them"
        ))
    })
}

async fn list_requests(State(state): State<Arc<ApiState>>) -> Result<Json<RequestsView>, ApiError> {
    match run(&state, Command::ListRequests).await? {
        CommandReply::Requests(view) => Ok(Json(view)),
        _ => Err(unexpected()),
    }
}

async fn approve(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Json(body): Json<ApproveBody>,
) -> Result<Json<IdAnswer>, ApiError> {
    let request_id = request_id(&id)?;
    let duration = body
        .duration
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(bad)?
        .unwrap_or(DEFAULT_ACCESS);
    let clips = body
        .clips
        .map(|clips| {
            clips
                .iter()
                .map(|clip| {
                    clip.parse::<ClipId>()
                        .map_err(|_| bad(format!("{clip:?} is not a clip id")))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    match run(
        &state,
        Command::Approve {
            request_id,
            duration,
            clips,
            retain: body.retain,
        },
    )
    .await?
    {
        CommandReply::TokenIssued(token) => Ok(Json(IdAnswer {
            id: token.to_string(),
        })),
        _ => Err(unexpected()),
    }
}

async fn deny(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Json(body): Json<DenyBody>,
) -> Result<Json<IdAnswer>, ApiError> {
    let request_id = request_id(&id)?;
    run(
        &state,
        Command::Deny {
            request_id,
            message: body.message,
        },
    )
    .await?;
    Ok(Json(IdAnswer { id }))
}

async fn list_tokens(State(state): State<Arc<ApiState>>) -> Result<Json<TokensView>, ApiError> {
    match run(&state, Command::ListTokens).await? {
        CommandReply::Tokens(view) => Ok(Json(view)),
        _ => Err(unexpected()),
    }
}

async fn revoke(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<IdAnswer>, ApiError> {
    let token_id = token_id(&id)?;
    run(&state, Command::Revoke { token_id }).await?;
    Ok(Json(IdAnswer { id }))
}

async fn fetch(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Json(body): Json<FetchBody>,
) -> Result<Json<FetchAnswer>, ApiError> {
    let export_to = match body.output_dir {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if !dir.is_absolute() {
                return Err(bad(format!(
                    "output directory {} must be absolute",
                    dir.display()
                )));
            }
            Some(dir)
        }
        None => None,
    };
    match run(&state, Command::Fetch { id, export_to }).await? {
        CommandReply::Fetched { exported } => Ok(Json(FetchAnswer {
            exported: exported.iter().map(|p| p.display().to_string()).collect(),
        })),
        _ => Err(unexpected()),
    }
}

async fn mesh_status(State(state): State<Arc<ApiState>>) -> Result<Json<MeshStatus>, ApiError> {
    let Some(mesh) = &state.mesh else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node runs without the mesh",
        ));
    };
    mesh.status()
        .await
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the mesh has stopped"))
}
