//! Finding SeaweedMQ servers and keeping one gRPC channel per server.
//!
//! Addresses follow SeaweedFS's `-master` convention: `host:port` names a master's or filer's
//! **HTTP** port and its gRPC port is `port + 10000`; `host:port.grpcPort` names the gRPC port
//! explicitly. Broker addresses (configured or listed by the masters) are gRPC addresses as they
//! are. The balancer (the broker that owns topic administration) is found with
//! `FindBrokerLeader` on any broker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

use super::error::{SmqError, SmqResult};
use super::pb::filer_pb::seaweed_filer_client::SeaweedFilerClient;
use super::pb::master_pb::seaweed_client::SeaweedClient;
use super::pb::master_pb::ListClusterNodesRequest;
use super::pb::messaging_pb::seaweed_messaging_client::SeaweedMessagingClient;
use super::pb::messaging_pb::FindBrokerLeaderRequest;

/// HTTP/2 keepalive ping interval. SeaweedFS servers enforce a minimum of 20 s between pings
/// (`MinTime`) and close connections that ping more often.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Largest gRPC message decoded (`FetchMessage` may return up to 100 MiB).
pub const MAX_DECODE_BYTES: usize = 128 * 1024 * 1024;
/// Largest gRPC message encoded.
pub const MAX_ENCODE_BYTES: usize = 128 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Offset between a SeaweedFS server's HTTP port and its default gRPC port.
pub const GRPC_PORT_OFFSET: u16 = 10000;

/// The gRPC address of a master or filer given in SeaweedFS notation (see the module docs).
///
/// # Errors
/// [`SmqError::Unavailable`] when the address has no valid port.
pub fn grpc_address(addr: &str) -> SmqResult<String> {
    let bad = || {
        SmqError::Unavailable(format!(
            "invalid SeaweedFS address {addr:?}: expected host:port[.grpcPort]"
        ))
    };
    let (host, ports) = addr.trim().rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() {
        return Err(bad());
    }
    let port = match ports.split_once('.') {
        Some((_, grpc)) => grpc.parse::<u16>().map_err(|_| bad())?,
        None => ports
            .parse::<u16>()
            .ok()
            .and_then(|p| p.checked_add(GRPC_PORT_OFFSET))
            .ok_or_else(bad)?,
    };
    Ok(format!("{host}:{port}"))
}

/// Where to start looking for the cluster.
#[derive(Debug, Clone, Default)]
pub struct Seeds {
    /// Master addresses (SeaweedFS notation, see the module docs).
    pub masters: Vec<String>,
    /// Broker gRPC addresses, used instead of (or before) asking the masters.
    pub brokers: Vec<String>,
    /// Filer address (SeaweedFS notation); discovered through the masters when absent.
    pub filer: Option<String>,
}

/// One lazily connected channel per server address, shared by every caller.
#[derive(Debug, Default)]
pub struct Channels {
    map: Mutex<HashMap<String, Channel>>,
    /// Signalled whenever a publish stream fails: the broker may have died, and the copies'
    /// janitor must set checkpoints before it is back (`wal_replica.rs`).
    stream_failed: Arc<tokio::sync::Notify>,
}

