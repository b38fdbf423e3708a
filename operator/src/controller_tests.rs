//! Reconcile tests against the scripted mock API server (see `fixtures.rs`): finalizer,
//! create, update, scaling, topics and deletion. The apply path's reporting is in `apply_tests.rs`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::controller::{RESYNC, RESYNC_PROGRESSING};
use crate::crd::{TopicDeletionPolicy, TopicState};
use crate::fixtures::{
    cond, local_storage, pdb, peers_in, replicas_of, statefulset_with_status, sts_found, sts_missing,
    timeout_after_1s, tokens_found, topic, KafkaGatewayExt, Reply, Step, ADMIN_TOKEN,
};
use crate::status::kind;

const ADMIN: &str = "http://kgw-0.kgw-headless.testns.svc.cluster.local:9644";

#[tokio::test]
async fn delete_policy_gets_a_finalizer_first() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let mut kgw = KafkaGateway::test();
    kgw.spec.topic_deletion_policy = TopicDeletionPolicy::Delete;
    kgw.metadata.resource_version = Some("7".into());
    let mock = server.run(vec![Step::finalizer(&kgw, true)], journal);
    reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
    timeout_after_1s(mock).await;
}

/// With `Retain` nothing outside Kubernetes needs cleaning: no finalizer, so deletion never
/// waits for the operator (helm uninstall); one left by an earlier version is removed first.
#[tokio::test]
async fn retain_policy_has_no_finalizer_and_a_legacy_one_is_removed() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let kgw = KafkaGateway::test().finalized();
    let mut steps = vec![Step::finalizer(&kgw, false), sts_found(&kgw, 1)];
    steps.extend(Step::services_and_config());
    steps.push(Step::apply_sts(|_| {}));
    steps.push(pdb());
    steps.push(Step::status(&kgw, |_| {}));
    let mock = server.run(steps, journal);
    reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
    timeout_after_1s(mock).await;

    // Deleting a Retain gateway without the finalizer: nothing to do, no API call.
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let mock = server.run(vec![], journal);
    let action = reconcile(Arc::new(KafkaGateway::test().deleting()), ctx)
        .await
        .expect("nothing to clean");
    timeout_after_1s(mock).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn create_applies_every_child_then_the_status() {
    let (ctx, server, registry, journal) = Context::test(None, vec![]);
    let kgw = KafkaGateway::test().with_replicas(3);
    let mut steps = vec![sts_missing()];
    steps.extend(Step::services_and_config());
    steps.push(Step::apply_sts(|b| {
        assert_eq!(replicas_of(b), 3);
        let owner = &b["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&owner["controller"], &owner["blockOwnerDeletion"]),
            (&Value::Bool(true), &Value::Bool(true))
        );
        let container = &b["spec"]["template"]["spec"]["containers"][0]["securityContext"];
        assert_eq!(container["allowPrivilegeEscalation"], false);
        assert_eq!(container["capabilities"]["drop"][0], "ALL");
    }));
    steps.push(pdb().checked(|b| assert_eq!(b["spec"]["maxUnavailable"], 1)));
    steps.push(Step::event("Created"));
    steps.push(Step::status(&kgw, |s| {
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(
            s.selector,
            "app.kubernetes.io/instance=kgw,app.kubernetes.io/name=kafka-gateway"
        );
        assert_eq!(cond(s, kind::READY).status, "False");
        assert_eq!(cond(s, kind::PROGRESSING).reason, "ScalingUp");
        assert_eq!(cond(s, kind::TOPICS_READY).status, "True");
        // A new cluster is forming, not degraded.
        let degraded = cond(s, kind::DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("False", "Forming")
        );
        assert_eq!(s.bootstrap.as_deref(), Some("kgw.testns.svc.cluster.local:9092"));
    }));
    let mock = server.run(steps, journal);
    let action = reconcile(Arc::new(kgw), ctx.clone()).await.expect("reconcile");
    timeout_after_1s(mock).await;
    assert_eq!(action, Action::requeue(RESYNC_PROGRESSING));
    assert_eq!(ctx.metrics.reconciles.get(), 1);
    assert!(registry
        .gather()
        .iter()
        .any(|m| m.name() == "kafka_gateway_operator_reconcile_duration_seconds"));
}

