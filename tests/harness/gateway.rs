//! The real `kafka-gateway` binary as a child process of a test.
//!
//! Invariants: a [`Gateway`] owns one temporary directory (data dir + log file) and one pair of
//! loopback ports for its whole life, so [`Gateway::restart`] comes back on the same data and the
//! same addresses. At most one process runs per [`Gateway`]; dropping it kills the process.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};
use tempfile::TempDir;

use super::http::{self, HttpResponse};
use super::phase::{note, phase};

/// How long a gateway may take to report ready on `/readyz`.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a graceful (SIGTERM) shutdown may take.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// Interval between `/readyz` polls; readiness has no push notification.
const READY_POLL: Duration = Duration::from_millis(50);
/// Lines of the gateway log printed when a test fails or a lifecycle step goes wrong.
const LOG_TAIL_LINES: usize = 60;

/// Command-line options a test passes to the gateway, beyond the per-test addresses and data dir.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// `--fsync` policy (`always` or `interval`); the gateway default when `None`.
    pub fsync: Option<String>,
    /// `--auto-create-topics`; the gateway default when `None`.
    pub auto_create_topics: Option<bool>,
    /// `--default-partitions` for auto-created topics.
    pub default_partitions: Option<u32>,
    /// Further `--flag value` pairs, passed verbatim.
    pub extra_args: Vec<String>,
    /// Extra environment variables for the gateway process.
    pub env: Vec<(String, String)>,
    /// Loopback IP the Kafka and admin listeners bind (and advertise); 127.0.0.1 when `None`.
    pub bind_ip: Option<Ipv4Addr>,
    /// Kafka listeners besides the PLAINTEXT one: (name, security protocol), each on a free
    /// port of its own (then passed as `--listeners`).
    pub listeners: Vec<(String, String)>,
}

impl GatewayOptions {
    /// Sets the fsync policy.
    pub fn fsync(mut self, policy: &str) -> Self {
        self.fsync = Some(policy.to_owned());
        self
    }

    /// Turns topic auto-creation on or off.
    pub fn auto_create_topics(mut self, on: bool) -> Self {
        self.auto_create_topics = Some(on);
        self
    }

    /// Sets the partition count of auto-created topics.
    pub fn default_partitions(mut self, n: u32) -> Self {
        self.default_partitions = Some(n);
        self
    }

    /// Appends a verbatim `flag value` pair.
    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.extra_args.push(flag.to_owned());
        self.extra_args.push(value.to_owned());
        self
    }

    /// Sets an environment variable for the gateway process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds a Kafka listener `name` with security `protocol` on a free port.
    pub fn listener(mut self, name: &str, protocol: &str) -> Self {
        self.listeners.push((name.to_owned(), protocol.to_owned()));
        self
    }

    /// Binds the Kafka and admin listeners on `ip` (a 127.0.0.X address) instead of 127.0.0.1.
    pub fn bind_ip(mut self, ip: Ipv4Addr) -> Self {
        self.bind_ip = Some(ip);
        self
    }
}

/// A running process and the channel its waiter thread reports the exit status on.
#[derive(Debug)]
struct Running {
    pid: Pid,
    exit: mpsc::Receiver<std::io::Result<ExitStatus>>,
}

/// A `kafka-gateway` process on loopback with its own data directory.
#[derive(Debug)]
pub struct Gateway {
    name: String,
    opts: GatewayOptions,
    dir: TempDir,
    kafka_addr: SocketAddr,
    admin_addr: SocketAddr,
    /// Addresses of the listeners of `opts.listeners`, in order.
    listener_addrs: Vec<SocketAddr>,
    running: Option<Running>,
}

