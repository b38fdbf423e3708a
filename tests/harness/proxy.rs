//! TCP proxies in front of the gateways' raft peer ports, with a switch that partitions one node.
//!
//! Every node of a proxied cluster is listed in `--peers` at its proxy, so all raft traffic to a
//! node passes through that node's proxy. Cutting node `k` ([`PeerProxies::cut`]) then isolates
//! it in both directions:
//! - `k`'s own proxy refuses and closes every connection (nobody reaches `k`);
//! - every other proxy refuses and closes the connections opened by `k`'s process (`k` reaches
//!   nobody). Connections are attributed to a process through `/proc`: the client end's socket
//!   inode (from `/proc/net/tcp`, matched on both ends of the connection: one ephemeral port may
//!   serve connections to several proxies, and closed ones linger in TIME_WAIT with inode 0) among
//!   the process's file descriptors, because all nodes connect from 127.0.0.1 and cannot be told
//!   apart by address.
//!
//! Invariants: while a cut is active no byte is forwarded on a connection that the cut covers
//! (existing ones are shut down when the cut starts, new ones are closed at accept); healing
//! only lets new connections through.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};

use super::phase::note;

/// How long a proxy waits to connect to its target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The node a cut isolates and the process currently running it.
#[derive(Debug, Clone, Copy)]
struct Cut {
    node: i32,
    pid: i32,
}

/// One forwarded connection, kept so a cut can shut it down.
#[derive(Debug)]
struct Conn {
    /// The client end's address (the connecting gateway's socket).
    peer: SocketAddr,
    /// The proxy end's address.
    local: SocketAddr,
    client: TcpStream,
    upstream: TcpStream,
}

/// State shared by all proxies of one cluster.
#[derive(Debug, Default)]
struct Shared {
    cut: Mutex<Option<Cut>>,
    stop: AtomicBool,
    next_conn: AtomicU64,
}

/// One listening proxy for one node's peer port.
#[derive(Debug)]
struct Proxy {
    node: i32,
    listen: SocketAddr,
    conns: Arc<Mutex<BTreeMap<u64, Conn>>>,
}

