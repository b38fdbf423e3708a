//! Several gateway processes forming one raft cluster over one real SeaweedMQ.
//!
//! Node `i` binds all its listeners (Kafka, admin, raft peer) on `127.0.0.(i+1)`, so Metadata
//! answers tell the nodes apart by address as well as by port. Every node is started with the
//! same `--peers` list (the nodes known at its start, itself included); in a proxied cluster each
//! node is listed at its [`PeerProxies`] address so a test can partition it.
//!
//! Invariants: node ids are the raft ids and never reused within a [`Cluster`]; a node removed
//! with [`Cluster::remove`] is gone from the peer list given to nodes started later; dropping the
//! cluster kills every gateway before the proxies go away.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;

use super::gateway::{free_addr_on, Gateway, GatewayOptions};
use super::http::{self, HttpResponse};
use super::phase::{note, phase};
use super::proxy::PeerProxies;
use super::tokens::{Tokens, ADMIN_TOKEN};
use super::weed::shared_cluster;

/// Interval between polls of a cluster condition.
const POLL: Duration = Duration::from_millis(100);
/// `--shutdown-grace-seconds` of every node (below the harness's 30 s stop deadline).
const SHUTDOWN_GRACE_SECONDS: u64 = 5;
/// Timeout of one admin HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// One gateway of the cluster.
#[derive(Debug)]
pub struct Node {
    /// Raft node id (also the Kafka broker id).
    pub id: i32,
    /// The loopback address all its listeners bind.
    pub ip: Ipv4Addr,
    /// Its `--cluster-listen` address.
    pub cluster_addr: SocketAddr,
    /// Its address in `--peers` (the proxy's in a proxied cluster).
    pub peer_addr: SocketAddr,
    /// The process.
    pub gw: Gateway,
}

/// A member as one node's `GET /cluster` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Node id.
    pub node_id: i32,
    /// Advertised Kafka address.
    pub kafka_addr: String,
    /// Voter (owns groups) rather than learner.
    pub voter: bool,
    /// Reachable from the leader.
    pub live: bool,
    /// Groups it coordinates.
    pub groups_owned: u64,
}

/// One node's `GET /cluster` answer.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// The answering node.
    pub node_id: i32,
    /// Its raft role (`Leader`, `Follower`, `Learner`, `Candidate`).
    pub role: String,
    /// The leader it knows of.
    pub leader: Option<i32>,
    /// Raft term.
    pub term: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index.
    pub applied_index: u64,
    /// Members, by id.
    pub members: BTreeMap<i32, MemberView>,
}

impl ClusterView {
    fn parse(body: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(body).with_context(|| format!("GET /cluster body {body:?}"))?;
        let int = |v: &Value, key: &str| -> Result<i64> {
            v[key]
                .as_i64()
                .ok_or_else(|| anyhow!("/cluster: {key} missing or not an integer in {v}"))
        };
        let opt_u64 = |key: &str| v[key].as_u64().unwrap_or(0);
        let mut members = BTreeMap::new();
        for m in v["members"]
            .as_array()
            .ok_or_else(|| anyhow!("/cluster: no members in {v}"))?
        {
            let node_id = i32::try_from(int(m, "node_id")?)?;
            members.insert(
                node_id,
                MemberView {
                    node_id,
                    kafka_addr: m["kafka_addr"].as_str().unwrap_or_default().to_owned(),
                    voter: m["voter"].as_bool().unwrap_or(false),
                    live: m["live"].as_bool().unwrap_or(false),
                    groups_owned: m["groups_owned"].as_u64().unwrap_or(0),
                },
            );
        }
        Ok(Self {
            node_id: i32::try_from(int(&v, "node_id")?)?,
            role: v["role"].as_str().unwrap_or_default().to_owned(),
            leader: v["leader"].as_i64().map(i32::try_from).transpose()?,
            term: opt_u64("term"),
            commit_index: opt_u64("commit_index"),
            applied_index: opt_u64("applied_index"),
            members,
        })
    }
}

/// Polls `f` every 100 ms until it returns `Some`, or fails after `timeout` with the last error.
///
/// # Errors
/// `timeout` passed without `Some`.
pub fn poll_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("condition false");
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?} (last: {last})");
        }
        std::thread::sleep(POLL);
    }
}