impl Gateway {
    /// Starts a gateway with fresh ports and data directory and waits until `/readyz` is 200.
    ///
    /// `name` labels the temp dir and log lines (use the test's name).
    ///
    /// # Errors
    /// Missing binary, spawn failure, early exit or readiness timeout (with the log tail).
    pub fn start(name: &str, opts: GatewayOptions) -> Result<Self> {
        phase(format!("start gateway {name}"));
        let dir = tempfile::Builder::new()
            .prefix(&format!("kgw-{name}-"))
            .tempdir()
            .context("create gateway temp dir")?;
        std::fs::create_dir_all(dir.path().join("data")).context("create data dir")?;
        let ip = opts.bind_ip.unwrap_or(Ipv4Addr::LOCALHOST);
        // A gateway without --cluster-listen or --peers is standalone and opens no raft port.
        let [kafka_addr, admin_addr] = free_addrs_on(ip)?;
        let listener_addrs = (0..opts.listeners.len())
            .map(|_| free_addrs_on::<1>(ip).map(|[a]| a))
            .collect::<Result<Vec<_>>>()?;
        let mut gateway = Self {
            name: name.to_owned(),
            opts,
            dir,
            kafka_addr,
            admin_addr,
            listener_addrs,
            running: None,
        };
        gateway.spawn()?;
        Ok(gateway)
    }

    /// The Kafka listener address (also the advertised listener).
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    /// The address of the listener `name` added with [`GatewayOptions::listener`].
    ///
    /// # Errors
    /// No such listener.
    pub fn listener_addr(&self, name: &str) -> Result<SocketAddr> {
        self.opts
            .listeners
            .iter()
            .position(|(n, _)| n == name)
            .and_then(|i| self.listener_addrs.get(i).copied())
            .ok_or_else(|| anyhow!("gateway {} has no listener {name}", self.name))
    }

    /// `host:port` bootstrap string for clients.
    pub fn bootstrap(&self) -> String {
        self.kafka_addr.to_string()
    }

    /// The admin HTTP address (`/metrics`, `/healthz`, `/readyz`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The gateway's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch directory next to the data dir for test files (acked-record lists and such).
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the gateway's stderr log (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    /// Process id of the running gateway, if any.
    pub fn pid(&self) -> Option<i32> {
        self.running.as_ref().map(|r| r.pid.as_raw_nonzero().get())
    }