/// The proxies of one cluster, one per node, sharing one cut switch.
#[derive(Debug, Default)]
pub struct PeerProxies {
    shared: Arc<Shared>,
    proxies: BTreeMap<i32, Proxy>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PeerProxies {
    /// No proxies yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a proxy for `node` on a free port of `ip`, forwarding to `target`; returns the
    /// proxy's address (to list in `--peers` as the node's address).
    ///
    /// # Errors
    /// Binding the listener or spawning its thread fails.
    pub fn add(&mut self, node: i32, ip: Ipv4Addr, target: SocketAddr) -> Result<SocketAddr> {
        let listener = TcpListener::bind((ip, 0)).with_context(|| format!("bind proxy on {ip}"))?;
        let listen = listener.local_addr()?;
        let conns = Arc::new(Mutex::new(BTreeMap::new()));
        let shared = Arc::clone(&self.shared);
        let registry = Arc::clone(&conns);
        std::thread::Builder::new()
            .name(format!("proxy-{node}"))
            .spawn(move || accept_loop(&listener, node, target, &shared, &registry))
            .context("spawn proxy thread")?;
        note(format!("peer proxy for node {node}: {listen} -> {target}"));
        self.proxies.insert(node, Proxy { node, listen, conns });
        Ok(listen)
    }

    /// Isolates `node`, whose gateway process is `pid`, from every other node.
    pub fn cut(&self, node: i32, pid: i32) {
        note(format!("cut node {node} (pid {pid}) from its peers"));
        let cut = Cut { node, pid };
        *lock(&self.shared.cut) = Some(cut);
        for proxy in self.proxies.values() {
            let conns = lock(&proxy.conns);
            for conn in conns.values() {
                if covered(cut, proxy.node, conn.peer, conn.local) {
                    let _ = conn.client.shutdown(Shutdown::Both);
                    let _ = conn.upstream.shutdown(Shutdown::Both);
                }
            }
        }
    }

    /// Ends the cut: new connections are forwarded again.
    pub fn heal(&self) {
        note("heal the partition");
        *lock(&self.shared.cut) = None;
    }
}

impl Drop for PeerProxies {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for proxy in self.proxies.values() {
            // Wakes the blocking accept so the thread sees the stop flag.
            let _ = TcpStream::connect_timeout(&proxy.listen, CONNECT_TIMEOUT);
            for conn in lock(&proxy.conns).values() {
                let _ = conn.client.shutdown(Shutdown::Both);
                let _ = conn.upstream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Whether the connection `peer` -> `local` to the proxy of `proxy_node` is covered by `cut`.
fn covered(cut: Cut, proxy_node: i32, peer: SocketAddr, local: SocketAddr) -> bool {
    proxy_node == cut.node || socket_owned_by(peer, local, cut.pid)
}

fn accept_loop(
    listener: &TcpListener,
    node: i32,
    target: SocketAddr,
    shared: &Arc<Shared>,
    conns: &Arc<Mutex<BTreeMap<u64, Conn>>>,
) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = stream else { continue };
        let (Ok(peer), Ok(local)) = (client.peer_addr(), client.local_addr()) else {
            continue;
        };
        let cut = *lock(&shared.cut);
        if cut.is_some_and(|c| covered(c, node, peer, local)) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(upstream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
            client.try_clone(),
            upstream.try_clone(),
            client.try_clone(),
            upstream.try_clone(),
        ) else {
            continue;
        };
        let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        lock(conns).insert(
            id,
            Conn {
                peer,
                local,
                client,
                upstream,
            },
        );
        // A cut that began between the check above and the registration must cover this one too.
        if lock(&shared.cut).is_some_and(|c| covered(c, node, peer, local)) {
            let _ = c2.shutdown(Shutdown::Both);
            let _ = u2.shutdown(Shutdown::Both);
        }
        let registry = Arc::clone(conns);
        let spawned = std::thread::Builder::new()
            .name(format!("proxy-{node}-{id}"))
            .spawn(move || {
                let forward = std::thread::spawn(move || pump(c2, u2));
                pump(u3, c3);
                let _ = forward.join();
                lock(&registry).remove(&id);
            });
        if spawned.is_err() {
            lock(conns).remove(&id);
        }
    }
}

/// Copies `from` to `to` until EOF or an error, then shuts both down.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Whether the TCP socket connected from `addr` to `remote` belongs to process `pid`.
fn socket_owned_by(addr: SocketAddr, remote: SocketAddr, pid: i32) -> bool {
    let Some(inode) = socket_inode(addr, remote) else {
        return false;
    };
    let want = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == want.as_str()))
}

/// The inode of the open IPv4 TCP socket connected from `addr` to `remote`, from
/// `/proc/net/tcp` (entries with inode 0, such as TIME_WAIT, belong to no process).
fn socket_inode(addr: SocketAddr, remote: SocketAddr) -> Option<String> {
    let (SocketAddr::V4(local), SocketAddr::V4(remote)) = (addr, remote) else {
        return None;
    };
    let (local, remote) = (proc_net_addr(local), proc_net_addr(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let inode = fields.get(9).copied().filter(|i| *i != "0")?;
        (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
            .then(|| inode.to_owned())
    })
}

/// `addr` as `/proc/net/tcp` prints it: the address as a host-order hex word, then the port.
fn proc_net_addr(addr: SocketAddrV4) -> String {
    format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(addr.ip().octets()),
        addr.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_process_owning_a_client_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        assert_eq!(client.local_addr().unwrap(), peer);
        let local = server.local_addr().unwrap();
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(socket_owned_by(peer, local, me));
        // pid 1 is never this test process.
        assert!(!socket_owned_by(peer, local, 1));
        // The proxy end of the connection is not the client's socket.
        assert!(!socket_owned_by(local, peer, 1));
    }

    #[test]
    fn cut_stops_forwarding_and_heal_resumes() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let r = s.try_clone().unwrap();
                    pump(r, s);
                });
            }
        });
        let mut proxies = PeerProxies::new();
        let addr = proxies.add(7, Ipv4Addr::LOCALHOST, target).unwrap();
        let roundtrip = || -> std::io::Result<Vec<u8>> {
            let mut s = TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"ping")?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf)?;
            Ok(buf.to_vec())
        };
        assert_eq!(roundtrip().unwrap(), b"ping");
        proxies.cut(7, 1);
        assert!(roundtrip().is_err());
        proxies.heal();
        assert_eq!(roundtrip().unwrap(), b"ping");
    }
}