/// How [`Cluster::start`] starts the initial nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// All processes at once: the joiners race each other into the cluster.
    Together,
    /// Node 0 first (it initializes the cluster alone), then each next one once ready.
    OneByOne,
}

/// A raft cluster of gateways on one shared SeaweedMQ.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    // Declared before `proxies`: gateways die before their proxies stop.
    nodes: BTreeMap<i32, Node>,
    /// `--peers` entries for nodes started from now on.
    peers: BTreeMap<i32, SocketAddr>,
    proxies: Option<PeerProxies>,
    /// Extra gateway arguments of every node.
    args: Vec<(String, String)>,
    /// Kafka listeners (name, protocol) of every node besides PLAINTEXT.
    listeners: Vec<(String, String)>,
    /// The cluster and admin token files every node reads.
    tokens: Tokens,
}

/// The loopback address of node `id`: 127.0.0.(id+1).
pub fn node_ip(id: i32) -> Result<Ipv4Addr> {
    let last = u8::try_from(id + 1).map_err(|_| anyhow!("node id {id} out of range for 127.0.0.x"))?;
    Ok(Ipv4Addr::new(127, 0, 0, last))
}

impl Cluster {
    /// Starts nodes `0..n` (all with the same peer list) as `boot` says and waits until every
    /// one reports ready and all agree on a leader and on live voting membership.
    ///
    /// # Errors
    /// SeaweedMQ or a gateway failing to start, or the cluster not converging in 60 s.
    pub fn start(name: &str, n: i32, proxied: bool, boot: Boot) -> Result<Self> {
        Self::start_with_args(name, n, proxied, boot, &[])
    }

    /// [`Cluster::start`] with extra gateway arguments (`--flag`, value) on every node,
    /// including nodes added later.
    ///
    /// # Errors
    /// As [`Cluster::start`].
    pub fn start_with_args(
        name: &str,
        n: i32,
        proxied: bool,
        boot: Boot,
        args: &[(&str, &str)],
    ) -> Result<Self> {
        Self::start_with_listeners(name, n, proxied, boot, args, &[])
    }

    /// [`Cluster::start_with_args`] with Kafka `listeners` (name, security protocol) on every
    /// node besides PLAINTEXT (see [`GatewayOptions::listener`]).
    ///
    /// # Errors
    /// As [`Cluster::start`].
    pub fn start_with_listeners(
        name: &str,
        n: i32,
        proxied: bool,
        boot: Boot,
        args: &[(&str, &str)],
        listeners: &[(&str, &str)],
    ) -> Result<Self> {
        phase(format!(
            "start {n}-node cluster {name}{}",
            if proxied { " (proxied peers)" } else { "" }
        ));
        let mut cluster = Self {
            name: name.to_owned(),
            nodes: BTreeMap::new(),
            peers: BTreeMap::new(),
            proxies: proxied.then(PeerProxies::new),
            args: args
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            listeners: listeners
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            tokens: Tokens::new()?,
        };
        let mut planned = Vec::new();
        for id in 0..n {
            planned.push(cluster.plan(id)?);
        }
        let opts: Vec<GatewayOptions> = planned
            .iter()
            .map(|(id, ip, addr)| cluster.options(*id, *ip, *addr))
            .collect::<Result<_>>()?;
        let started: Vec<Result<Gateway>> = match boot {
            Boot::OneByOne => {
                let mut started = Vec::new();
                for (i, o) in opts.into_iter().enumerate() {
                    started.push(Ok(Gateway::start(&format!("{name}-n{i}"), o)?));
                }
                started
            }
            Boot::Together => Self::start_together(name, opts),
        };
        for ((id, ip, cluster_addr), gw) in planned.into_iter().zip(started) {
            let peer_addr = cluster.peers[&id];
            cluster.nodes.insert(
                id,
                Node {
                    id,
                    ip,
                    cluster_addr,
                    peer_addr,
                    gw: gw?,
                },
            );
        }
        cluster.wait_converged(Duration::from_secs(60))?;
        Ok(cluster)
    }

