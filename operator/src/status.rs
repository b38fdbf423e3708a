//! Status computed from what was observed: the applied StatefulSet, the topic results and the
//! scale-down step. Pure functions; the controller writes the result with server-side apply.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{KafkaGateway, KafkaGatewayStatus, TopicState, TopicStatus};
use crate::resources::Names;

/// Condition types.
pub mod kind {
    /// All desired pods are ready (False with the reason when the spec is invalid or a scale-down
    /// is blocked).
    pub const READY: &str = "Ready";
    /// A rollout or scale is in progress.
    pub const PROGRESSING: &str = "Progressing";
    /// A raft cluster that had a majority ready lost it.
    pub const DEGRADED: &str = "Degraded";
    /// Every declared topic matches SeaweedMQ.
    pub const TOPICS_READY: &str = "TopicsReady";
    /// A scale-down waits for a raft member removal that failed; everything else was applied.
    pub const SCALE_DOWN_BLOCKED: &str = "ScaleDownBlocked";
    /// The volume claims match `spec.storage` (claims are immutable: a change is not applied).
    pub const STORAGE_UP_TO_DATE: &str = "StorageUpToDate";
    /// The requested ServiceMonitor exists (present only while `metrics.serviceMonitor` is on).
    pub const SERVICE_MONITOR_READY: &str = "ServiceMonitorReady";
}

/// Why the spec could not be applied at all (no children were changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Condition reason: `InvalidSpec` (checked before applying) or `ChildRejected` (the API
    /// server refused a child).
    pub reason: &'static str,
    /// What was refused, naming the field.
    pub message: String,
}

/// What the observed children say.
#[derive(Debug, Clone, Default)]
pub struct Observed<'a> {
    /// The StatefulSet as returned by the last apply (or read).
    pub statefulset: Option<&'a StatefulSet>,
    /// Per-topic results.
    pub topics: Vec<TopicStatus>,
    /// A failed scale-down step (member removal), if any.
    pub scale_down_error: Option<String>,
    /// How the existing volume claims differ from `spec.storage`, if they do.
    pub storage_mismatch: Option<String>,
    /// ServiceMonitor state when one is requested: `(exists, reason, message)`.
    pub service_monitor: Option<(bool, &'static str, String)>,
    /// The spec was refused before or while applying children.
    pub refusal: Option<Refusal>,
}

/// The fields every condition of one status shares.
struct Stamp {
    generation: Option<i64>,
    now: Timestamp,
}

impl Stamp {
    fn condition(&self, type_: &str, ok: bool, reason: &str, message: String) -> Condition {
        Condition {
            type_: type_.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.into(),
            message,
            observed_generation: self.generation,
            last_transition_time: Time(self.now),
        }
    }
}

