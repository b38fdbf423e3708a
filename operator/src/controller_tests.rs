//! Reconcile tests against the scripted mock API server (see `fixtures.rs`).

use std::sync::Arc;
use std::time::Duration;

use kafka_gateway::storage::local::{LocalOptions, LocalStorage};
use kafka_gateway::storage::Storage;
use serde_json::Value;

use super::*;
use crate::crd::{KafkaGatewayStatus, TopicState};
use crate::fixtures::{statefulset_with_status, timeout_after_1s, topic, KafkaGatewayExt, Reply, Step};
use crate::status::kind;

const APPS: &str = "/apis/apps/v1";
const POLICY: &str = "/apis/policy/v1";
const ADMIN: &str = "http://kgw-0.kgw-headless.testns.svc.cluster.local:9644";

fn cond<'a>(
    s: &'a KafkaGatewayStatus,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition"))
}

fn sts_missing() -> Step {
    Step::get(APPS, "statefulsets", "kgw", Reply::Status(404))
}

fn sts_found(kgw: &KafkaGateway, replicas: i32) -> Step {
    let sts = statefulset_with_status(kgw, replicas, replicas);
    Step::get(
        APPS,
        "statefulsets",
        "kgw",
        Reply::Json(serde_json::to_value(sts).unwrap()),
    )
}

fn replicas_of(body: &Value) -> i64 {
    body["spec"]["replicas"].as_i64().unwrap()
}

fn peers_in(body: &Value) -> usize {
    let text = body["data"]["gateway.toml"].as_str().unwrap();
    let table: toml::Table = text.parse().unwrap();
    table["peers"].as_str().unwrap().split(',').count()
}

/// Children applied after the StatefulSet when nothing else is enabled: the PDB.
fn pdb() -> Step {
    Step::apply(POLICY, "poddisruptionbudgets", "kgw")
}

async fn local_storage() -> (tempfile::TempDir, Arc<dyn Storage>) {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(LocalOptions::new(dir.path())).await.unwrap();
    (dir, Arc::new(storage))
}

#[tokio::test]
async fn gateway_without_finalizer_gets_one_first() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let kgw = KafkaGateway::test();
    let mock = server.run(vec![Step::finalizer(&kgw, true)], journal);
    reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
    timeout_after_1s(mock).await;
}

