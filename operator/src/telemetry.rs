//! Logging: a `tracing` subscriber with an `EnvFilter` from `RUST_LOG`, colour only on a terminal.

use tracing_subscriber::EnvFilter;

/// Filter when `RUST_LOG` is unset: the operator's (and the gateway crate's storage client's)
/// events at `info`, dependencies (kube, hyper, tonic) at `warn`.
pub const DEFAULT_FILTER: &str = "warn,kafka_gateway_operator=info,kafka_gateway=info";

/// The filter from `RUST_LOG`, or [`DEFAULT_FILTER`].
pub fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// Installs the global subscriber writing to stdout; ANSI colour only when stdout is a terminal
/// (pod logs are files, and escape codes would end up in them).
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a subscriber with `filter` (and no colour: not a terminal) writes for these events.
    fn logged(filter: &str) -> String {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "openraft::engine", "openraft state dump");
            tracing::warn!(target: "openraft::engine", "openraft warning");
            tracing::info!(target: "kube_runtime::controller", "kube info");
            tracing::info!(target: "kafka_gateway::cluster", "gateway event");
            tracing::info!(target: "kafka_gateway_operator::controller", "operator event");
        });
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn default_filters_keep_our_info_and_dependencies_at_warn() {
        for filter in [DEFAULT_FILTER, kafka_gateway::config::DEFAULT_LOG_FILTER] {
            let out = logged(filter);
            assert!(!out.contains("openraft state dump"), "{filter}: {out}");
            assert!(!out.contains("kube info"), "{filter}: {out}");
            assert!(out.contains("openraft warning"), "{filter}: {out}");
            assert!(out.contains("gateway event"), "{filter}: {out}");
            assert!(
                !out.contains('\u{1b}'),
                "no ANSI escapes without a terminal: {out:?}"
            );
        }
        assert!(logged(DEFAULT_FILTER).contains("operator event"));
    }
}
