//! The mesh shell: a libp2p swarm that carries the core's frames between homes.
//!
//! [`Mesh::start`] spawns one tokio task that owns the swarm. The rest of the node talks to
//! it through [`Mesh`] (commands: send a frame to a peer, publish an area request, learn
//! an address, report status) and hears from it through the `on_event` callback
//! ([`MeshEvent::Frame`]: envelope bytes from the peer the transport authenticated). The
//! mesh decides nothing about consent: it never parses an envelope, it only moves bytes
//! and keeps the neighborhood connected.
//!
//! Area requests: a home with a location subscribes to its cell's gossipsub topic and
//! announces itself in Kademlia as a provider of the cell's key. A requester looks up the
//! providers of every cell it names, dials them, and publishes the request to each cell's
//! topic once the homes found are subscribed (or a short settle time has passed), so a home
//! that is only reachable through the lookup still hears the request.
//!
//! - [`behaviour`]: the composed libp2p behaviours and the swarm builder.
//! - [`frames`]: the `/porchlight/request/1` codec.
//! - [`peer_book`]: addresses remembered across restarts.

pub mod behaviour;
pub mod frames;
pub mod peer_book;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use libp2p::kad::{self, GetProvidersOk, QueryResult, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm, autonat, gossipsub, identify, identity, mdns, request_response};
use porchlight_protocol::{CellId, PeerId as ProtoPeerId};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use self::behaviour::{BehaviourOptions, MeshBehaviour, MeshBehaviourEvent, build_swarm};
use self::frames::Received;
use self::peer_book::PeerBook;

/// How the mesh starts.
#[derive(Debug)]
pub struct MeshConfig {
    /// The node's Ed25519 identity secret (the same key that signs its messages).
    pub identity_secret: Zeroizing<[u8; 32]>,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub relay_server: bool,
    pub mdns: bool,
    /// The cells this home answers for (opt-in location); empty for none.
    pub cells: BTreeSet<CellId>,
    /// Where peer addresses are kept across restarts.
    pub peer_book: PathBuf,
}

/// What the mesh tells the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshEvent {
    /// Envelope bytes from `from`, the peer the transport (or gossipsub's signature)
    /// authenticated.
    Frame { from: ProtoPeerId, bytes: Vec<u8> },
}

/// A snapshot for `porchlight mesh` and the tests.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MeshStatus {
    pub peer_id: String,
    pub listen_addresses: Vec<String>,
    pub connected_peers: Vec<String>,
    pub cells: Vec<String>,
    /// Cells whose provider record has been announced to at least one peer.
    pub cells_announced: usize,
    /// AutoNAT's verdict in words: `public at ADDRESS`, `private (behind NAT)` or
    /// `unknown (not checked yet)`.
    pub nat: String,
    pub known_peers: usize,
    /// Each connected peer, its links and whether it shares a cell with this home.
    #[serde(default)]
    pub peers: Vec<PeerLinks>,
}

/// A connected peer as `porchlight mesh` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PeerLinks {
    pub peer_id: String,
    /// Subscribed to one of this home's cell topics: a neighbor in the same area.
    pub in_my_cells: bool,
    pub links: Vec<Link>,
}

/// One connection to a peer.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Link {
    /// The remote address of the connection.
    pub address: String,
    /// `direct`, or `relayed` (through a relay's circuit, until a hole punch upgrades it).
    pub kind: String,
    /// Whether this node dialed it (`outbound`) or was dialed (`inbound`).
    pub direction: String,
}

enum Command {
    Send {
        to: ProtoPeerId,
        bytes: Vec<u8>,
    },
    PublishArea {
        cells: Vec<CellId>,
        bytes: Vec<u8>,
    },
    AddAddress {
        peer: libp2p::PeerId,
        address: Multiaddr,
    },
    Status(oneshot::Sender<MeshStatus>),
}

/// The node's handle on the running mesh. Dropping every clone stops the swarm task.
#[derive(Clone)]
pub struct Mesh {
    commands: mpsc::UnboundedSender<Command>,
    control: libp2p_stream::Control,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Send { .. } => "Send",
            Command::PublishArea { .. } => "PublishArea",
            Command::AddAddress { .. } => "AddAddress",
            Command::Status(_) => "Status",
        })
    }
}