#[tokio::test]
async fn update_of_a_ready_cluster_reports_ready_and_stable() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let kgw = KafkaGateway::test().with_replicas(3);
    let ready = serde_json::to_value(statefulset_with_status(&kgw, 3, 3)).unwrap();
    let mut steps = vec![sts_found(&kgw, 3)];
    steps.extend(Step::services_and_config());
    steps.push(Step::apply_sts(|b| assert_eq!(replicas_of(b), 3)).reply(Reply::Json(ready)));
    steps.push(pdb());
    steps.push(Step::status(&kgw, |s| {
        assert_eq!((s.replicas, s.ready_replicas), (3, 3));
        assert_eq!(cond(s, kind::READY).status, "True");
        assert_eq!(cond(s, kind::PROGRESSING).reason, "Stable");
        assert_eq!(cond(s, kind::DEGRADED).status, "False");
        assert_eq!(cond(s, kind::STORAGE_UP_TO_DATE).status, "True");
        assert_eq!(cond(s, kind::SCALE_DOWN_BLOCKED).status, "False");
    }));
    let mock = server.run(steps, journal);
    let action = reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
    timeout_after_1s(mock).await;
    assert_eq!(action, Action::requeue(RESYNC));
}
#[tokio::test]
async fn scale_up_grows_peers_and_replicas_without_removals() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let kgw = KafkaGateway::test().with_replicas(5);
    let mut steps = vec![sts_found(&kgw, 3), Step::event("ScalingUp")];
    let mut children = Step::services_and_config();
    children[2] = Step::apply("/api/v1", "configmaps", "kgw-config").checked(|b| assert_eq!(peers_in(b), 5));
    steps.extend(children);
    steps.push(Step::apply_sts(|b| assert_eq!(replicas_of(b), 5)));
    steps.push(pdb().checked(|b| assert_eq!(b["spec"]["maxUnavailable"], 2)));
    steps.push(Step::status(&kgw, |s| {
        assert_eq!(cond(s, kind::PROGRESSING).status, "True")
    }));
    let mock = server.run(steps, Arc::clone(&journal));
    reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
    timeout_after_1s(mock).await;
    assert!(!journal.lock().iter().any(|e| e.starts_with("remove")));
}

#[tokio::test]
async fn scale_down_removes_departing_members_before_shrinking() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let kgw = KafkaGateway::test().with_replicas(3);
    let mut steps = vec![sts_found(&kgw, 5), tokens_found(), Step::event("MembersRemoved")];
    steps.extend(Step::services_and_config());
    steps.push(Step::apply_sts(|b| assert_eq!(replicas_of(b), 3)));
    steps.push(pdb());
    steps.push(Step::status(&kgw, |_| {}));
    let mock = server.run(steps, Arc::clone(&journal));
    reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
    timeout_after_1s(mock).await;
    let log = journal.lock().clone();
    let at = |needle: &str| {
        log.iter()
            .position(|e| e.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle} in {log:?}"))
    };
    // The removal presents the admin token from the tokens Secret.
    assert_eq!(
        log[at("remove 4")],
        format!("remove 4 via {ADMIN} as {ADMIN_TOKEN}")
    );
    assert!(at("remove 4") < at("remove 3"), "highest ordinal first: {log:?}");
    assert!(
        at("remove 3") < at("PATCH /apis/apps/v1/namespaces/testns/statefulsets/kgw"),
        "{log:?}"
    );
    assert!(!log.iter().any(|e| e.starts_with("remove 2")));
}

