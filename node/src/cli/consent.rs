//! `porchlight request`, `requests list|approve|deny`, `tokens list|revoke` and `fetch`:
//! the consent flow from the command line, through the running daemon's local API.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::api::client::ApiClient;
use crate::api::consent::{
    ApproveBody, DenyBody, FetchAnswer, FetchBody, IdAnswer, RequestSentAnswer, SendRequestBody,
};
use crate::ledger::{IncomingView, OutgoingView, RequestsView, TokensView};

use super::print;

/// `porchlight request`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["peer", "area"])))]
pub struct RequestArgs {
    /// The home to ask: a peer id, or a multiaddr ending in /p2p/PEER_ID
    #[arg(long, value_name = "PEER_ID_OR_MULTIADDR")]
    pub peer: Option<String>,
    /// Every opted-in home within RADIUS_M metres of LAT,LON (at most 5000 m)
    #[arg(long, value_name = "LAT,LON,RADIUS_M", allow_hyphen_values = true)]
    pub area: Option<String>,
    /// Start of the footage window (RFC 3339, e.g. 2026-11-29T13:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// End of the footage window (RFC 3339)
    #[arg(long, value_name = "TIME")]
    pub to: String,
    /// Why you ask; the owner reads this
    #[arg(long)]
    pub reason: String,
    /// A case or incident number
    #[arg(long, value_name = "ID")]
    pub case: Option<String>,
    /// How long you ask to have access, e.g. 2h [default: 24h]
    #[arg(long = "for", value_name = "DURATION")]
    pub access: Option<String>,
    /// Print JSON (the local API's own shape) instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// Incoming and outgoing requests, with their state
    List {
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Grant a request: issue a consent token and send it
    Approve {
        /// The request id, as `requests list` shows it
        request_id: String,
        /// How long the grant lasts, e.g. 2h [default: 24h; at most 30d]
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Only these clips (comma-separated ids) [default: every matching clip]
        #[arg(long, value_delimiter = ',')]
        clips: Option<Vec<String>>,
        /// Let the requester keep the footage after the grant ends
        #[arg(long)]
        retain: bool,
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Refuse a request (silently, unless a message is given)
    Deny {
        /// The request id, as `requests list` shows it
        request_id: String,
        /// Tell the requester why
        #[arg(long)]
        message: Option<String>,
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Tokens this node issued and received
    List {
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
    /// End a grant now: further fetches are refused and the grantee is told to delete
    Revoke {
        /// The token id, as `tokens list` shows it
        token_id: String,
        /// Print JSON (the local API's own shape) instead of text
        #[arg(long)]
        json: bool,
    },
}

/// `porchlight fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// A request id (every grant it received) or a token id
    pub id: String,
    /// Write the received clips, decrypted, as MP4 files into this directory
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Print JSON (the local API's own shape) instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn request(client: &ApiClient, args: RequestArgs) -> anyhow::Result<()> {
    let body = SendRequestBody {
        peer: args.peer,
        area: args.area,
        from: args.from,
        to: args.to,
        reason: args.reason,
        case: args.case,
        access: args.access,
    };
    let answer: RequestSentAnswer = client.post("/v1/requests", &body)?;
    print(args.json, &answer, |answer| {
        println!("request sent: {}", answer.id);
        if let Some(note) = &answer.window_note {
            println!("note: {note}");
        }
        println!("follow it with `porchlight requests list`");
    })
}

pub fn requests(client: &ApiClient, command: RequestsCommand) -> anyhow::Result<()> {
    match command {
        RequestsCommand::List { json } => {
            let view: RequestsView = client.get("/v1/requests")?;
            print(json, &view, print_requests)
        }
        RequestsCommand::Approve {
            request_id,
            duration,
            clips,
            retain,
            json,
        } => {
            let body = ApproveBody {
                duration,
                clips,
                retain,
            };
            let answer: IdAnswer = client.post(
                &format!("/v1/requests/{}/approve", path_segment(&request_id)?),
                &body,
            )?;
            print(json, &answer, |answer| {
                println!("granted: token {}", answer.id)
            })
        }
        RequestsCommand::Deny {
            request_id,
            message,
            json,
        } => {
            let answer: IdAnswer = client.post(
                &format!("/v1/requests/{}/deny", path_segment(&request_id)?),
                &DenyBody { message },
            )?;
            print(json, &answer, |answer| println!("denied: {}", answer.id))
        }
    }
}

pub fn tokens(client: &ApiClient, command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::List { json } => {
            let view: TokensView = client.get("/v1/tokens")?;
            print(json, &view, |view| {
                if view.tokens.is_empty() {
                    println!("no tokens");
                }
                for token in &view.tokens {
                    println!(
                        "{}  {:8}  {:7}  until {}  {} clip(s){}",
                        token.token_id,
                        token.direction,
                        token.state,
                        token.not_after,
                        token.clips.len(),
                        if token.retain { "  retain" } else { "" }
                    );
                    let other = if token.direction == "issued" {
                        format!("to {}", token.grantee)
                    } else {
                        format!("from {}", token.owner)
                    };
                    println!("    {other}; {} transferred", token.clips_transferred.len());
                    if let Some(grant) = &token.grant_state {
                        println!("    {}", grant.summary);
                    }
                }
            })
        }
        TokensCommand::Revoke { token_id, json } => {
            let answer: IdAnswer = client.post(
                &format!("/v1/tokens/{}/revoke", path_segment(&token_id)?),
                &serde_json::json!({}),
            )?;
            print(json, &answer, |answer| {
                println!("revoked: {}; further fetches are refused", answer.id)
            })
        }
    }
}

pub fn fetch(client: &ApiClient, args: FetchArgs) -> anyhow::Result<()> {
    let output_dir = match args.output {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let dir = dir
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", dir.display()))?;
            Some(dir.display().to_string())
        }
        None => None,
    };
    let exporting = output_dir.is_some();
    let answer: FetchAnswer = client.post(
        &format!("/v1/fetch/{}", path_segment(&args.id)?),
        &FetchBody { output_dir },
    )?;
    print(args.json, &answer, |answer| {
        if !exporting {
            println!("fetching; `porchlight tokens list` shows progress");
        } else if answer.exported.is_empty() {
            println!(
                "nothing received yet; try again once `porchlight tokens list` shows clips transferred"
            );
        }
        for path in &answer.exported {
            println!("wrote {path}");
        }
    })
}

/// Ids are hex: refuse anything else before it reaches a URL.
fn path_segment(id: &str) -> anyhow::Result<&str> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        anyhow::bail!(
            "{id:?} is not an id (hex digits); `porchlight requests list` and `porchlight tokens list` show them"
        );
    }
    Ok(id)
}