impl Mesh {
    /// Builds the swarm, starts listening and dialing, and spawns its task on the current
    /// tokio runtime. Fails (with the address) if a listen address cannot be bound.
    pub fn start(
        config: MeshConfig,
        on_event: impl FnMut(MeshEvent) + Send + 'static,
    ) -> anyhow::Result<(Mesh, JoinHandle<()>)> {
        let mut secret = config.identity_secret;
        let keypair = identity::Keypair::ed25519_from_bytes(secret.as_mut())
            .context("the node's identity key is not a valid Ed25519 secret")?;
        let mut swarm = build_swarm(
            keypair,
            BehaviourOptions {
                mdns: config.mdns,
                relay_server: config.relay_server,
            },
        )
        .context("cannot build the libp2p swarm")?;
        for address in &config.listen {
            swarm.listen_on(address.clone()).with_context(|| {
                format!("cannot listen on {address}; choose another with --listen")
            })?;
        }
        let control = swarm.behaviour().fetch.new_control();
        let (commands, receiver) = mpsc::unbounded_channel();
        let mut book = PeerBook::load(&config.peer_book);
        for (peer, addresses) in book.iter() {
            for address in addresses {
                swarm.behaviour_mut().kad.add_address(peer, address.clone());
                swarm.add_peer_address(*peer, address.clone());
            }
        }
        let mut bootstrap_peers = Vec::new();
        for address in &config.bootstrap {
            match peer_of(address) {
                Some(peer) => {
                    swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, address.clone());
                    swarm.add_peer_address(peer, address.clone());
                    bootstrap_peers.push((peer, address.clone()));
                }
                None => {
                    tracing::warn!(%address, "a bootstrap address without /p2p/PEER_ID is dialed but cannot seed the DHT")
                }
            }
            if let Err(err) = swarm.dial(address.clone()) {
                tracing::warn!(%address, error = %err, "cannot dial a bootstrap peer");
            }
        }
        // Re-dial a few remembered peers so a restarted home rejoins without bootstrap.
        let remembered: Vec<libp2p::PeerId> = book.iter().map(|(peer, _)| *peer).take(8).collect();
        if config.bootstrap.is_empty() && remembered.is_empty() {
            tracing::info!(
                mdns = config.mdns,
                "no known peers yet: this node is found by homes that dial it{}; give --bootstrap MULTIADDR to join a wider mesh",
                if config.mdns {
                    " or see it on the LAN (mDNS)"
                } else {
                    ""
                }
            );
        }
        for peer in remembered {
            let _ = swarm.dial(peer);
        }
        for cell in &config.cells {
            let topic = gossipsub::IdentTopic::new(cell.topic());
            if let Err(err) = swarm.behaviour_mut().gossipsub.subscribe(&topic) {
                tracing::error!(cell = %cell.topic(), error = ?err, "cannot subscribe to the cell's topic");
            }
        }
        let _ = book.save();
        let task = MeshTask {
            swarm,
            commands: receiver,
            on_event: Box::new(on_event),
            book,
            cells: config.cells,
            bootstrap_peers,
            provide_due: true,
            last_provide: None,
            cells_announced: BTreeSet::new(),
            publishes: Vec::new(),
            relayed: false,
            connections: BTreeMap::new(),
        };
        let handle = tokio::spawn(task.run());
        Ok((Mesh { commands, control }, handle))
    }

    /// Sends envelope bytes to one peer (dialing it if needed). Delivery failures are
    /// logged by the mesh: the protocol's answer to silence is the requester's timeout.
    pub fn send(&self, to: ProtoPeerId, bytes: Vec<u8>) {
        self.command(Command::Send { to, bytes });
    }

    /// Publishes an area request to the homes of `cells`.
    pub fn publish_area(&self, cells: Vec<CellId>, bytes: Vec<u8>) {
        self.command(Command::PublishArea { cells, bytes });
    }

    /// Teaches the mesh an address for a peer (from `--peer MULTIADDR`).
    pub fn add_address(&self, peer: ProtoPeerId, address: Multiaddr) {
        if let Some(peer) = to_libp2p(&peer) {
            self.command(Command::AddAddress { peer, address });
        }
    }

    /// The mesh's state, or `None` if its task has stopped.
    pub async fn status(&self) -> Option<MeshStatus> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Status(reply));
        answer.await.ok()
    }

    /// The stream control for the fetch protocol.
    pub fn control(&self) -> libp2p_stream::Control {
        self.control.clone()
    }

    fn command(&self, command: Command) {
        if self.commands.send(command).is_err() {
            tracing::error!("the mesh has stopped; a frame was not sent");
        }
    }
}