    /// TCP ports the running gateway process listens on (from `/proc`: its socket inodes
    /// matched against the LISTEN entries of `/proc/net/tcp` and `tcp6`), sorted.
    ///
    /// # Errors
    /// No running process, or `/proc` unreadable.
    pub fn listening_ports(&self) -> Result<Vec<u16>> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("gateway {} is not running", self.name))?;
        let mut inodes = std::collections::BTreeSet::new();
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).context("read the fd table")? {
            let Ok(target) = std::fs::read_link(fd?.path()) else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
        let mut ports = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // local_address is fields[1] (`IP:PORT` in hex), st is fields[3] (0A = LISTEN),
                // inode is fields[9].
                if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                    let port = fields[1].rsplit(':').next().unwrap_or_default();
                    ports.push(u16::from_str_radix(port, 16).context("port in /proc/net/tcp")?);
                }
            }
        }
        ports.sort_unstable();
        ports.dedup();
        Ok(ports)
    }

    /// Resident memory of the running gateway process in bytes (`VmRSS`).
    ///
    /// # Errors
    /// No running process, or `/proc` unreadable.
    pub fn rss_bytes(&self) -> Result<u64> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("gateway {} is not running", self.name))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("read status")?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?
            .parse()
            .context("VmRSS")?;
        Ok(kib * 1024)
    }

    /// GETs an admin endpoint.
    ///
    /// # Errors
    /// Connection or protocol errors.
    pub fn admin_get(&self, path: &str) -> Result<HttpResponse> {
        http::get(self.admin_addr, path, Duration::from_secs(5))
    }

    /// Sends SIGTERM and waits for the process to exit; asserts exit status 0.
    ///
    /// # Errors
    /// No running process, signal failure, shutdown deadline exceeded, or a non-zero exit.
    pub fn stop(&mut self) -> Result<()> {
        phase(format!("stop gateway {} (SIGTERM)", self.name));
        let running = self
            .running
            .take()
            .ok_or_else(|| anyhow!("gateway {} is not running", self.name))?;
        kill_process(running.pid, Signal::TERM).context("send SIGTERM")?;
        let status = match running.exit.recv_timeout(STOP_DEADLINE) {
            Ok(status) => status.context("wait for gateway")?,
            Err(_) => {
                // Graceful shutdown hung: kill it so the test does not leak a process.
                let _ = kill_process(running.pid, Signal::KILL);
                let _ = running.exit.recv_timeout(STOP_DEADLINE);
                bail!(
                    "gateway {} did not exit within {STOP_DEADLINE:?} of SIGTERM\n{}",
                    self.name,
                    self.log_tail()
                );
            }
        };
        if !status.success() {
            bail!(
                "gateway {} exited with {status} after SIGTERM (want 0)\n{}",
                self.name,
                self.log_tail()
            );
        }
        note(format!("gateway {} exited cleanly", self.name));
        Ok(())
    }

    /// Kills the process with SIGKILL (a crash: no flush, no shutdown hooks) and reaps it.
    ///
    /// # Errors
    /// No running process, signal failure, or the process not being reaped in time.
    pub fn kill9(&mut self) -> Result<()> {
        phase(format!("kill -9 gateway {}", self.name));
        let running = self
            .running
            .take()
            .ok_or_else(|| anyhow!("gateway {} is not running", self.name))?;
        kill_process(running.pid, Signal::KILL).context("send SIGKILL")?;
        running
            .exit
            .recv_timeout(STOP_DEADLINE)
            .map_err(|_| anyhow!("gateway {} not reaped after SIGKILL", self.name))?
            .context("wait for gateway")?;
        Ok(())
    }

    /// Starts the gateway again on the same data directory and ports (stopping it first with
    /// SIGTERM if it is running) and waits for readiness.
    ///
    /// # Errors
    /// As [`Gateway::stop`] and [`Gateway::start`].
    pub fn restart(&mut self) -> Result<()> {
        if self.running.is_some() {
            self.stop()?;
        }
        phase(format!("restart gateway {}", self.name));
        self.spawn()
    }

    /// The gateway log as plain text (ANSI colour codes removed), empty if unreadable.
    pub fn log_text(&self) -> String {
        let mut raw = Vec::new();
        if let Ok(mut file) = File::open(self.log_path()) {
            let _ = file.read_to_end(&mut raw);
        }
        strip_ansi(&String::from_utf8_lossy(&raw))
    }

    /// The last lines of the gateway log, framed for printing.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        format!(
            "---- gateway {} log tail ({}) ----\n{}\n---- end of gateway {} log ----",
            self.name,
            self.log_path().display(),
            lines[start..].join("\n"),
            self.name
        )
    }

    /// Waits until a log line satisfies `pred` and returns it (the log is written by another
    /// process, so it is polled at a short interval until the deadline).
    ///
    /// # Errors
    /// No such line within `timeout`.
    pub fn wait_for_log_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log_text().lines().find(|l| pred(l)) {
                return Ok(line.to_owned());
            }
            if Instant::now() >= deadline {
                bail!(
                    "expected log line not written within {timeout:?}\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// Whether the process is still alive (it has not reported an exit).
    pub fn is_running(&mut self) -> bool {
        let Some(running) = &self.running else {
            return false;
        };
        match running.exit.try_recv() {
            Ok(_) | Err(mpsc::TryRecvError::Disconnected) => {
                self.running = None;
                false
            }
            Err(mpsc::TryRecvError::Empty) => true,
        }
    }

    fn command(&self) -> Result<Command> {
        let bin = binary_path()?;
        let mut cmd = Command::new(&bin);
        if self.opts.listeners.is_empty() {
            cmd.arg("--listen")
                .arg(self.kafka_addr.to_string())
                .arg("--advertised-listener")
                .arg(self.kafka_addr.to_string());
        } else {
            let mut listeners = vec![format!("PLAINTEXT://{}", self.kafka_addr)];
            let mut map = vec!["PLAINTEXT:PLAINTEXT".to_owned()];
            for ((name, protocol), addr) in self.opts.listeners.iter().zip(&self.listener_addrs) {
                listeners.push(format!("{name}://{addr}"));
                map.push(format!("{name}:{protocol}"));
            }
            let listeners = listeners.join(",");
            cmd.arg("--listeners")
                .arg(&listeners)
                .arg("--advertised-listeners")
                .arg(&listeners)
                .arg("--listener-security-protocol-map")
                .arg(map.join(","));
        }
        cmd.arg("--admin-listen")
            .arg(self.admin_addr.to_string())
            .arg("--data-dir")
            .arg(self.data_dir());
        if let Some(fsync) = &self.opts.fsync {
            cmd.arg("--fsync").arg(fsync);
        }
        if let Some(on) = self.opts.auto_create_topics {
            cmd.arg("--auto-create-topics").arg(on.to_string());
        }
        if let Some(n) = self.opts.default_partitions {
            cmd.arg("--default-partitions").arg(n.to_string());
        }
        cmd.args(&self.opts.extra_args);
        // The test's own environment may carry KAFKA_GATEWAY_* settings; the test decides alone.
        for (key, _) in std::env::vars() {
            if key.starts_with("KAFKA_GATEWAY_") {
                cmd.env_remove(key);
            }
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        );
        for (key, value) in &self.opts.env {
            cmd.env(key, value);
        }
        Ok(cmd)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = self.command()?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("open gateway log")?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().context("clone log handle")?)
            .stderr(log);
        note(format!("exec {cmd:?}"));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {:?}", cmd.get_program()))?;
        let pid = Pid::from_child(&child);
        let (tx, exit) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("wait-{}", self.name))
            .spawn(move || {
                let _ = tx.send(child.wait());
            })
            .context("spawn waiter thread")?;
        self.running = Some(Running { pid, exit });
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(running) = &self.running {
                if let Ok(status) = running.exit.try_recv() {
                    self.running = None;
                    bail!(
                        "gateway {} exited before ready: {:?}\n{}",
                        self.name,
                        status,
                        self.log_tail()
                    );
                }
            }
            if let Ok(resp) = self.admin_get("/readyz") {
                if resp.status == 200 {
                    note(format!("gateway {} ready on {}", self.name, self.kafka_addr));
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "gateway {} not ready within {READY_DEADLINE:?}\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(READY_POLL);
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = kill_process(running.pid, Signal::KILL);
            let _ = running.exit.recv_timeout(STOP_DEADLINE);
        }
        // Captured by the test runner: visible only when the test fails.
        eprintln!("{}", self.log_tail());
        if std::env::var_os("KAFKA_GATEWAY_TEST_KEEP").is_some() {
            eprintln!("keeping gateway {} dir {}", self.name, self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
    }
}

/// Removes ANSI escape sequences (`ESC [ ... final-byte`) from log text.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// Reserves a free port on the loopback address `ip` by binding port 0 there and releasing it.
///
/// # Errors
/// Binding fails.
pub fn free_addr_on(ip: Ipv4Addr) -> Result<SocketAddr> {
    let listener = TcpListener::bind((ip, 0)).with_context(|| format!("bind {ip}:0"))?;
    Ok(listener.local_addr()?)
}

/// `N` distinct free ports on the loopback address `ip`, all held until all are chosen.
///
/// # Errors
/// Binding fails.
pub fn free_addrs_on<const N: usize>(ip: Ipv4Addr) -> Result<[SocketAddr; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind((ip, 0)).with_context(|| format!("bind {ip}:0")))
        .collect::<Result<Vec<_>>>()?;
    let addrs = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<std::io::Result<Vec<_>>>()?;
    addrs
        .try_into()
        .map_err(|_| anyhow!("bound {N} listeners but read fewer addresses"))
}

/// Location of the gateway binary: `$KAFKA_GATEWAY_BIN`, else next to this test binary's
/// target directory (`target/<profile>/kafka-gateway`).
///
/// # Errors
/// The binary does not exist.
pub fn binary_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("KAFKA_GATEWAY_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("KAFKA_GATEWAY_BIN={} does not exist", path.display());
        }
        return Ok(path);
    }
    let mut candidates = Vec::new();
    // Test binaries live in target/<profile>/deps/.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.join("kafka-gateway"));
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    candidates.push(workspace.join("target").join("debug").join("kafka-gateway"));
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "kafka-gateway binary not found at {candidates:?}: run cargo build -p kafka-gateway first"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::strip_ansi;

    #[test]
    fn strips_colour_codes() {
        let coloured = "\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m closing peer\u{1b}[2m=\u{1b}[0m1";
        assert_eq!(strip_ansi(coloured), "2026  WARN closing peer=1");
    }
}
