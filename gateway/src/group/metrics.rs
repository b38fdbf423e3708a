//! Consumer group metrics: group counts by state, rebalances, and capped lag series.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

use super::state::GroupPhase;

/// Metrics of the group coordinator, registered in the registry built by `main`.
#[derive(Debug, Clone)]
pub struct GroupMetrics {
    groups: IntGaugeVec,
    rebalances: IntCounter,
    rebalance_duration: Histogram,
    lag: IntGaugeVec,
    lag_series_dropped: IntGauge,
    /// Most `(group, topic, partition)` lag series exported at once.
    lag_series_cap: usize,
}

impl GroupMetrics {
    /// Creates and registers the metrics; at most `lag_series_cap` lag series are exported.
    ///
    /// # Errors
    /// If a metric with the same name is already registered.
    pub fn new(registry: &Registry, lag_series_cap: usize) -> Result<Self, prometheus::Error> {
        let groups = IntGaugeVec::new(
            Opts::new("kafka_gateway_consumer_groups", "Consumer groups by state"),
            &["state"],
        )?;
        let rebalances = IntCounter::new(
            "kafka_gateway_consumer_group_rebalances_total",
            "Completed consumer group rebalances",
        )?;
        let rebalance_duration = Histogram::with_opts(
            HistogramOpts::new(
                "kafka_gateway_consumer_group_rebalance_duration_seconds",
                "Time from the start of a rebalance until the group is Stable or Empty",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
        )?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "kafka_gateway_consumer_group_lag",
                "High watermark minus committed offset per group and partition (capped series)",
            ),
            &["group", "topic", "partition"],
        )?;
        let lag_series_dropped = IntGauge::new(
            "kafka_gateway_consumer_group_lag_series_dropped",
            "Lag series not exported because of the series cap",
        )?;
        registry.register(Box::new(groups.clone()))?;
        registry.register(Box::new(rebalances.clone()))?;
        registry.register(Box::new(rebalance_duration.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(lag_series_dropped.clone()))?;
        for phase in GroupPhase::ALL {
            groups.with_label_values(&[phase.as_str()]).set(0);
        }
        Ok(Self {
            groups,
            rebalances,
            rebalance_duration,
            lag,
            lag_series_dropped,
            lag_series_cap,
        })
    }

    /// Records a group moving between states (`None`: not existing / removed).
    pub(crate) fn transition(&self, from: Option<GroupPhase>, to: Option<GroupPhase>) {
        if from == to {
            return;
        }
        if let Some(f) = from {
            self.groups.with_label_values(&[f.as_str()]).dec();
        }
        if let Some(t) = to {
            self.groups.with_label_values(&[t.as_str()]).inc();
        }
    }

    /// Records a finished rebalance.
    pub(crate) fn rebalance(&self, duration_ms: u64) {
        self.rebalances.inc();
        self.rebalance_duration.observe(duration_ms as f64 / 1000.0);
    }

    /// Replaces the lag series with `series` (`(group, topic, partition, lag)`), keeping the
    /// largest lags when over the cap.
    pub(crate) fn set_lag(&self, mut series: Vec<(String, String, i32, i64)>) {
        self.lag.reset();
        series.sort_by(|a, b| {
            b.3.cmp(&a.3)
                .then_with(|| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)))
        });
        let dropped = series.len().saturating_sub(self.lag_series_cap);
        for (group, topic, partition, lag) in series.into_iter().take(self.lag_series_cap) {
            self.lag
                .with_label_values(&[group.as_str(), topic.as_str(), &partition.to_string()])
                .set(lag);
        }
        self.lag_series_dropped.set(dropped as i64);
    }

    /// Current count of groups in `phase`.
    pub fn groups_in(&self, phase: GroupPhase) -> i64 {
        self.groups.with_label_values(&[phase.as_str()]).get()
    }

    /// Total rebalances completed.
    pub fn rebalances_total(&self) -> u64 {
        self.rebalances.get()
    }
}