#[tokio::test]
async fn create_applies_every_child_then_the_status() {
    let (ctx, server, registry, journal) = Context::test(None, vec![]);
    let kgw = KafkaGateway::test().with_replicas(3).finalized();
    let mut steps = vec![sts_missing()];
    steps.extend(Step::services_and_config());
    steps.push(Step::apply_sts(|b| assert_eq!(replicas_of(b), 3)));
    steps.push(Step::event("Created"));
    steps.push(pdb().checked(|b| assert_eq!(b["spec"]["maxUnavailable"], 1)));
    steps.push(Step::status(&kgw, |s| {
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(
            s.selector,
            "app.kubernetes.io/instance=kgw,app.kubernetes.io/name=kafka-gateway"
        );
        assert_eq!(cond(s, kind::READY).status, "False");
        assert_eq!(cond(s, kind::PROGRESSING).reason, "ScalingUp");
        assert_eq!(cond(s, kind::TOPICS_READY).status, "True");
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
    let kgw = KafkaGateway::test().with_replicas(3).finalized();
    let ready = serde_json::to_value(statefulset_with_status(&kgw, 3, 3)).unwrap();
    // The existing claims were made with another size; claim templates are immutable.
    let mut older = kgw.clone();
    older.spec.storage.size = "5Gi".into();
    let existing = serde_json::to_value(statefulset_with_status(&older, 3, 3)).unwrap();
    let mut steps = vec![Step::get(APPS, "statefulsets", "kgw", Reply::Json(existing))];
    steps.extend(Step::services_and_config());
    steps.push(
        Step::apply_sts(|b| {
            assert_eq!(replicas_of(b), 3);
            assert_eq!(
                b["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
                "5Gi"
            );
        })
        .reply(Reply::Json(ready)),
    );
    steps.push(pdb());
    steps.push(Step::status(&kgw, |s| {
        assert_eq!((s.replicas, s.ready_replicas), (3, 3));
        assert_eq!(cond(s, kind::READY).status, "True");
        assert_eq!(cond(s, kind::PROGRESSING).reason, "Stable");
        assert_eq!(cond(s, kind::DEGRADED).status, "False");
    }));
    let mock = server.run(steps, journal);
    let action = reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
    timeout_after_1s(mock).await;
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn scale_up_grows_peers_and_replicas_without_removals() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let kgw = KafkaGateway::test().with_replicas(5).finalized();
    let mut steps = vec![sts_found(&kgw, 3), Step::event("ScalingUp")];
    let mut children = Step::services_and_config();
    children[0] = Step::apply("/api/v1", "configmaps", "kgw-config").checked(|b| assert_eq!(peers_in(b), 5));
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
    let kgw = KafkaGateway::test().with_replicas(3).finalized();
    let mut steps = vec![sts_found(&kgw, 5), Step::event("MembersRemoved")];
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
    assert_eq!(log[at("remove 4")], format!("remove 4 via {ADMIN}"));
    assert!(at("remove 4") < at("remove 3"), "highest ordinal first: {log:?}");
    assert!(
        at("remove 3") < at("PATCH /apis/apps/v1/namespaces/testns/statefulsets/kgw"),
        "{log:?}"
    );
    assert!(!log.iter().any(|e| e.starts_with("remove 2")));
}

#[tokio::test]
async fn failed_member_removal_keeps_the_statefulset_and_reports_degraded() {
    let (ctx, server, _, journal) = Context::test(None, vec![3]);
    let kgw = KafkaGateway::test().with_replicas(3).finalized();
    let steps = vec![
        sts_found(&kgw, 5),
        Step::event("MemberRemovalFailed"),
        Step::status(&kgw, |s| {
            let degraded = cond(s, kind::DEGRADED);
            assert_eq!(
                (degraded.status.as_str(), degraded.reason.as_str()),
                ("True", "MemberRemovalFailed")
            );
            assert!(degraded.message.contains("member 3"), "{}", degraded.message);
            assert_eq!(cond(s, kind::PROGRESSING).reason, "ScalingDown");
            assert_eq!(s.replicas, 5);
        }),
    ];
    let kgw = Arc::new(kgw);
    let mock = server.run(steps, Arc::clone(&journal));
    let err = reconcile(Arc::clone(&kgw), ctx.clone())
        .await
        .expect_err("removal failed");
    timeout_after_1s(mock).await;
    assert_eq!(err.metric_label(), "member_removal");
    assert!(!journal
        .lock()
        .iter()
        .any(|e| e.contains("statefulsets/kgw") && e.starts_with("PATCH")));

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
    let kgw = KafkaGateway::test()
        .with_topics(vec![topic("orders", 3)])
        .finalized();
    let mut steps = vec![sts_missing()];
    steps.extend(Step::services_and_config());
    steps.push(Step::apply_sts(|_| {}));
    steps.push(Step::event("Created"));
    steps.push(pdb());
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
    let kgw = KafkaGateway::test()
        .with_topics(vec![topic("orders", 3)])
        .finalized();
    let ready = serde_json::to_value(statefulset_with_status(&kgw, 1, 1)).unwrap();
    let mut steps = vec![sts_found(&kgw, 1)];
    steps.extend(Step::services_and_config());
    steps.push(Step::apply_sts(|_| {}).reply(Reply::Json(ready.clone())));
    steps.push(pdb());
    steps.push(Step::event("TopicCreated"));
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
    steps.push(Step::event("TopicPartitionDecreaseRefused"));
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
async fn deletion_runs_cleanup_then_removes_the_finalizer() {
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
    let steps = vec![Step::event("Deleting"), Step::finalizer(&kgw, false)];
    let mock = server.run(steps, journal);
    let action = reconcile(Arc::new(kgw), ctx).await.expect("cleanup");
    timeout_after_1s(mock).await;
    assert_eq!(action, Action::await_change());
    assert!(
        storage.describe_topic("orders").await.unwrap().is_none(),
        "policy Delete removes topics"
    );
}

#[tokio::test]
async fn deletion_retains_topics_by_default() {
    let (_dir, storage) = local_storage().await;
    storage
        .create_topic("orders", 1, Default::default(), false)
        .await
        .unwrap();
    let (ctx, server, _, journal) = Context::test(Some(Arc::clone(&storage)), vec![]);
    let kgw = KafkaGateway::test()
        .with_topics(vec![topic("orders", 1)])
        .finalized()
        .deleting();
    let mock = server.run(
        vec![Step::event("Deleting"), Step::finalizer(&kgw, false)],
        journal,
    );
    reconcile(Arc::new(kgw), ctx).await.expect("cleanup");
    timeout_after_1s(mock).await;
    assert!(storage.describe_topic("orders").await.unwrap().is_some());
}

#[tokio::test]
async fn service_monitor_applied_only_when_its_crd_exists_and_disabled_pdb_deleted() {
    let crd_path =
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/servicemonitors.monitoring.coreos.com";
    for crd_installed in [true, false] {
        let (ctx, server, _, journal) = Context::test(None, vec![]);
        let mut kgw = KafkaGateway::test().with_service_monitor().finalized();
        kgw.spec.pdb.enabled = false;
        let mut steps = vec![sts_found(&kgw, 1)];
        steps.extend(Step::services_and_config());
        steps.push(Step::apply_sts(|_| {}));
        steps.push(Step::raw(
            http::Method::DELETE,
            &format!("{POLICY}/namespaces/testns/poddisruptionbudgets/kgw"),
            Reply::Status(404),
        ));
        let crd = serde_json::json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
            "spec": {"group": "monitoring.coreos.com", "names": {"kind": "ServiceMonitor", "plural": "servicemonitors"}, "scope": "Namespaced", "versions": []}});
        steps.push(Step::raw(
            http::Method::GET,
            crd_path,
            if crd_installed {
                Reply::Json(crd)
            } else {
                Reply::Status(404)
            },
        ));
        if crd_installed {
            steps.push(
                Step::apply("/apis/monitoring.coreos.com/v1", "servicemonitors", "kgw")
                    .checked(|b| assert_eq!(b["spec"]["endpoints"][0]["port"], "admin")),
            );
        }
        steps.push(Step::status(&kgw, |_| {}));
        let mock = server.run(steps, journal);
        reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
        timeout_after_1s(mock).await;
    }
}
