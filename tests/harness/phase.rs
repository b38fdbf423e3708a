//! Logged test phases.
//!
//! Each phase line carries the time since the test process started, so a failing test's captured
//! output reads as a timeline next to the gateway log tail.

use std::sync::OnceLock;
use std::time::Instant;

/// Process-wide start instant all phase timestamps are relative to.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Logs the start of a test phase to stderr (captured by the test runner, shown on failure).
pub fn phase(what: impl AsRef<str>) {
    let elapsed = epoch().elapsed();
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    eprintln!(
        "[{:>8.3}s {test}] phase: {}",
        elapsed.as_secs_f64(),
        what.as_ref()
    );
}

/// Logs a detail line inside the current phase.
pub fn note(what: impl AsRef<str>) {
    let elapsed = epoch().elapsed();
    eprintln!("[{:>8.3}s]   {}", elapsed.as_secs_f64(), what.as_ref());
}