/// A failed removal holds back only the pods still in the raft membership: the new image, the
/// other children and the topics are applied, and the blocked scale-down is its own condition.
#[tokio::test]
async fn failed_member_removal_blocks_only_the_scale_down() {
    let (_dir, storage) = local_storage().await;
    let (ctx, server, _, journal) = Context::test(Some(storage), vec![3]);
    let before = KafkaGateway::test().with_replicas(5);
    let mut kgw = KafkaGateway::test()
        .with_replicas(3)
        .with_topics(vec![topic("orders", 2)]);
    kgw.spec.image = "kafka-gateway:new".into();
    let mut steps = vec![
        sts_found(&before, 5),
        tokens_found(),
        Step::event("MemberRemovalFailed"),
    ];
    let mut children = Step::services_and_config();
    children[2] = Step::apply("/api/v1", "configmaps", "kgw-config").checked(|b| assert_eq!(peers_in(b), 4));
    steps.extend(children);
    steps.push(Step::apply_sts(|b| {
        // Member 4 is removed, 3 is not: four pods stay, with the new image.
        assert_eq!(replicas_of(b), 4);
        assert_eq!(
            b["spec"]["template"]["spec"]["containers"][0]["image"],
            "kafka-gateway:new"
        );
    }));
    steps.push(pdb());
    steps.push(Step::event_about("TopicCreated", "spec.topics{orders}"));
    steps.push(Step::status(&kgw, |s| {
        let blocked = cond(s, kind::SCALE_DOWN_BLOCKED);
        assert_eq!(
            (blocked.status.as_str(), blocked.reason.as_str()),
            ("True", "MemberRemovalFailed")
        );
        assert!(blocked.message.contains("member 3"), "{}", blocked.message);
        let ready = cond(s, kind::READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ScaleDownBlocked")
        );
        assert_eq!(cond(s, kind::DEGRADED).status, "False");
        assert_eq!(cond(s, kind::TOPICS_READY).status, "True");
    }));
    let kgw = Arc::new(kgw);
    let mock = server.run(steps, Arc::clone(&journal));
    let err = reconcile(Arc::clone(&kgw), ctx.clone())
        .await
        .expect_err("removal failed");
    timeout_after_1s(mock).await;
    assert_eq!(err.metric_label(), "member_removal");
    let log = journal.lock().clone();
    assert!(
        log.contains(&format!("remove 4 via {ADMIN} as {ADMIN_TOKEN}"))
            && log.contains(&format!("remove 3 via {ADMIN} as {ADMIN_TOKEN}"))
    );

    assert_eq!(
        error_policy(Arc::clone(&kgw), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(Arc::clone(&kgw), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    assert_eq!(
        ctx.metrics.failures.with_label_values(&["member_removal"]).get(),
        2
    );
}

#[tokio::test]
async fn unreachable_seaweedmq_marks_topics_failed_and_retries() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let kgw = KafkaGateway::test().with_topics(vec![topic("orders", 3)]);
    let mut steps = vec![sts_missing()];
    steps.extend(Step::services_and_config());
    steps.push(Step::apply_sts(|_| {}));
    steps.push(pdb());
    steps.push(Step::event("Created"));
    steps.push(Step::status(&kgw, |s| {
        let c = cond(s, kind::TOPICS_READY);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "TopicErrors"));
        assert_eq!(s.topics[0].state, TopicState::Error);
        assert!(s.topics[0].message.as_deref().unwrap().contains("unreachable"));
    }));
    let mock = server.run(steps, journal);
    let err = reconcile(Arc::new(kgw), ctx).await.expect_err("topics failed");
    timeout_after_1s(mock).await;
    assert_eq!(err.metric_label(), "topics");
}