/// Keeps `lastTransitionTime` of conditions whose status did not change.
fn carry_transition_times(conditions: &mut [Condition], previous: &[Condition]) {
    for c in conditions {
        if let Some(old) = previous
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
}

/// Replica counts of the StatefulSet as observed.
struct Counts {
    desired: i32,
    current: i32,
    ready: i32,
    updated: i32,
    rolled_out: bool,
}

impl Counts {
    fn of(kgw: &KafkaGateway, sts: Option<&StatefulSet>) -> Self {
        let status = sts.and_then(|s| s.status.clone()).unwrap_or_default();
        let generation = sts.and_then(|s| s.metadata.generation);
        Self {
            desired: kgw.spec.replicas,
            current: status.replicas,
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            rolled_out: status.observed_generation.is_some() && status.observed_generation == generation,
        }
    }
}

fn ready_condition(stamp: &Stamp, c: &Counts, observed: &Observed<'_>) -> Condition {
    let counts = format!("{}/{} replicas ready", c.ready, c.desired);
    if let Some(refusal) = &observed.refusal {
        stamp.condition(kind::READY, false, refusal.reason, refusal.message.clone())
    } else if observed.scale_down_error.is_some() {
        let message = format!(
            "{counts}; the scale-down to {} is blocked (see ScaleDownBlocked)",
            c.desired
        );
        stamp.condition(kind::READY, false, "ScaleDownBlocked", message)
    } else if c.ready >= c.desired && c.current == c.desired {
        stamp.condition(kind::READY, true, "AllReplicasReady", counts)
    } else {
        stamp.condition(kind::READY, false, "ReplicasNotReady", counts)
    }
}

fn progressing_condition(stamp: &Stamp, c: &Counts) -> Condition {
    let (progressing, reason, message) = if c.current < c.desired {
        (
            true,
            "ScalingUp",
            format!("{} of {} pods exist", c.current, c.desired),
        )
    } else if c.current > c.desired {
        (
            true,
            "ScalingDown",
            format!("{} pods, shrinking to {}", c.current, c.desired),
        )
    } else if !c.rolled_out || c.updated < c.desired || c.ready < c.desired {
        let message = format!("{}/{} pods updated, {} ready", c.updated, c.desired, c.ready);
        (true, "RollingOut", message)
    } else {
        (false, "Stable", "the StatefulSet matches the spec".to_string())
    };
    stamp.condition(kind::PROGRESSING, progressing, reason, message)
}

/// Quorum is lost only for a cluster that had one: a new or growing cluster is forming.
fn degraded_condition(stamp: &Stamp, kgw: &KafkaGateway, c: &Counts, has_sts: bool) -> Condition {
    let quorum = c.desired / 2 + 1;
    let previous = kgw.status.as_ref();
    let had_quorum = previous.is_some_and(|s| {
        s.ready_replicas >= quorum
            || s.conditions
                .iter()
                .any(|x| x.type_ == kind::DEGRADED && x.status == "True" && x.reason == "QuorumLost")
    });
    if has_sts && c.ready < quorum && c.current > 0 && c.rolled_out && had_quorum {
        let message = format!(
            "{} ready, a raft majority needs {quorum} of {}",
            c.ready, c.desired
        );
        stamp.condition(kind::DEGRADED, true, "QuorumLost", message)
    } else if c.ready < quorum {
        let message = format!("{} of the {quorum} pods a raft majority needs are ready", c.ready);
        stamp.condition(kind::DEGRADED, false, "Forming", message)
    } else {
        stamp.condition(
            kind::DEGRADED,
            false,
            "AsExpected",
            "a raft majority is ready".into(),
        )
    }
}

fn topics_condition(stamp: &Stamp, topics: &[TopicStatus]) -> Condition {
    let failed: Vec<&TopicStatus> = topics.iter().filter(|t| t.state != TopicState::Ready).collect();
    if failed.is_empty() {
        let message = format!("{} topic(s) ready", topics.len());
        return stamp.condition(kind::TOPICS_READY, true, "TopicsReconciled", message);
    }
    let reason = if failed.iter().any(|t| t.state == TopicState::Error) {
        "TopicErrors"
    } else {
        "TopicChangesRefused"
    };
    let detail = failed
        .iter()
        .map(|t| format!("{}: {}", t.name, t.message.as_deref().unwrap_or("not ready")))
        .collect::<Vec<_>>()
        .join("; ");
    stamp.condition(kind::TOPICS_READY, false, reason, detail)
}

/// The new status of `kgw`.
pub fn compute(
    kgw: &KafkaGateway,
    names: &Names,
    observed: Observed<'_>,
    now: Timestamp,
) -> KafkaGatewayStatus {
    let stamp = Stamp {
        generation: kgw.metadata.generation,
        now,
    };
    let counts = Counts::of(kgw, observed.statefulset);
    let mut conditions = vec![
        ready_condition(&stamp, &counts, &observed),
        progressing_condition(&stamp, &counts),
        degraded_condition(&stamp, kgw, &counts, observed.statefulset.is_some()),
        topics_condition(&stamp, &observed.topics),
        match &observed.scale_down_error {
            Some(err) => stamp.condition(kind::SCALE_DOWN_BLOCKED, true, "MemberRemovalFailed", err.clone()),
            None => stamp.condition(
                kind::SCALE_DOWN_BLOCKED,
                false,
                "NotBlocked",
                "no scale-down is waiting".into(),
            ),
        },
        match &observed.storage_mismatch {
            Some(diff) => stamp.condition(
                kind::STORAGE_UP_TO_DATE,
                false,
                "VolumeClaimsImmutable",
                diff.clone(),
            ),
            None => stamp.condition(
                kind::STORAGE_UP_TO_DATE,
                true,
                "ClaimsMatchSpec",
                "volume claims match spec.storage".into(),
            ),
        },
    ];
    if let Some((exists, reason, message)) = &observed.service_monitor {
        conditions.push(stamp.condition(kind::SERVICE_MONITOR_READY, *exists, reason, message.clone()));
    }
    let previous = kgw
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    carry_transition_times(&mut conditions, previous);

    KafkaGatewayStatus {
        observed_generation: stamp.generation,
        replicas: counts.current,
        ready_replicas: counts.ready,
        selector: names.selector_string(),
        conditions,
        topics: observed.topics,
        bootstrap: Some(names.bootstrap(kgw.spec.listener.port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{statefulset_with_status, KafkaGatewayExt};

    fn find<'a>(s: &'a KafkaGatewayStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    #[test]
    fn all_ready_and_stable() {
        let kgw = KafkaGateway::test().with_replicas(3);
        let names = Names::of(&kgw).unwrap();
        let sts = statefulset_with_status(&kgw, 3, 3);
        let s = compute(
            &kgw,
            &names,
            Observed {
                statefulset: Some(&sts),
                ..Observed::default()
            },
            now(),
        );
        assert_eq!((s.replicas, s.ready_replicas), (3, 3));
        assert_eq!(find(&s, kind::READY).status, "True");
        assert_eq!(find(&s, kind::PROGRESSING).reason, "Stable");
        assert_eq!(find(&s, kind::DEGRADED).status, "False");
        assert_eq!(find(&s, kind::TOPICS_READY).status, "True");
        assert_eq!(s.selector, names.selector_string());
        assert_eq!(s.bootstrap.as_deref(), Some("kgw.testns.svc.cluster.local:9092"));
        assert_eq!(s.observed_generation, Some(1));
    }

    #[test]
    fn scaling_and_quorum_loss() {
        let kgw = KafkaGateway::test().with_replicas(5);
        let names = Names::of(&kgw).unwrap();
        let sts = statefulset_with_status(&kgw, 3, 3);
        let s = compute(
            &kgw,
            &names,
            Observed {
                statefulset: Some(&sts),
                ..Observed::default()
            },
            now(),
        );
        assert_eq!(find(&s, kind::PROGRESSING).reason, "ScalingUp");
        assert_eq!(find(&s, kind::READY).status, "False");

        // A new cluster whose pods are not ready yet is forming, not degraded.
        let mut kgw = KafkaGateway::test().with_replicas(3);
        let sts = statefulset_with_status(&kgw, 3, 0);
        fn observe(sts: &StatefulSet) -> Observed<'_> {
            Observed {
                statefulset: Some(sts),
                ..Observed::default()
            }
        }
        let s = compute(&kgw, &names, observe(&sts), now());
        let d = find(&s, kind::DEGRADED);
        assert_eq!((d.status.as_str(), d.reason.as_str()), ("False", "Forming"));
        // Once a majority was ready, losing it is QuorumLost, and it stays so until it recovers.
        let formed = statefulset_with_status(&kgw, 3, 3);
        kgw.status = Some(compute(&kgw, &names, observe(&formed), now()));
        let sts = statefulset_with_status(&kgw, 3, 1);
        let lost = compute(&kgw, &names, observe(&sts), now());
        assert_eq!(find(&lost, kind::DEGRADED).reason, "QuorumLost");
        kgw.status = Some(lost);
        let still = compute(&kgw, &names, observe(&sts), now());
        assert_eq!(find(&still, kind::DEGRADED).reason, "QuorumLost");
        let recovered = statefulset_with_status(&kgw, 3, 2);
        let back = compute(&kgw, &names, observe(&recovered), now());
        assert_eq!(find(&back, kind::DEGRADED).status, "False");
    }

    #[test]
    fn member_removal_failure_is_its_own_condition_not_replicas_not_ready() {
        let kgw = KafkaGateway::test().with_replicas(1);
        let names = Names::of(&kgw).unwrap();
        let sts = statefulset_with_status(&kgw, 3, 3);
        let observed = Observed {
            statefulset: Some(&sts),
            scale_down_error: Some("no leader".into()),
            ..Observed::default()
        };
        let s = compute(&kgw, &names, observed, now());
        let b = find(&s, kind::SCALE_DOWN_BLOCKED);
        assert_eq!(
            (b.status.as_str(), b.reason.as_str(), b.message.as_str()),
            ("True", "MemberRemovalFailed", "no leader")
        );
        let r = find(&s, kind::READY);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "ScaleDownBlocked")
        );
        assert_eq!(find(&s, kind::DEGRADED).status, "False");
        assert_eq!(find(&s, kind::PROGRESSING).reason, "ScalingDown");
    }

    #[test]
    fn refusal_storage_and_service_monitor_conditions() {
        let kgw = KafkaGateway::test();
        let names = Names::of(&kgw).unwrap();
        let observed = Observed {
            refusal: Some(Refusal {
                reason: "InvalidSpec",
                message: "spec.storage.size: 'lots' is not a Kubernetes quantity".into(),
            }),
            storage_mismatch: Some("claims ask 1Gi, spec.storage asks 5Gi".into()),
            service_monitor: Some((false, "CRDMissing", "install the Prometheus Operator CRDs".into())),
            ..Observed::default()
        };
        let s = compute(&kgw, &names, observed, now());
        let r = find(&s, kind::READY);
        assert_eq!((r.status.as_str(), r.reason.as_str()), ("False", "InvalidSpec"));
        assert!(r.message.contains("spec.storage.size"));
        assert_eq!(find(&s, kind::STORAGE_UP_TO_DATE).reason, "VolumeClaimsImmutable");
        let m = find(&s, kind::SERVICE_MONITOR_READY);
        assert_eq!((m.status.as_str(), m.reason.as_str()), ("False", "CRDMissing"));
        let plain = compute(&kgw, &names, Observed::default(), now());
        assert!(plain
            .conditions
            .iter()
            .all(|c| c.type_ != kind::SERVICE_MONITOR_READY));
        assert_eq!(find(&plain, kind::STORAGE_UP_TO_DATE).status, "True");
    }

    #[test]
    fn topic_results_drive_topics_ready() {
        let kgw = KafkaGateway::test();
        let names = Names::of(&kgw).unwrap();
        let refused = TopicStatus {
            name: "t".into(),
            state: TopicState::Refused,
            partitions: Some(4),
            message: Some("cannot decrease".into()),
        };
        let s = compute(
            &kgw,
            &names,
            Observed {
                topics: vec![refused.clone()],
                ..Observed::default()
            },
            now(),
        );
        let c = find(&s, kind::TOPICS_READY);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "TopicChangesRefused")
        );
        assert!(c.message.contains("t: cannot decrease"));
        let error = TopicStatus {
            state: TopicState::Error,
            ..refused
        };
        let s = compute(
            &kgw,
            &names,
            Observed {
                topics: vec![error],
                ..Observed::default()
            },
            now(),
        );
        assert_eq!(find(&s, kind::TOPICS_READY).reason, "TopicErrors");
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let mut kgw = KafkaGateway::test().with_replicas(3);
        let names = Names::of(&kgw).unwrap();
        let sts = statefulset_with_status(&kgw, 3, 3);
        let first = compute(
            &kgw,
            &names,
            Observed {
                statefulset: Some(&sts),
                ..Observed::default()
            },
            now(),
        );
        kgw.status = Some(first);
        let later = Timestamp::from_second(1_700_000_600).unwrap();
        let second = compute(
            &kgw,
            &names,
            Observed {
                statefulset: Some(&sts),
                ..Observed::default()
            },
            later,
        );
        assert_eq!(find(&second, kind::READY).last_transition_time, Time(now()));
        let sts = statefulset_with_status(&kgw, 3, 2);
        let third = compute(
            &kgw,
            &names,
            Observed {
                statefulset: Some(&sts),
                ..Observed::default()
            },
            later,
        );
        assert_eq!(find(&third, kind::READY).last_transition_time, Time(later));
    }
}
