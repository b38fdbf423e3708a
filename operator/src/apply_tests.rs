//! Apply-path reporting against the scripted mock API server: refused specs and children,
//! immutable storage, the ServiceMonitor, per-topic events.

use std::sync::Arc;

use super::*;
use crate::controller::{reconcile, RESYNC};
use crate::fixtures::{
    cond, local_storage, pdb, statefulset_with_status, sts_found, sts_missing, timeout_after_1s, topic,
    KafkaGatewayExt, Reply, Step, APPS, POLICY,
};

const SM_CRD: &str =
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/servicemonitors.monitoring.coreos.com";

#[tokio::test]
async fn a_storage_change_keeps_the_immutable_claims_and_says_so() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let kgw = KafkaGateway::test().with_replicas(3);
    // The existing claims were made with another size; claim templates are immutable.
    let mut older = kgw.clone();
    older.spec.storage.size = "5Gi".into();
    let existing = serde_json::to_value(statefulset_with_status(&older, 3, 3)).unwrap();
    let mut steps = vec![Step::get(
        APPS,
        "statefulsets",
        "kgw",
        Reply::Json(existing.clone()),
    )];
    steps.extend(Step::services_and_config());
    steps.push(
        Step::apply_sts(|b| {
            assert_eq!(
                b["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
                "5Gi"
            );
        })
        .reply(Reply::Json(existing)),
    );
    steps.push(pdb());
    steps.push(Step::status(&kgw, |s| {
        let c = cond(s, kind::STORAGE_UP_TO_DATE);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "VolumeClaimsImmutable")
        );
        assert!(c.message.contains("asks 1Gi"), "{}", c.message);
        assert_eq!(cond(s, kind::READY).status, "True", "the running cluster is fine");
    }));
    let mock = server.run(steps, journal);
    reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
    timeout_after_1s(mock).await;
}

#[tokio::test]
async fn service_monitor_applied_only_when_its_crd_exists_and_disabled_pdb_deleted() {
    for crd_installed in [true, false] {
        let (ctx, server, _, journal) = Context::test(None, vec![]);
        let mut kgw = KafkaGateway::test().with_service_monitor();
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
            SM_CRD,
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
        steps.push(Step::status(&kgw, move |s| {
            let c = cond(s, kind::SERVICE_MONITOR_READY);
            let expected = if crd_installed {
                ("True", "Applied")
            } else {
                ("False", "CRDMissing")
            };
            assert_eq!((c.status.as_str(), c.reason.as_str()), expected);
        }));
        let mock = server.run(steps, journal);
        reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
        timeout_after_1s(mock).await;
    }
}

#[tokio::test]
async fn a_service_monitor_turned_off_is_deleted() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let mut kgw = KafkaGateway::test().with_service_monitor();
    let names = crate::resources::Names::of(&kgw).unwrap();
    let observed = crate::status::Observed {
        service_monitor: Some((true, "Applied", "made".into())),
        ..Default::default()
    };
    kgw.status = Some(crate::status::compute(
        &kgw,
        &names,
        observed,
        k8s_openapi::jiff::Timestamp::now(),
    ));
    kgw.spec.metrics.service_monitor = false;
    let mut steps = vec![sts_found(&kgw, 1)];
    steps.extend(Step::services_and_config());
    steps.push(Step::apply_sts(|_| {}));
    steps.push(pdb());
    steps.push(Step::raw(
        http::Method::DELETE,
        "/apis/monitoring.coreos.com/v1/namespaces/testns/servicemonitors/kgw",
        Reply::Json(serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
    ));
    steps.push(Step::status(&kgw, |s| {
        assert!(s
            .conditions
            .iter()
            .all(|c| c.type_ != kind::SERVICE_MONITOR_READY));
    }));
    let mock = server.run(steps, journal);
    reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
    timeout_after_1s(mock).await;
}

/// A spec Kubernetes would refuse in the children changes no child: one Warning event per
/// field (distinct, not merged) and Ready=False/InvalidSpec naming the fields.
#[tokio::test]
async fn invalid_spec_changes_no_child_and_names_the_fields() {
    let (ctx, server, registry, journal) = Context::test(None, vec![]);
    let mut kgw = KafkaGateway::test();
    kgw.spec.storage.size = "lots".into();
    kgw.spec.metrics.port = 9092;
    let steps = vec![
        sts_missing(),
        Step::event_about("InvalidSpec", "spec.storage.size"),
        Step::event_about("InvalidSpec", "spec.metrics.port"),
        Step::status(&kgw, |s| {
            let ready = cond(s, kind::READY);
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                ("False", "InvalidSpec")
            );
            assert!(
                ready.message.contains("spec.storage.size: 'lots'"),
                "{}",
                ready.message
            );
            assert!(
                ready.message.contains("spec.metrics.port: 9092"),
                "{}",
                ready.message
            );
        }),
    ];
    let mock = server.run(steps, Arc::clone(&journal));
    let action = reconcile(Arc::new(kgw), ctx)
        .await
        .expect("reported, not retried");
    timeout_after_1s(mock).await;
    assert_eq!(action, Action::requeue(RESYNC));
    assert!(!journal.lock().iter().any(|e| e.starts_with("PATCH /api/")));
    assert!(registry
        .gather()
        .iter()
        .any(|m| m.name() == "kafka_gateway_operator_reconciles_total"));
}

/// Something only the API server knows is wrong: the refusal is a condition and a Warning event
/// carrying the API server's message, not a silent retry loop.
#[tokio::test]
async fn a_child_the_api_server_refuses_is_reported() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let kgw = KafkaGateway::test();
    let message =
        "StatefulSet.apps \"kgw\" is invalid: spec.template.spec.containers[0].env[6].name: Invalid value";
    let steps = vec![
        sts_missing(),
        Step::dry_run_sts().reply(Reply::Refused(422, message)),
        Step::event("ChildRejected").checked(|b| {
            assert!(b["note"].as_str().unwrap().contains("env[6].name"), "{b}");
        }),
        Step::status(&kgw, |s| {
            let ready = cond(s, kind::READY);
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                ("False", "ChildRejected")
            );
            assert!(ready.message.contains("the StatefulSet"), "{}", ready.message);
        }),
    ];
    let mock = server.run(steps, Arc::clone(&journal));
    reconcile(Arc::new(kgw), ctx).await.expect("reported");
    timeout_after_1s(mock).await;
    // Refused in the dry run: no child was changed, none is left half-done.
    let log = journal.lock().clone();
    assert!(
        !log.iter()
            .any(|e| e.contains("/configmaps/") || e.contains("/services/")),
        "{log:?}"
    );
}

/// Each topic's event is its own (the recorder folds events with the same reason about the same
/// reference into one series, so they are about `spec.topics{name}`).
#[tokio::test]
async fn each_topic_gets_its_own_event() {
    let (_dir, storage) = local_storage().await;
    let (ctx, server, _, journal) = Context::test(Some(storage), vec![]);
    let kgw = KafkaGateway::test().with_topics(vec![topic("orders", 1), topic("payments", 2)]);
    let mut steps = vec![sts_found(&kgw, 1)];
    steps.extend(Step::services_and_config());
    steps.push(Step::apply_sts(|_| {}));
    steps.push(pdb());
    steps.push(Step::event_about("TopicCreated", "spec.topics{orders}"));
    steps.push(Step::event_about("TopicCreated", "spec.topics{payments}"));
    steps.push(Step::status(&kgw, |s| assert_eq!(s.topics.len(), 2)));
    let mock = server.run(steps, journal);
    reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
    timeout_after_1s(mock).await;
}