#[tokio::test]
async fn topics_are_created_and_a_partition_decrease_is_refused() {
    let (_dir, storage) = local_storage().await;
    let (ctx, server, _, journal) = Context::test(Some(Arc::clone(&storage)), vec![]);
    let kgw = KafkaGateway::test().with_topics(vec![topic("orders", 3)]);
    let ready = serde_json::to_value(statefulset_with_status(&kgw, 1, 1)).unwrap();
    let mut steps = vec![sts_found(&kgw, 1)];
    steps.extend(Step::services_and_config());
    steps.push(Step::apply_sts(|_| {}).reply(Reply::Json(ready.clone())));
    steps.push(pdb());
    steps.push(Step::event_about("TopicCreated", "spec.topics{orders}"));
    steps.push(Step::status(&kgw, |s| {
        assert_eq!(cond(s, kind::TOPICS_READY).status, "True");
        assert_eq!(
            (s.topics[0].state, s.topics[0].partitions),
            (TopicState::Ready, Some(3))
        );
    }));
    let mock = server.run(steps, Arc::clone(&journal));
    reconcile(Arc::new(kgw.clone()), ctx.clone())
        .await
        .expect("reconcile");
    timeout_after_1s(mock).await;
    assert_eq!(
        storage
            .describe_topic("orders")
            .await
            .unwrap()
            .unwrap()
            .partitions,
        3
    );

    let (ctx2, server, _, journal) = Context::test(Some(Arc::clone(&storage)), vec![]);
    let shrunk = kgw.with_topics(vec![topic("orders", 1)]);
    let mut steps = vec![sts_found(&shrunk, 1)];
    steps.extend(Step::services_and_config());
    steps.push(Step::apply_sts(|_| {}).reply(Reply::Json(ready)));
    steps.push(pdb());
    steps.push(Step::event_about(
        "TopicPartitionDecreaseRefused",
        "spec.topics{orders}",
    ));
    steps.push(Step::status(&shrunk, |s| {
        let c = cond(s, kind::TOPICS_READY);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "TopicChangesRefused")
        );
        assert_eq!(
            (s.topics[0].state, s.topics[0].partitions),
            (TopicState::Refused, Some(3))
        );
    }));
    let mock = server.run(steps, journal);
    reconcile(Arc::new(shrunk), ctx2)
        .await
        .expect("a refusal is reported, not retried");
    timeout_after_1s(mock).await;
    assert_eq!(
        storage
            .describe_topic("orders")
            .await
            .unwrap()
            .unwrap()
            .partitions,
        3
    );
    drop(ctx);
}

#[tokio::test]
async fn deletion_runs_cleanup_then_removes_the_finalizer_then_the_event() {
    let (_dir, storage) = local_storage().await;
    storage
        .create_topic("orders", 1, Default::default(), false)
        .await
        .unwrap();
    let (ctx, server, _, journal) = Context::test(Some(Arc::clone(&storage)), vec![]);
    let mut kgw = KafkaGateway::test()
        .with_topics(vec![topic("orders", 1)])
        .finalized()
        .deleting();
    kgw.spec.topic_deletion_policy = TopicDeletionPolicy::Delete;
    kgw.metadata.resource_version = Some("9".into());
    // The event write fails (e.g. RBAC already gone): the deletion has gone through regardless.
    let steps = vec![
        Step::finalizer(&kgw, false),
        Step::event("TopicsDeleted").reply(Reply::Status(403)),
    ];
    let mock = server.run(steps, journal);
    let action = reconcile(Arc::new(kgw), ctx).await.expect("cleanup");
    timeout_after_1s(mock).await;
    assert_eq!(action, Action::await_change());
    assert!(
        storage.describe_topic("orders").await.unwrap().is_none(),
        "policy Delete removes topics"
    );
}

/// The object may already be gone when the finalizer patch lands (a second delete event from the
/// watch cache): a 404 is success, not a failed reconcile.
#[tokio::test]
async fn finalizer_removal_of_a_vanished_object_is_success() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let mut kgw = KafkaGateway::test().finalized().deleting();
    kgw.spec.topic_deletion_policy = TopicDeletionPolicy::Delete;
    kgw.metadata.resource_version = Some("9".into());
    let steps = vec![
        Step::finalizer(&kgw, false).reply(Reply::Status(404)),
        Step::event("TopicsDeleted"),
    ];
    let mock = server.run(steps, journal);
    reconcile(Arc::new(kgw), ctx)
        .await
        .expect("a vanished object is finalized");
    timeout_after_1s(mock).await;
}

#[tokio::test]
async fn deletion_retains_topics_under_retain() {
    let (_dir, storage) = local_storage().await;
    storage
        .create_topic("orders", 1, Default::default(), false)
        .await
        .unwrap();
    let (ctx, server, _, journal) = Context::test(Some(Arc::clone(&storage)), vec![]);
    // A finalizer left by an earlier operator version: removed, topics kept.
    let kgw = KafkaGateway::test()
        .with_topics(vec![topic("orders", 1)])
        .finalized()
        .deleting();
    let mock = server.run(
        vec![Step::finalizer(&kgw, false), Step::event("TopicsRetained")],
        journal,
    );
    reconcile(Arc::new(kgw), ctx).await.expect("cleanup");
    timeout_after_1s(mock).await;
    assert!(storage.describe_topic("orders").await.unwrap().is_some());
}
