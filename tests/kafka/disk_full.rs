//! A full disk under the embedded log: a producer (librdkafka, acks=all) fills a small tmpfs
//! holding the data directory, gets the storage error for what no longer fits, space is freed,
//! the gateway restarts, and every acknowledged record is at its acknowledged offset.
//!
//! Needs root to mount the tmpfs (the README test command runs as root in CI); without it the
//! test prints why and passes without checking anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tests::harness::phase::note;
use tests::harness::raw::create_topic;
use tests::{phase, Gateway, GatewayOptions};

use crate::durability::{ack_lines, producer, verify};

/// Size of the tmpfs: a few MB of log fill it (records average under 1 KB).
const TMPFS_SIZE: &str = "16m";
/// Records offered: about 27 MB, well past the tmpfs.
const OFFERED: u32 = 30_000;
/// Deadline for the producer offering all of them (failures are retried twice, then reported).
const PRODUCE_DEADLINE: Duration = Duration::from_secs(300);

/// A tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts; `Err` carries why it cannot (not root, no mount command, mount refused).
    fn mount(dir: &Path) -> Result<Self> {
        ensure!(rustix::process::geteuid().is_root(), "not running as root");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
            .arg(dir)
            .output()
            .context("run mount")?;
        ensure!(
            out.status.success(),
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(Self { dir: dir.to_owned() })
    }

    /// Grows the tmpfs: frees space without touching its files.
    fn grow(&self, size: &str) -> Result<()> {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()
            .context("run mount -o remount")?;
        ensure!(
            out.status.success(),
            "remount failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so a process still holding a file cannot keep the mount (and the test dir) alive.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[test]
fn full_disk_fails_produce_and_keeps_every_acknowledged_record() -> Result<()> {
    const TOPIC: &str = "disk-full";
    let mut gw = Gateway::start("disk-full", GatewayOptions::default())?;
    // The data directory moves onto a fresh tmpfs while the gateway is stopped; it starts again
    // as a new node there, on the same ports.
    gw.stop()?;
    let tmpfs = match Tmpfs::mount(&gw.data_dir()) {
        Ok(t) => t,
        Err(e) => {
            note(format!(
                "SKIPPED: cannot mount a tmpfs for the data directory ({e:#})"
            ));
            return Ok(());
        }
    };
    gw.restart()?;
    create_topic(gw.kafka_addr(), TOPIC, 3)?;

    phase(format!(
        "offer {OFFERED} records (about 27 MB) to a {TMPFS_SIZE} tmpfs"
    ));
    let out = producer(&gw, TOPIC, 0, OFFERED)
        .arg("--continuous")
        .timeout(PRODUCE_DEADLINE)
        .run()?;
    let mut acked = ack_lines(out.lines());
    let summary = out
        .lines()
        .rev()
        .find(|l| l.contains("\"scenario\""))
        .context("producer summary line")?;
    let summary: serde_json::Value = serde_json::from_str(summary)?;
    note(format!("producer: {summary}"));
    ensure!(
        summary["failed"].as_u64() > Some(0),
        "the full disk never failed a produce: {summary}"
    );
    ensure!(!acked.is_empty(), "nothing acknowledged before the disk filled");
    ensure!(
        gw.is_running(),
        "gateway exited on a full disk\n{}",
        gw.log_tail()
    );
    let logged = gw.log_text();
    ensure!(
        logged.contains("No space left on device"),
        "the gateway never logged ENOSPC\n{}",
        gw.log_tail()
    );

    phase("free space, restart, verify every acknowledged record");
    tmpfs.grow("256m")?;
    gw.restart()?;
    let stored = verify(&gw, TOPIC, &acked)?;
    note(format!("after restart: {stored}"));

    phase("the log takes writes again after the restart");
    let out = producer(&gw, TOPIC, OFFERED, 300).run()?;
    let more = ack_lines(out.lines());
    ensure!(
        more.len() == 300,
        "{} of 300 acknowledged after freeing space",
        more.len()
    );
    acked.extend(more);
    gw.restart()?;
    verify(&gw, TOPIC, &acked)?;
    gw.stop()?;
    drop(tmpfs);
    Ok(())
}