/// Converts a Porchlight peer to libp2p's type (always possible for a valid key).
pub fn to_libp2p(peer: &ProtoPeerId) -> Option<libp2p::PeerId> {
    libp2p::PeerId::from_bytes(&peer.to_libp2p_bytes()).ok()
}

/// Converts a libp2p peer to Porchlight's: only Ed25519 peers speak Porchlight.
pub fn from_libp2p(peer: &libp2p::PeerId) -> Option<ProtoPeerId> {
    ProtoPeerId::from_libp2p_bytes(&peer.to_bytes()).ok()
}

/// The `/p2p/PEER_ID` at the end of an address, if any.
pub fn peer_of(address: &Multiaddr) -> Option<libp2p::PeerId> {
    address.iter().find_map(|part| match part {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// The Kademlia key under which the homes of `cell` announce themselves.
fn cell_key(cell: &CellId) -> RecordKey {
    RecordKey::new(&cell.topic())
}

/// How long a publish waits for homes found by the lookup to subscribe.
const SETTLE: Duration = Duration::from_secs(3);
/// How long an area request is kept trying before it is given up.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(30);
/// The mesh's housekeeping tick.
const TICK: Duration = Duration::from_millis(200);
/// How often the peer book is written.
const SAVE_BOOK_EVERY: Duration = Duration::from_secs(30);

/// One area request waiting to be published to one cell's topic.
struct PendingPublish {
    cell: CellId,
    topic: gossipsub::TopicHash,
    bytes: Vec<u8>,
    started: Instant,
    query: kad::QueryId,
    lookup_done: bool,
    found: BTreeSet<libp2p::PeerId>,
}

struct MeshTask {
    swarm: Swarm<MeshBehaviour>,
    commands: mpsc::UnboundedReceiver<Command>,
    on_event: Box<dyn FnMut(MeshEvent) + Send>,
    book: PeerBook,
    cells: BTreeSet<CellId>,
    bootstrap_peers: Vec<(libp2p::PeerId, Multiaddr)>,
    provide_due: bool,
    last_provide: Option<Instant>,
    cells_announced: BTreeSet<CellId>,
    publishes: Vec<PendingPublish>,
    relayed: bool,
    /// The open connections of each peer, for `porchlight mesh`.
    connections: BTreeMap<libp2p::PeerId, BTreeMap<libp2p::swarm::ConnectionId, Link>>,
}

impl MeshTask {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        let mut last_save = Instant::now();
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = tick.tick() => {
                    self.provide_if_due();
                    self.try_publish();
                    if last_save.elapsed() >= SAVE_BOOK_EVERY {
                        last_save = Instant::now();
                        self.save_book();
                    }
                }
            }
        }
        self.save_book();
    }

    fn save_book(&mut self) {
        if let Err(err) = self.book.save() {
            tracing::warn!(error = %err, "cannot save the peer book");
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Send { to, bytes } => {
                let Some(peer) = to_libp2p(&to) else { return };
                self.swarm.behaviour_mut().frames.send_request(&peer, bytes);
            }
            Command::PublishArea { cells, bytes } => {
                let now = Instant::now();
                for cell in cells {
                    let query = self
                        .swarm
                        .behaviour_mut()
                        .kad
                        .get_providers(cell_key(&cell));
                    self.publishes.push(PendingPublish {
                        cell,
                        topic: gossipsub::IdentTopic::new(cell.topic()).hash(),
                        bytes: bytes.clone(),
                        started: now,
                        query,
                        lookup_done: false,
                        found: BTreeSet::new(),
                    });
                }
            }
            Command::AddAddress { peer, address } => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, address.clone());
                self.swarm.add_peer_address(peer, address);
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
        }
    }

    fn status(&self) -> MeshStatus {
        let me = *self.swarm.local_peer_id();
        MeshStatus {
            peer_id: me.to_string(),
            listen_addresses: self.swarm.listeners().map(ToString::to_string).collect(),
            connected_peers: self
                .swarm
                .connected_peers()
                .map(ToString::to_string)
                .collect(),
            cells: self.cells.iter().map(CellId::topic).collect(),
            cells_announced: self.cells_announced.len(),
            nat: match self.swarm.behaviour().autonat.nat_status() {
                autonat::NatStatus::Public(address) => format!("public at {address}"),
                autonat::NatStatus::Private => "private (behind NAT)".to_owned(),
                autonat::NatStatus::Unknown => "unknown (not checked yet)".to_owned(),
            },
            known_peers: self.book.len(),
            peers: self.peer_links(),
        }
    }

    fn peer_links(&self) -> Vec<PeerLinks> {
        let my_topics: BTreeSet<gossipsub::TopicHash> = self
            .cells
            .iter()
            .map(|cell| gossipsub::IdentTopic::new(cell.topic()).hash())
            .collect();
        let neighbors: BTreeSet<libp2p::PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.iter().any(|topic| my_topics.contains(*topic)))
            .map(|(peer, _)| *peer)
            .collect();
        self.connections
            .iter()
            .map(|(peer, links)| PeerLinks {
                peer_id: peer.to_string(),
                in_my_cells: neighbors.contains(peer),
                links: links.values().cloned().collect(),
            })
            .collect()
    }

    /// Announces this home's cells once connected, and again whenever the routing table
    /// grew, so the provider records reach the peers closest to each cell key.
    fn provide_if_due(&mut self) {
        if self.cells.is_empty() || !self.provide_due {
            return;
        }
        if self
            .last_provide
            .is_some_and(|last| last.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        if self.swarm.connected_peers().next().is_none() {
            return;
        }
        self.provide_due = false;
        self.last_provide = Some(Instant::now());
        let cells: Vec<CellId> = self.cells.iter().copied().collect();
        for cell in cells {
            if let Err(err) = self
                .swarm
                .behaviour_mut()
                .kad
                .start_providing(cell_key(&cell))
            {
                tracing::warn!(error = ?err, "cannot announce this home's cell");
            }
        }
    }

    /// Publishes each pending area request to its cell once every home the lookup found
    /// has subscribed, or once the settle time has passed with at least one subscriber.
    fn try_publish(&mut self) {
        if self.publishes.is_empty() {
            return;
        }
        let subscribed: BTreeMap<gossipsub::TopicHash, BTreeSet<libp2p::PeerId>> = {
            let mut map: BTreeMap<gossipsub::TopicHash, BTreeSet<libp2p::PeerId>> = BTreeMap::new();
            for (peer, topics) in self.swarm.behaviour().gossipsub.all_peers() {
                for topic in topics {
                    map.entry(topic.clone()).or_default().insert(*peer);
                }
            }
            map
        };
        let mut remaining = Vec::new();
        let publishes = std::mem::take(&mut self.publishes);
        for pending in publishes {
            let subscribers = subscribed.get(&pending.topic).cloned().unwrap_or_default();
            let everyone_found_ready =
                pending.lookup_done && pending.found.iter().all(|peer| subscribers.contains(peer));
            let settled = pending.started.elapsed() >= SETTLE;
            let ready = !subscribers.is_empty() && (everyone_found_ready || settled);
            if ready {
                match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(pending.topic.clone(), pending.bytes.clone())
                {
                    Ok(_) => {
                        tracing::info!(cell = %pending.cell.topic(), homes = subscribers.len(), "area request published");
                        continue;
                    }
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                    Err(err) => {
                        tracing::warn!(cell = %pending.cell.topic(), error = ?err, "cannot publish the area request");
                        continue;
                    }
                }
            }
            if pending.started.elapsed() >= PUBLISH_DEADLINE {
                tracing::info!(cell = %pending.cell.topic(), "no reachable home in this cell; the area request was not delivered there");
                continue;
            }
            remaining.push(pending);
        }
        self.publishes = remaining;
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<MeshBehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "mesh listening");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                let address = endpoint.get_remote_address();
                if endpoint.is_dialer() {
                    self.book.add(peer_id, address.clone());
                }
                let relayed = address
                    .iter()
                    .any(|part| matches!(part, Protocol::P2pCircuit));
                self.connections.entry(peer_id).or_default().insert(
                    connection_id,
                    Link {
                        address: address.to_string(),
                        kind: if relayed { "relayed" } else { "direct" }.to_owned(),
                        direction: if endpoint.is_dialer() {
                            "outbound"
                        } else {
                            "inbound"
                        }
                        .to_owned(),
                    },
                );
                tracing::debug!(peer = %peer_id, relayed, "connected");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                if let Some(links) = self.connections.get_mut(&peer_id) {
                    links.remove(&connection_id);
                    if links.is_empty() {
                        self.connections.remove(&peer_id);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(peer = ?peer_id, error = %error, "dial failed");
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: MeshBehaviourEvent) {
        match event {
            MeshBehaviourEvent::Frames(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .frames
                    .send_response(channel, Received);
                match from_libp2p(&peer) {
                    Some(from) => (self.on_event)(MeshEvent::Frame {
                        from,
                        bytes: request,
                    }),
                    None => tracing::debug!(%peer, "a frame from a non-Ed25519 peer was dropped"),
                }
            }
            MeshBehaviourEvent::Frames(request_response::Event::OutboundFailure {
                peer,
                error,
                ..
            }) => {
                tracing::warn!(%peer, error = %error, "could not deliver a frame");
            }
            MeshBehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. }) => {
                // With signed gossip, `source` is the author whose signature gossipsub
                // checked; the envelope inside must be signed by that same key.
                match message.source.as_ref().and_then(from_libp2p) {
                    Some(from) => (self.on_event)(MeshEvent::Frame {
                        from,
                        bytes: message.data,
                    }),
                    None => tracing::debug!("an unsigned area message was dropped"),
                }
            }
            MeshBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for address in info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, address.clone());
                    self.book.add(peer_id, address);
                }
            }
            MeshBehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, address) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, address.clone());
                    self.swarm.add_peer_address(peer, address);
                    let _ = self.swarm.dial(peer);
                }
            }
            MeshBehaviourEvent::Kad(kad::Event::RoutingUpdated {
                is_new_peer: true, ..
            }) => {
                self.provide_due = true;
            }
            MeshBehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                ..
            }) => self.on_query(id, result, step.last),
            MeshBehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. }) => {
                tracing::info!(status = ?new, "reachability changed");
                if matches!(new, autonat::NatStatus::Private) {
                    self.listen_through_relays();
                }
            }
            _ => {}
        }
    }

    fn on_query(&mut self, id: kad::QueryId, result: QueryResult, last: bool) {
        match result {
            QueryResult::StartProviding(Ok(ok)) => {
                let key = ok.key;
                if let Some(cell) = self.cells.iter().find(|cell| cell_key(cell) == key) {
                    self.cells_announced.insert(*cell);
                }
            }
            QueryResult::StartProviding(Err(err)) => {
                tracing::debug!(error = ?err, "announcing a cell reached no peer yet");
                self.provide_due = true;
            }
            QueryResult::GetProviders(result) => {
                let Some(index) = self.publishes.iter().position(|p| p.query == id) else {
                    return;
                };
                let me = *self.swarm.local_peer_id();
                let mut to_dial = Vec::new();
                if let Ok(GetProvidersOk::FoundProviders { providers, .. }) = result {
                    for provider in providers.into_iter().filter(|peer| *peer != me) {
                        if let Some(pending) = self.publishes.get_mut(index) {
                            pending.found.insert(provider);
                        }
                        to_dial.push(provider);
                    }
                }
                if last {
                    if let Some(pending) = self.publishes.get_mut(index) {
                        pending.lookup_done = true;
                    }
                }
                for peer in to_dial {
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(peer);
                    }
                }
            }
            _ => {}
        }
    }

    /// Behind NAT: reserve a slot on each bootstrap peer that serves as a relay, so other
    /// homes can reach this one through it (and DCUtR can then upgrade to a direct path).
    fn listen_through_relays(&mut self) {
        if self.relayed {
            return;
        }
        self.relayed = true;
        let relays = self.bootstrap_peers.clone();
        for (_, address) in relays {
            let circuit = address.with(Protocol::P2pCircuit);
            if let Err(err) = self.swarm.listen_on(circuit.clone()) {
                tracing::warn!(address = %circuit, error = %err, "cannot listen through a relay");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use porchlight_protocol::SigningIdentity;
    use rand_core::OsRng;

    use super::*;

    #[test]
    fn porchlight_and_libp2p_agree_on_peer_ids() {
        let identity = SigningIdentity::generate(&mut OsRng);
        let mut secret = identity.to_secret_bytes();
        let keypair = identity::Keypair::ed25519_from_bytes(secret.as_mut()).unwrap();
        let libp2p_peer = keypair.public().to_peer_id();
        assert_eq!(to_libp2p(&identity.peer_id()), Some(libp2p_peer));
        assert_eq!(from_libp2p(&libp2p_peer), Some(identity.peer_id()));
        assert_eq!(identity.peer_id().to_string(), libp2p_peer.to_string());
    }

    #[test]
    fn a_non_ed25519_peer_is_not_a_porchlight_peer() {
        // A random libp2p PeerId is an identity hash of random bytes, not an Ed25519 key.
        assert_eq!(from_libp2p(&libp2p::PeerId::random()), None);
    }
}
