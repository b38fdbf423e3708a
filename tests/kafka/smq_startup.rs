//! A gateway started before SeaweedMQ is reachable (a pod scheduled before its dependencies)
//! stays up, says it is not ready, and becomes ready once SeaweedMQ answers, instead of exiting
//! into a restart loop.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tests::harness::cluster::poll_until;
use tests::harness::gateway::{binary_path, free_addrs_on};
use tests::harness::http;
use tests::harness::proxy::PeerProxies;
use tests::harness::raw::create_topic;
use tests::harness::weed::WeedHandle;
use tests::phase;

const WAIT: Duration = Duration::from_secs(60);
const HTTP: Duration = Duration::from_secs(5);

/// Kills the gateway if the test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status(admin: SocketAddr, path: &str) -> Option<u16> {
    http::get(admin, path, HTTP).ok().map(|r| r.status)
}

#[test]
fn a_gateway_started_before_seaweedmq_waits_and_becomes_ready() -> Result<()> {
    let weed = WeedHandle::start()?;
    let (_, http_port) = weed.master().rsplit_once(':').context("master address")?;
    let grpc: SocketAddr = format!("127.0.0.1:{}", http_port.parse::<u16>()? + 10_000).parse()?;
    // The gateway finds SeaweedMQ through this proxy of the master's gRPC port, refusing every
    // connection until healed: SeaweedMQ "is not up yet".
    let mut proxies = PeerProxies::new();
    let proxy = proxies.add(0, Ipv4Addr::LOCALHOST, grpc)?;
    proxies.cut(0, 0);
    ensure!(proxy.port() > 10_000, "proxy port {} has no http twin", proxy.port());
    let master = format!("127.0.0.1:{}", proxy.port() - 10_000);

    phase("start a gateway while SeaweedMQ is unreachable");
    let dir = tempfile::tempdir()?;
    let [kafka, admin] = free_addrs_on(std::net::Ipv4Addr::LOCALHOST)?;
    let log_path = dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path)?;
    let child = Command::new(binary_path()?)
        .args(["--storage", "seaweedmq", "--seaweedmq-masters", &master])
        .args(["--listen", &kafka.to_string(), "--advertised-listener", &kafka.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawn gateway")?;
    let mut gw = Running(child);
    poll_until("alive and not ready while SeaweedMQ is unreachable", WAIT, || {
        Ok((status(admin, "/healthz") == Some(200) && status(admin, "/readyz") == Some(503)).then_some(()))
    })?;
    poll_until("three connection attempts", WAIT, || {
        let text = std::fs::read_to_string(&log_path)?;
        Ok((text.matches("SeaweedMQ not reachable yet").count() >= 3).then_some(()))
    })?;
    ensure!(gw.0.try_wait()?.is_none(), "the gateway exited while waiting for SeaweedMQ");
    ensure!(status(admin, "/readyz") == Some(503), "ready without SeaweedMQ");

    phase("SeaweedMQ becomes reachable: the gateway gets ready and serves");
    proxies.heal();
    poll_until("ready once SeaweedMQ answers", WAIT, || {
        Ok((status(admin, "/readyz") == Some(200)).then_some(()))
    })?;
    create_topic(kafka, "smq-late-start", 1)?;

    phase("SIGTERM stops it cleanly");
    let pid = rustix::process::Pid::from_raw(i32::try_from(gw.0.id())?).context("pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    let exited = poll_until("exit after SIGTERM", WAIT, || Ok(gw.0.try_wait()?))?;
    ensure!(exited.success(), "exit status {exited}");
    Ok(())
}