impl Channels {
    /// Signalled (one stored permit) whenever a publish stream to any broker fails.
    pub fn stream_failed(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.stream_failed)
    }

    /// The channel to `addr` (a gRPC `host:port`), created on first use. Channels reconnect by
    /// themselves after a failure.
    ///
    /// # Errors
    /// [`SmqError::Unavailable`] when `addr` is not a valid URI authority.
    pub fn get(&self, addr: &str) -> SmqResult<Channel> {
        if let Some(c) = self.map.lock().get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| SmqError::Unavailable(format!("invalid address {addr}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(false)
            .initial_stream_window_size(Some(4 * 1024 * 1024))
            .initial_connection_window_size(Some(16 * 1024 * 1024));
        let channel = endpoint.connect_lazy();
        Ok(self.map.lock().entry(addr.to_string()).or_insert(channel).clone())
    }

    /// A broker client on `addr`.
    ///
    /// # Errors
    /// As [`Channels::get`].
    pub fn broker(&self, addr: &str) -> SmqResult<SeaweedMessagingClient<Channel>> {
        Ok(SeaweedMessagingClient::new(self.get(addr)?)
            .max_decoding_message_size(MAX_DECODE_BYTES)
            .max_encoding_message_size(MAX_ENCODE_BYTES))
    }

    /// A master client on the gRPC address `addr`.
    ///
    /// # Errors
    /// As [`Channels::get`].
    pub fn master(&self, addr: &str) -> SmqResult<SeaweedClient<Channel>> {
        Ok(SeaweedClient::new(self.get(addr)?).max_decoding_message_size(MAX_DECODE_BYTES))
    }

    /// A filer client on the gRPC address `addr`.
    ///
    /// # Errors
    /// As [`Channels::get`].
    pub fn filer(&self, addr: &str) -> SmqResult<SeaweedFilerClient<Channel>> {
        Ok(SeaweedFilerClient::new(self.get(addr)?).max_decoding_message_size(MAX_DECODE_BYTES))
    }
}

#[derive(Debug, Default)]
struct Known {
    brokers: Vec<String>,
    balancer: Option<String>,
    filer: Option<String>,
}

/// Resolves brokers, the balancer and the filer from the [`Seeds`], caching the answers until a
/// caller reports them stale.
#[derive(Debug)]
pub struct Discovery {
    seeds: Seeds,
    channels: Channels,
    known: Mutex<Known>,
}

impl Discovery {
    /// Discovery from `seeds`; nothing is contacted until first use.
    pub fn new(seeds: Seeds) -> Self {
        Self {
            seeds,
            channels: Channels::default(),
            known: Mutex::new(Known::default()),
        }
    }

    /// The shared channel cache.
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// True when masters are configured.
    pub fn has_masters(&self) -> bool {
        !self.seeds.masters.is_empty()
    }

    /// Asks the masters, in order, for the nodes of `client_type` (`broker`, `filer`).
    async fn list_nodes(&self, client_type: &str) -> SmqResult<Vec<String>> {
        let mut last = None;
        for master in &self.seeds.masters {
            let addr = grpc_address(master)?;
            let mut client = self.channels.master(&addr)?;
            let request = ListClusterNodesRequest {
                client_type: client_type.to_string(),
            };
            match client.list_cluster_nodes(request).await {
                Ok(r) => {
                    let nodes: Vec<String> = r
                        .into_inner()
                        .cluster_nodes
                        .into_iter()
                        .map(|n| n.address)
                        .collect();
                    debug!(master = %addr, client_type, nodes = ?nodes, "listed cluster nodes");
                    return Ok(nodes);
                }
                Err(status) => {
                    warn!(master = %addr, client_type, error = %status, "master did not list cluster nodes");
                    last = Some(SmqError::rpc("ListClusterNodes", &addr, status));
                }
            }
        }
        Err(last.unwrap_or_else(|| SmqError::Unavailable("no SeaweedFS master configured".into())))
    }

    /// Known broker addresses: the configured ones, else the masters' list (cached until
    /// [`Discovery::invalidate`]).
    ///
    /// # Errors
    /// [`SmqError`] when no master answers or no broker is registered.
    pub async fn brokers(&self) -> SmqResult<Vec<String>> {
        if !self.seeds.brokers.is_empty() && !self.has_masters() {
            return Ok(self.seeds.brokers.clone());
        }
        let cached = self.known.lock().brokers.clone();
        if !cached.is_empty() {
            return Ok(cached);
        }
        let mut brokers = self.seeds.brokers.clone();
        for b in self.list_nodes("broker").await? {
            if !brokers.contains(&b) {
                brokers.push(b);
            }
        }
        if brokers.is_empty() {
            return Err(SmqError::Unavailable(
                "the SeaweedFS masters list no mq broker".into(),
            ));
        }
        self.known.lock().brokers = brokers.clone();
        Ok(brokers)
    }

    /// The balancer broker, found with `FindBrokerLeader` on the first broker that answers.
    ///
    /// # Errors
    /// [`SmqError`] when no broker names a balancer.
    pub async fn balancer(&self) -> SmqResult<String> {
        if let Some(b) = self.known.lock().balancer.clone() {
            return Ok(b);
        }
        let mut last = None;
        for broker in self.brokers().await? {
            let mut client = self.channels.broker(&broker)?;
            match client
                .find_broker_leader(FindBrokerLeaderRequest::default())
                .await
            {
                Ok(r) => {
                    let leader = r.into_inner().broker;
                    if leader.is_empty() {
                        last = Some(SmqError::Unavailable(format!(
                            "broker {broker} knows no balancer yet"
                        )));
                        continue;
                    }
                    self.known.lock().balancer = Some(leader.clone());
                    return Ok(leader);
                }
                Err(status) => last = Some(SmqError::rpc("FindBrokerLeader", &broker, status)),
            }
        }
        Err(last.unwrap_or_else(|| SmqError::Unavailable("no mq broker known".into())))
    }

    /// The filer's gRPC address: configured, else the first filer the masters list.
    ///
    /// # Errors
    /// [`SmqError::Unavailable`] when neither a filer nor masters are configured, or none is
    /// registered.
    pub async fn filer(&self) -> SmqResult<String> {
        if let Some(f) = &self.seeds.filer {
            return grpc_address(f);
        }
        if let Some(f) = self.known.lock().filer.clone() {
            return Ok(f);
        }
        if !self.has_masters() {
            return Err(SmqError::Unavailable(
                "no SeaweedFS filer known: configure the masters (or a filer) to keep gateway topic metadata and delete topics"
                    .into(),
            ));
        }
        let filer = self
            .list_nodes("filer")
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| SmqError::Unavailable("the SeaweedFS masters list no filer".into()))?;
        let addr = grpc_address(&filer)?;
        self.known.lock().filer = Some(addr.clone());
        Ok(addr)
    }

    /// Forgets cached brokers, balancer and filer (after a call to them failed).
    pub fn invalidate(&self) {
        *self.known.lock() = Known::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_ports_follow_seaweedfs_notation() {
        assert_eq!(grpc_address("127.0.0.1:9333").unwrap(), "127.0.0.1:19333");
        assert_eq!(grpc_address("m1:9333.19444").unwrap(), "m1:19444");
        for bad in ["nohost", ":9333", "h:x", "h:60000"] {
            assert!(grpc_address(bad).is_err(), "{bad}");
        }
    }
}
