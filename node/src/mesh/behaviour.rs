//! The node's libp2p behaviours, composed, and the swarm built from the node's own key.
//!
//! One `NetworkBehaviour` per concern: identify and ping keep connections honest;
//! Kademlia (on a private protocol name, in server mode) finds peers and the homes of a
//! cell; mDNS finds homes on the LAN; gossipsub carries area requests to the homes of a
//! cell; request-response carries direct requests, decisions and revocations; a raw stream
//! protocol carries fetched ciphertext; AutoNAT, relay (client always, server on request)
//! and DCUtR keep a home behind NAT reachable. Transports: TCP and QUIC, each authenticated
//! by Noise (QUIC by its TLS handshake) with the node's Ed25519 key, so the transport's
//! remote `PeerId` is the key that must have signed whatever that peer sends.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, autonat, dcutr, gossipsub, identify, identity, kad, mdns,
    noise, ping, relay, request_response, tcp, yamux,
};

use super::frames::{FrameCodec, MAX_FRAME_LEN, REQUEST_PROTOCOL};

/// Kademlia's protocol name: Porchlight homes keep their own DHT, apart from IPFS's.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/porchlight/kad/1");
/// identify's protocol version string.
pub const IDENTIFY_VERSION: &str = "/porchlight/1";
/// How long an idle connection stays open (a fetch keeps it busy).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Every behaviour of a Porchlight node. (Not `Debug`: several libp2p behaviours are not.)
#[allow(missing_debug_implementations)]
#[derive(NetworkBehaviour)]
pub struct MeshBehaviour {
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub gossipsub: gossipsub::Behaviour,
    pub frames: request_response::Behaviour<FrameCodec>,
    pub fetch: libp2p_stream::Behaviour,
    pub autonat: autonat::Behaviour,
    pub relay_client: relay::client::Behaviour,
    pub relay_server: Toggle<relay::Behaviour>,
    pub dcutr: dcutr::Behaviour,
}

/// Which optional behaviours run.
#[derive(Debug, Clone, Copy)]
pub struct BehaviourOptions {
    pub mdns: bool,
    pub relay_server: bool,
}

/// Builds the swarm (TCP + QUIC + relay transports) for `keypair`.
pub fn build_swarm(
    keypair: identity::Keypair,
    options: BehaviourOptions,
) -> anyhow::Result<Swarm<MeshBehaviour>> {
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)?
        .with_behaviour(
            |key,
             relay_client|
             -> Result<MeshBehaviour, Box<dyn std::error::Error + Send + Sync>> {
                let peer_id = key.public().to_peer_id();
                let mut kad_config = kad::Config::new(KAD_PROTOCOL);
                kad_config.set_query_timeout(Duration::from_secs(30));
                let mut kad = kad::Behaviour::with_config(
                    peer_id,
                    kad::store::MemoryStore::new(peer_id),
                    kad_config,
                );
                // Homes answer DHT queries even before AutoNAT has confirmed an external
                // address: a neighborhood on one LAN (or loopback) has none to confirm.
                kad.set_mode(Some(kad::Mode::Server));
                let gossipsub_config = gossipsub::ConfigBuilder::default()
                    .heartbeat_interval(Duration::from_millis(500))
                    .max_transmit_size(MAX_FRAME_LEN)
                    .validation_mode(gossipsub::ValidationMode::Strict)
                    .build()?;
                let gossipsub = gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gossipsub_config,
                )?;
                let mdns = if options.mdns {
                    Some(mdns::tokio::Behaviour::new(
                        mdns::Config::default(),
                        peer_id,
                    )?)
                } else {
                    None
                };
                let relay_server = options
                    .relay_server
                    .then(|| relay::Behaviour::new(peer_id, relay::Config::default()));
                Ok(MeshBehaviour {
                    identify: identify::Behaviour::new(identify::Config::new(
                        IDENTIFY_VERSION.to_owned(),
                        key.public(),
                    )),
                    ping: ping::Behaviour::default(),
                    kad,
                    mdns: mdns.into(),
                    gossipsub,
                    frames: request_response::Behaviour::new(
                        [(REQUEST_PROTOCOL, request_response::ProtocolSupport::Full)],
                        request_response::Config::default()
                            .with_request_timeout(Duration::from_secs(30)),
                    ),
                    fetch: libp2p_stream::Behaviour::new(),
                    autonat: autonat::Behaviour::new(
                        peer_id,
                        autonat::Config {
                            only_global_ips: false,
                            ..autonat::Config::default()
                        },
                    ),
                    relay_client,
                    relay_server: relay_server.into(),
                    dcutr: dcutr::Behaviour::new(peer_id),
                })
            },
        )?
        .with_swarm_config(|config| config.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    Ok(swarm)
}
