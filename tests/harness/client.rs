//! Running client programs (python3, node, kcat) against a gateway, each with a deadline.
//!
//! A client runs either to completion ([`ClientCommand::run`], [`ClientCommand::run_json`]) or in
//! the background ([`ClientCommand::spawn`]) where the test reads its stdout line by line (group
//! members reporting assignments, producers reporting acknowledged records) and may write commands
//! to its stdin. Scripts live in `tests/clients/`; by convention they print JSON results on stdout,
//! diagnostics on stderr, and exit non-zero with a clear message when an expectation fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;

use super::phase::note;

/// Default deadline of a foreground client run.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes of client stderr kept for error messages.
const STDERR_KEEP_BYTES: usize = 64 * 1024;

/// Directory holding the client scripts and the kafkajs `node_modules`.
pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// A client program invocation with its deadline.
#[derive(Debug)]
pub struct ClientCommand {
    label: String,
    cmd: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl ClientCommand {
    /// `python3 tests/clients/<script>` (unbuffered, so background lines arrive as printed).
    pub fn python(script: &str) -> Self {
        let mut cmd = Command::new("python3");
        cmd.arg(clients_dir().join(script)).env("PYTHONUNBUFFERED", "1");
        Self::new(script, cmd)
    }

    /// `node tests/clients/<script>` (modules resolve from `tests/clients/node_modules`).
    pub fn node(script: &str) -> Self {
        let mut cmd = Command::new("node");
        cmd.arg(clients_dir().join(script)).current_dir(clients_dir());
        Self::new(script, cmd)
    }

    /// `kcat` with the given bootstrap address already set (`-b`).
    pub fn kcat(bootstrap: &str) -> Self {
        let mut cmd = Command::new("kcat");
        cmd.arg("-b").arg(bootstrap);
        Self::new("kcat", cmd)
    }

    fn new(label: &str, cmd: Command) -> Self {
        Self {
            label: label.to_owned(),
            cmd,
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Bytes written to stdin before it is closed (foreground runs).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Overrides the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs to completion and returns stdout.
    ///
    /// # Errors
    /// Spawn failure, deadline exceeded, or a non-zero exit (message includes the client's stderr).
    pub fn run(self) -> Result<String> {
        let timeout = self.timeout;
        let label = self.label.clone();
        let mut client = self.spawn()?;
        let status = client.wait(timeout)?;
        let stdout = client.lines.join("\n");
        if !status.success() {
            bail!(
                "{label} failed ({status})\n--- stderr ---\n{}\n--- stdout ---\n{stdout}",
                client.stderr()
            );
        }
        Ok(stdout)
    }

    /// Runs to completion and parses the last non-empty stdout line as JSON.
    ///
    /// # Errors
    /// As [`ClientCommand::run`], plus a missing or malformed JSON line.
    pub fn run_json(self) -> Result<Value> {
        let label = self.label.clone();
        let stdout = self.run()?;
        let last = stdout
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .ok_or_else(|| anyhow!("{label} printed nothing on stdout"))?;
        let value: Value = serde_json::from_str(last)
            .with_context(|| format!("{label} printed non-JSON result {last:?}"))?;
        note(format!("{label} result: {value}"));
        Ok(value)
    }

    /// Starts the client in the background with piped stdin/stdout/stderr.
    ///
    /// # Errors
    /// Spawn failure (a missing program names the install command).
    pub fn spawn(mut self) -> Result<BackgroundClient> {
        note(format!("exec {:?}", self.cmd));
        let mut child = self
            .cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "spawn {:?} (install test clients with scripts/test.sh)",
                    self.cmd.get_program()
                )
            })?;
        let pid = Pid::from_child(&child);
        let mut stdin = child.stdin.take();
        if let (Some(bytes), Some(pipe)) = (self.stdin.take(), stdin.as_mut()) {
            pipe.write_all(&bytes).context("write client stdin")?;
            stdin = None;
        }
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout pipe"))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr pipe"))?;
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr_buf);
        std::thread::spawn(move || {
            let mut reader = stderr;
            let mut chunk = [0u8; 8192];
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut buf = sink.lock().unwrap_or_else(|e| e.into_inner());
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > STDERR_KEEP_BYTES * 2 {
                    let cut = buf.len() - STDERR_KEEP_BYTES;
                    buf.drain(..cut);
                }
            }
        });
        let (exit_tx, exit_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = exit_tx.send(child.wait());
        });
        Ok(BackgroundClient {
            label: self.label,
            pid,
            stdin,
            line_rx,
            lines: Vec::new(),
            stderr_buf,
            exit_rx,
            status: None,
        })
    }
}

