//! Status computed from what was observed: the applied StatefulSet, the topic results and the
//! scale-down step. Pure functions; the controller writes the result with server-side apply.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{KafkaGateway, KafkaGatewayStatus, TopicState, TopicStatus};
use crate::resources::Names;

/// Condition types.
pub mod kind {
    /// All desired pods are ready.
    pub const READY: &str = "Ready";
    /// A rollout or scale is in progress.
    pub const PROGRESSING: &str = "Progressing";
    /// The cluster lost its raft majority, or a scale-down step failed.
    pub const DEGRADED: &str = "Degraded";
    /// Every declared topic matches SeaweedMQ.
    pub const TOPICS_READY: &str = "TopicsReady";
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
}

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
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

/// The new status of `kgw`.
pub fn compute(
    kgw: &KafkaGateway,
    names: &Names,
    observed: Observed<'_>,
    now: Timestamp,
) -> KafkaGatewayStatus {
    let generation = kgw.metadata.generation;
    let desired = kgw.spec.replicas;
    let sts_status = observed
        .statefulset
        .and_then(|s| s.status.clone())
        .unwrap_or_default();
    let sts_generation = observed.statefulset.and_then(|s| s.metadata.generation);
    let ready = sts_status.ready_replicas.unwrap_or(0);
    let current = sts_status.replicas;
    let updated = sts_status.updated_replicas.unwrap_or(0);
    let quorum = desired / 2 + 1;

    let all_ready = ready >= desired && current == desired;
    let ready_c = if all_ready {
        condition(
            kind::READY,
            true,
            "AllReplicasReady",
            format!("{ready}/{desired} replicas ready"),
            generation,
            now,
        )
    } else {
        condition(
            kind::READY,
            false,
            "ReplicasNotReady",
            format!("{ready}/{desired} replicas ready"),
            generation,
            now,
        )
    };

    let rolled_out =
        sts_status.observed_generation.is_some() && sts_status.observed_generation == sts_generation;
    let (progressing, reason, message) = if current < desired {
        (true, "ScalingUp", format!("{current} of {desired} pods exist"))
    } else if current > desired {
        (
            true,
            "ScalingDown",
            format!("{current} pods, shrinking to {desired}"),
        )
    } else if !rolled_out || updated < desired || ready < desired {
        (
            true,
            "RollingOut",
            format!("{updated}/{desired} pods updated, {ready} ready"),
        )
    } else {
        (false, "Stable", "the StatefulSet matches the spec".to_string())
    };
    let progressing_c = condition(kind::PROGRESSING, progressing, reason, message, generation, now);

    let degraded_c = if let Some(err) = &observed.scale_down_error {
        condition(
            kind::DEGRADED,
            true,
            "MemberRemovalFailed",
            err.clone(),
            generation,
            now,
        )
    } else if observed.statefulset.is_some() && ready < quorum && current > 0 && rolled_out {
        condition(
            kind::DEGRADED,
            true,
            "QuorumLost",
            format!("{ready} ready, a raft majority needs {quorum} of {desired}"),
            generation,
            now,
        )
    } else {
        condition(
            kind::DEGRADED,
            false,
            "AsExpected",
            "raft majority available or forming".into(),
            generation,
            now,
        )
    };

    let failed: Vec<&TopicStatus> = observed
        .topics
        .iter()
        .filter(|t| t.state != TopicState::Ready)
        .collect();
    let topics_c = if failed.is_empty() {
        condition(
            kind::TOPICS_READY,
            true,
            "TopicsReconciled",
            format!("{} topic(s) ready", observed.topics.len()),
            generation,
            now,
        )
    } else {
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
        condition(kind::TOPICS_READY, false, reason, detail, generation, now)
    };

    let mut conditions = vec![ready_c, progressing_c, degraded_c, topics_c];
    let previous = kgw
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    carry_transition_times(&mut conditions, previous);

    KafkaGatewayStatus {
        observed_generation: generation,
        replicas: current,
        ready_replicas: ready,
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

        let kgw = KafkaGateway::test().with_replicas(3);
        let sts = statefulset_with_status(&kgw, 3, 1);
        let s = compute(
            &kgw,
            &names,
            Observed {
                statefulset: Some(&sts),
                ..Observed::default()
            },
            now(),
        );
        assert_eq!(find(&s, kind::DEGRADED).reason, "QuorumLost");
    }

    #[test]
    fn member_removal_failure_is_degraded() {
        let kgw = KafkaGateway::test().with_replicas(1);
        let names = Names::of(&kgw).unwrap();
        let sts = statefulset_with_status(&kgw, 3, 3);
        let observed = Observed {
            statefulset: Some(&sts),
            scale_down_error: Some("no leader".into()),
            ..Observed::default()
        };
        let s = compute(&kgw, &names, observed, now());
        let d = find(&s, kind::DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str(), d.message.as_str()),
            ("True", "MemberRemovalFailed", "no leader")
        );
        assert_eq!(find(&s, kind::PROGRESSING).reason, "ScalingDown");
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