fn print_requests(view: &RequestsView) {
    println!("incoming ({})", view.incoming.len());
    for request in &view.incoming {
        print_incoming(request);
    }
    println!("outgoing ({})", view.outgoing.len());
    for request in &view.outgoing {
        print_outgoing(request);
    }
}

fn print_incoming(request: &IncomingView) {
    println!("  {}  {}", request.request_id, request.state.label());
    match &request.authority {
        Some(authority) => println!(
            "    from      {} — verified: {} ({}, {}), issued by {}",
            request.requester_peer,
            authority.name,
            authority.role,
            authority.jurisdiction,
            authority.issuer
        ),
        None => println!(
            "    from      {} — unverified{}",
            request.requester_peer,
            if request.presented_credentials {
                " (presented credentials that did not verify against your trust roots)"
            } else {
                ""
            }
        ),
    }
    println!("    reason    {}", request.reason);
    if let Some(case) = &request.case_number {
        println!("    case      {case}");
    }
    println!("    window    {} .. {}", request.from, request.to);
    println!(
        "    access    {} s{}",
        request.access_seconds,
        if request.area { ", area request" } else { "" }
    );
    for clip in &request.matching_clips {
        println!(
            "    clip      {}  {}  {} .. {}",
            clip.clip_id, clip.camera, clip.start, clip.end
        );
    }
    if let Some(token) = &request.token_id {
        println!("    token     {token}");
    }
}

fn print_outgoing(request: &OutgoingView) {
    println!("  {}  {}", request.request_id, request.state.label());
    println!("    to        {}", request.target);
    println!("    reason    {}", request.reason);
    println!("    window    {} .. {}", request.from, request.to);
    if let Some(note) = &request.window_note {
        println!("    note      {note}");
    }
    for grant in &request.grants {
        match request.grant_states.iter().find(|s| s.token_id == *grant) {
            Some(state) => println!("    grant     token {grant}: {}", state.summary),
            None => println!("    grant     token {grant}"),
        }
    }
    for denial in &request.denials {
        match &denial.message {
            // Peer text, checked by the protocol; quoted so it reads as the owner's words.
            Some(message) => println!("    denied by {}: {message:?}", denial.owner),
            None => println!("    denied by {}", denial.owner),
        }
    }
}