/// A client process running in the background.
#[derive(Debug)]
pub struct BackgroundClient {
    label: String,
    pid: Pid,
    stdin: Option<ChildStdin>,
    line_rx: mpsc::Receiver<String>,
    lines: Vec<String>,
    stderr_buf: Arc<Mutex<Vec<u8>>>,
    exit_rx: mpsc::Receiver<std::io::Result<ExitStatus>>,
    status: Option<ExitStatus>,
}

impl BackgroundClient {
    /// Every stdout line received so far, in order.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The kept tail of the client's stderr.
    pub fn stderr(&self) -> String {
        let buf = self.stderr_buf.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Waits for the next stdout line; `Ok(None)` when stdout closed.
    ///
    /// # Errors
    /// No line within `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Result<Option<String>> {
        match self.line_rx.recv_timeout(timeout) {
            Ok(line) => {
                self.lines.push(line.clone());
                Ok(Some(line))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(None),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!(
                    "{}: no output line within {timeout:?}\n--- stderr ---\n{}",
                    self.label,
                    self.stderr()
                )
            }
        }
    }

    /// The next stdout line if one arrives within `timeout`; `None` on timeout or closed stdout
    /// (for tests multiplexing several clients).
    pub fn try_line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.line_rx.recv_timeout(timeout).ok()?;
        self.lines.push(line.clone());
        Some(line)
    }

    /// Reads lines until one satisfies `pred` and returns it.
    ///
    /// # Errors
    /// Deadline exceeded or stdout closed first.
    pub fn wait_for_line(&mut self, timeout: Duration, mut pred: impl FnMut(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{}: expected line not seen within {timeout:?}\n--- stderr ---\n{}",
                    self.label,
                    self.stderr()
                );
            }
            match self.next_line(left)? {
                Some(line) if pred(&line) => return Ok(line),
                Some(_) => {}
                None => bail!(
                    "{}: stdout closed before the expected line\n--- stderr ---\n{}",
                    self.label,
                    self.stderr()
                ),
            }
        }
    }

    /// Like [`BackgroundClient::wait_for_line`] for JSON lines.
    ///
    /// # Errors
    /// As `wait_for_line`.
    pub fn wait_for_json(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Result<Value> {
        let line = self.wait_for_line(timeout, |line| {
            serde_json::from_str::<Value>(line)
                .map(|v| pred(&v))
                .unwrap_or(false)
        })?;
        Ok(serde_json::from_str(&line)?)
    }

    /// Writes one line to the client's stdin (a command for interactive scripts).
    ///
    /// # Errors
    /// Stdin already closed or the write fails.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let pipe = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{}: stdin closed", self.label))?;
        writeln!(pipe, "{line}").context("write client stdin")?;
        pipe.flush().context("flush client stdin")
    }

    /// Closes stdin (scripts treat EOF as "finish").
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Kills the client with SIGKILL (no-op once exited).
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = kill_process(self.pid, Signal::KILL);
        }
    }

    /// Waits for exit, collecting all remaining stdout lines; kills the client on timeout.
    ///
    /// # Errors
    /// Deadline exceeded (the client is killed).
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        self.close_stdin();
        let status = match self.exit_rx.recv_timeout(timeout) {
            Ok(status) => status.context("wait for client")?,
            Err(_) => {
                let _ = kill_process(self.pid, Signal::KILL);
                let _ = self.exit_rx.recv_timeout(Duration::from_secs(10));
                self.drain_lines();
                bail!(
                    "{} timed out after {timeout:?} (killed)\n--- stderr ---\n{}\n--- stdout ---\n{}",
                    self.label,
                    self.stderr(),
                    self.lines.join("\n")
                );
            }
        };
        self.status = Some(status);
        self.drain_lines();
        Ok(status)
    }

    /// Receives stdout lines until the reader thread hangs up (bounded, the process has exited).
    fn drain_lines(&mut self) {
        while let Ok(line) = self.line_rx.recv_timeout(Duration::from_secs(10)) {
            self.lines.push(line);
        }
    }
}

impl Drop for BackgroundClient {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.kill();
            let _ = self.exit_rx.recv_timeout(Duration::from_secs(10));
        }
    }
}
