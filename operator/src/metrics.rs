//! Operator metrics, registered in a `prometheus::Registry` built in `main` (no global registry).

use std::time::Instant;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

use crate::Error;

/// Reconcile counters and duration.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Reconciles started.
    pub reconciles: IntCounter,
    /// Failed reconciles by error kind (bounded: [`Error::metric_label`]).
    pub failures: IntCounterVec,
    /// Reconcile duration.
    pub duration: Histogram,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// When a metric with the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let reconciles = IntCounter::with_opts(Opts::new(
            "kafka_gateway_operator_reconciles_total",
            "Reconciles started",
        ))?;
        let failures = IntCounterVec::new(
            Opts::new(
                "kafka_gateway_operator_reconcile_failures_total",
                "Failed reconciles by error kind",
            ),
            &["reason"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "kafka_gateway_operator_reconcile_duration_seconds",
                "Reconcile duration",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            reconciles,
            failures,
            duration,
        })
    }

    /// Counts a reconcile and times it until the guard drops.
    pub fn start_reconcile(&self) -> ReconcileTimer {
        self.reconciles.inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    /// Counts a failure by its kind.
    pub fn failure(&self, error: &Error) {
        self.failures.with_label_values(&[error.metric_label()]).inc();
    }
}

/// Observes the reconcile duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_times() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        drop(metrics.start_reconcile());
        metrics.failure(&Error::Topics { failed: 2 });
        assert_eq!(metrics.reconciles.get(), 1);
        assert_eq!(metrics.duration.get_sample_count(), 1);
        assert_eq!(metrics.failures.with_label_values(&["topics"]).get(), 1);
        assert!(
            Metrics::register(&registry).is_err(),
            "names are unique per registry"
        );
    }
}