    /// Starts every gateway at once, each on its own thread (none of them may be ready before
    /// the others answer).
    fn start_together(name: &str, opts: Vec<GatewayOptions>) -> Vec<Result<Gateway>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = opts
                .into_iter()
                .enumerate()
                .map(|(i, o)| {
                    let label = format!("{name}-n{i}");
                    s.spawn(move || Gateway::start(&label, o))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("gateway start thread panicked")))
                })
                .collect()
        })
    }

    /// Reserves node `id`'s peer port (and proxy) and lists it in the peer list.
    fn plan(&mut self, id: i32) -> Result<(i32, Ipv4Addr, SocketAddr)> {
        ensure!(!self.peers.contains_key(&id), "node id {id} already used");
        let ip = node_ip(id)?;
        let cluster_addr = free_addr_on(ip)?;
        let peer_addr = match &mut self.proxies {
            Some(p) => p.add(id, ip, cluster_addr)?,
            None => cluster_addr,
        };
        self.peers.insert(id, peer_addr);
        Ok((id, ip, cluster_addr))
    }

    fn options(&self, id: i32, ip: Ipv4Addr, cluster_addr: SocketAddr) -> Result<GatewayOptions> {
        let peers = self
            .peers
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut opts = GatewayOptions::default()
            .bind_ip(ip)
            .arg("--node-id", &id.to_string())
            .arg("--cluster-listen", &cluster_addr.to_string())
            .arg("--peers", &peers)
            // Kafka clients keep idle connections to every broker open, and the gateway drains
            // them for the whole grace period on SIGTERM; a short grace keeps stops bounded.
            .arg("--shutdown-grace-seconds", &SHUTDOWN_GRACE_SECONDS.to_string());
        for (flag, value) in &self.args {
            opts = opts.arg(flag, value);
        }
        for (listener, protocol) in &self.listeners {
            opts = opts.listener(listener, protocol);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            opts = opts.env("RUST_LOG", "info,openraft=warn");
        }
        Ok(shared_cluster()?.gateway_options(self.tokens.apply(opts)))
    }

    /// Starts node `id` with the current peer list (every node started so far and itself): it
    /// joins the running cluster. Waits for its readiness only.
    ///
    /// # Errors
    /// The id is taken or the gateway fails to start.
    pub fn add(&mut self, id: i32) -> Result<()> {
        let (id, ip, cluster_addr) = self.plan(id)?;
        let opts = self.options(id, ip, cluster_addr)?;
        let gw = Gateway::start(&format!("{}-n{id}", self.name), opts)?;
        let peer_addr = self.peers[&id];
        self.nodes.insert(
            id,
            Node {
                id,
                ip,
                cluster_addr,
                peer_addr,
                gw,
            },
        );
        Ok(())
    }

    /// Removes node `id` through `DELETE /cluster/members/{id}` sent to node `via`, then stops
    /// its process (SIGTERM) and forgets it.
    ///
    /// # Errors
    /// A non-2xx answer, or the node not stopping cleanly.
    pub fn remove(&mut self, id: i32, via: i32) -> Result<()> {
        phase(format!("remove node {id} through node {via}'s admin API"));
        let resp = self.admin(via, "DELETE", &format!("/cluster/members/{id}"), None)?;
        ensure!(
            (200..300).contains(&resp.status),
            "DELETE /cluster/members/{id} on node {via}: {} {}",
            resp.status,
            resp.body
        );
        let mut node = self.nodes.remove(&id).ok_or_else(|| anyhow!("no node {id}"))?;
        self.peers.remove(&id);
        node.gw.stop()
    }

    /// The node `id`.
    ///
    /// # Errors
    /// No such node.
    pub fn node(&self, id: i32) -> Result<&Node> {
        self.nodes.get(&id).ok_or_else(|| anyhow!("no node {id}"))
    }

    /// The node `id`, mutably (to kill or restart it).
    ///
    /// # Errors
    /// No such node.
    pub fn node_mut(&mut self, id: i32) -> Result<&mut Node> {
        self.nodes.get_mut(&id).ok_or_else(|| anyhow!("no node {id}"))
    }

    /// Ids of the nodes whose process runs.
    pub fn running(&mut self) -> BTreeSet<i32> {
        self.nodes
            .iter_mut()
            .filter_map(|(id, n)| n.gw.is_running().then_some(*id))
            .collect()
    }

    /// Comma-separated Kafka addresses of the running nodes (a client bootstrap list).
    pub fn bootstrap(&mut self) -> String {
        let running = self.running();
        running
            .iter()
            .map(|id| self.nodes[id].gw.bootstrap())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Sends an admin HTTP request to node `id`, presenting the admin token.
    ///
    /// # Errors
    /// No such node, or connection and protocol errors.
    pub fn admin(&self, id: i32, method: &str, path: &str, body: Option<&str>) -> Result<HttpResponse> {
        self.admin_as(id, method, path, body, Some(ADMIN_TOKEN))
    }

    /// Sends an admin HTTP request to node `id` with `Authorization: Bearer <bearer>`, or with
    /// no credentials when `bearer` is `None`.
    ///
    /// # Errors
    /// No such node, or connection and protocol errors.
    pub fn admin_as(
        &self,
        id: i32,
        method: &str,
        path: &str,
        body: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<HttpResponse> {
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        http::request_with(
            self.node(id)?.gw.admin_addr(),
            method,
            path,
            &headers,
            body,
            HTTP_TIMEOUT,
        )
    }

    /// Node `id`'s `GET /cluster`.
    ///
    /// # Errors
    /// Transport errors, a non-200 answer, or a body that is not the documented JSON.
    pub fn view(&self, id: i32) -> Result<ClusterView> {
        let resp = self.admin(id, "GET", "/cluster", None)?;
        ensure!(
            resp.status == 200,
            "GET /cluster on node {id}: {} {}",
            resp.status,
            resp.body
        );
        ClusterView::parse(&resp.body)
    }

    /// Waits until every running node answers `/cluster` with the same leader (a running node
    /// that sees itself as `Leader`), the running nodes as exactly the members, all live voters,
    /// and an applied index that has reached the leader's commit index as first seen. Returns the
    /// leader.
    ///
    /// # Errors
    /// No such agreement within `timeout`.
    pub fn wait_converged(&mut self, timeout: Duration) -> Result<i32> {
        let running = self.running();
        let leader = poll_until("cluster converged", timeout, || {
            let views: Vec<ClusterView> = running.iter().map(|id| self.view(*id)).collect::<Result<_>>()?;
            let Some(leader) = views.first().and_then(|v| v.leader) else {
                return Ok(None);
            };
            for v in &views {
                let ids: BTreeSet<i32> = v.members.keys().copied().collect();
                let all_live = v.members.values().all(|m| m.live && m.voter);
                if v.leader != Some(leader) || ids != running || !all_live {
                    bail!(
                        "node {} sees leader {:?}, members {:?} (want leader {leader}, members {running:?}, all live voters)",
                        v.node_id,
                        v.leader,
                        v.members.values().collect::<Vec<_>>()
                    );
                }
                if v.node_id == leader && v.role != "Leader" {
                    bail!("node {leader} is named leader but its role is {}", v.role);
                }
            }
            Ok(Some(leader))
        })?;
        let target = self.view(leader)?.commit_index;
        for id in &running {
            poll_until(&format!("node {id} applied index {target}"), timeout, || {
                Ok((self.view(*id)?.applied_index >= target).then_some(()))
            })?;
        }
        note(format!(
            "cluster {} converged: leader {leader}, members {running:?}",
            self.name
        ));
        Ok(leader)
    }

    /// Waits until every running node names the same running leader other than `not`, and
    /// returns it.
    ///
    /// # Errors
    /// No such leader within `timeout`.
    pub fn wait_new_leader(&mut self, not: i32, timeout: Duration) -> Result<i32> {
        let running = self.running();
        poll_until(&format!("a leader other than {not}"), timeout, || {
            let mut leaders = BTreeSet::new();
            for id in &running {
                leaders.insert(self.view(*id)?.leader);
            }
            Ok(match leaders.into_iter().collect::<Vec<_>>().as_slice() {
                [Some(l)] if *l != not && running.contains(l) => Some(*l),
                _ => None,
            })
        })
    }

    /// Cuts node `id` from its peers (proxied clusters only).
    ///
    /// # Errors
    /// The cluster has no proxies or the node no process.
    pub fn cut(&self, id: i32) -> Result<()> {
        let proxies = self
            .proxies
            .as_ref()
            .ok_or_else(|| anyhow!("cluster is not proxied"))?;
        let pid = self
            .node(id)?
            .gw
            .pid()
            .ok_or_else(|| anyhow!("node {id} is not running"))?;
        proxies.cut(id, pid);
        Ok(())
    }

    /// Ends a cut (proxied clusters only).
    ///
    /// # Errors
    /// The cluster has no proxies.
    pub fn heal(&self) -> Result<()> {
        self.proxies
            .as_ref()
            .ok_or_else(|| anyhow!("cluster is not proxied"))?
            .heal();
        Ok(())
    }
}
