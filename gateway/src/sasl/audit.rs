//! The audit of authentications: counters by mechanism and failure reason (bounded labels), and
//! failure logs with the principal, the listener and the peer, at most [`LOGS_PER_SECOND`] a
//! second (the rest are counted and the count is reported by the next log).

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{IntCounterVec, Opts, Registry};
use tracing::warn;

/// Failure logs written per second at most.
pub const LOGS_PER_SECOND: u32 = 10;

/// Authentication counters and the failure log limiter.
#[derive(Debug)]
pub struct Audit {
    failures: IntCounterVec,
    successes: IntCounterVec,
    limiter: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

/// One failed authentication, as logged.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// The listener name.
    pub listener: &'a str,
    /// The client's address.
    pub peer: &'a str,
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, or `TLS` for handshakes.
    pub mechanism: &'static str,
    /// The principal the client claimed (`User:<name>`), or empty when unknown.
    pub principal: &'a str,
    /// A bounded reason label.
    pub reason: &'static str,
    /// Details for the log.
    pub detail: &'a str,
}

impl Audit {
    /// Creates and registers the counters.
    ///
    /// # Errors
    /// A prometheus error if they are already registered.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let failures = IntCounterVec::new(
            Opts::new(
                "kafka_gateway_authentication_failures_total",
                "Failed Kafka client authentications (SASL exchanges, TLS handshakes, requests before authentication) by mechanism and reason",
            ),
            &["mechanism", "reason"],
        )?;
        let successes = IntCounterVec::new(
            Opts::new(
                "kafka_gateway_authentications_total",
                "Successful SASL authentications by mechanism",
            ),
            &["mechanism"],
        )?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(successes.clone()))?;
        Ok(Self {
            failures,
            successes,
            limiter: Mutex::new(Window {
                start: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
        })
    }

    /// Counts and (rate-limited) logs a failure.
    pub fn failure(&self, f: Failure<'_>) {
        self.failures.with_label_values(&[f.mechanism, f.reason]).inc();
        let Some(suppressed) = self.admit_log(Instant::now()) else {
            return;
        };
        warn!(
            listener = f.listener,
            peer = f.peer,
            mechanism = f.mechanism,
            principal = f.principal,
            reason = f.reason,
            detail = f.detail,
            suppressed_since_last = suppressed,
            "authentication failed"
        );
    }

    /// Counts a success.
    pub fn success(&self, mechanism: &'static str) {
        self.successes.with_label_values(&[mechanism]).inc();
    }

    /// Failures counted so far with these labels.
    pub fn failures(&self, mechanism: &str, reason: &str) -> u64 {
        self.failures.with_label_values(&[mechanism, reason]).get()
    }

    /// `Some(logs suppressed since the last one)` when a log may be written now.
    fn admit_log(&self, now: Instant) -> Option<u64> {
        let mut w = self.limiter.lock();
        if now.duration_since(w.start) >= Duration::from_secs(1) {
            w.start = now;
            w.logged = 0;
        }
        if w.logged >= LOGS_PER_SECOND {
            w.suppressed += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_and_logs_limited() {
        let audit = Audit::new(&Registry::new()).unwrap();
        let t0 = Instant::now();
        let admitted = (0..25).filter(|_| audit.admit_log(t0).is_some()).count();
        assert_eq!(admitted, LOGS_PER_SECOND as usize);
        assert_eq!(audit.admit_log(t0 + Duration::from_secs(1)), Some(15));
        let f = Failure {
            listener: "SASL",
            peer: "1.2.3.4",
            mechanism: "PLAIN",
            principal: "User:x",
            reason: "invalid_credentials",
            detail: "",
        };
        audit.failure(f);
        audit.failure(f);
        assert_eq!(audit.failures("PLAIN", "invalid_credentials"), 2);
    }
}
