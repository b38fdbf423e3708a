//! The closed control plane as the operator builds it, against the scripted mock API server:
//! generated tokens (created once, mounted, passed as flags), a user-named tokens Secret that is
//! missing, and the NetworkPolicy turned off.

use std::sync::Arc;

use super::*;
use crate::controller::reconcile;
use crate::fixtures::{
    cond, pdb, sts_found, sts_missing, timeout_after_1s, KafkaGatewayExt, Reply, Step, NETWORKING,
};

fn is_token(v: &serde_json::Value) -> String {
    use k8s_openapi::ByteString;
    let bytes: ByteString = serde_json::from_value(v.clone()).expect("base64 data");
    let text = String::from_utf8(bytes.0).expect("utf-8 token");
    assert_eq!(text.len(), 64, "{text}");
    assert!(text.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
    text
}

#[tokio::test]
async fn a_new_gateway_gets_generated_tokens_mounted_and_a_network_policy() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let kgw = KafkaGateway::test().with_replicas(3);
    let mut steps = vec![sts_missing()];
    let mut children = Step::services_and_config();
    children[2] = Step::apply("/api/v1", "configmaps", "kgw-config").checked(|b| {
        let table: toml::Table = b["data"]["gateway.toml"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            table["cluster-token-file"].as_str(),
            Some("/etc/kafka-gateway-tokens/cluster-token")
        );
        assert_eq!(
            table["admin-token-file"].as_str(),
            Some("/etc/kafka-gateway-tokens/admin-token")
        );
    });
    // No Secret yet: the operator creates one with two fresh tokens, owned by the gateway.
    children[1] = Step::get("/api/v1", "secrets", "kgw-tokens", Reply::Status(404));
    children.insert(
        2,
        Step::raw(
            http::Method::POST,
            "/api/v1/namespaces/testns/secrets",
            Reply::Echo,
        )
        .checked(|b| {
            assert_eq!(b["metadata"]["name"], "kgw-tokens");
            assert_eq!(b["metadata"]["ownerReferences"][0]["name"], "kgw");
            let cluster = is_token(&b["data"]["cluster-token"]);
            let admin = is_token(&b["data"]["admin-token"]);
            assert_ne!(cluster, admin);
        }),
    );
    children[6] = Step::apply(NETWORKING, "networkpolicies", "kgw").checked(|b| {
        let rules = b["spec"]["ingress"].as_array().unwrap();
        assert_eq!(rules[1]["ports"][0]["port"], 9645);
        assert_eq!(
            rules[1]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
            "kgw"
        );
        assert_eq!(
            rules[2]["from"][1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "kgo-system"
        );
    });
    steps.extend(children);
    steps.push(Step::apply_sts(|b| {
        let volumes = b["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
        assert!(
            volumes.iter().any(|v| v["secret"]["secretName"] == "kgw-tokens"),
            "{volumes:?}"
        );
    }));
    steps.push(pdb());
    steps.push(Step::event("Created"));
    steps.push(Step::status(&kgw, |_| {}));
    let mock = server.run(steps, journal);
    reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
    timeout_after_1s(mock).await;
}

#[tokio::test]
async fn a_missing_user_tokens_secret_is_reported_and_no_pod_changes() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let mut kgw = KafkaGateway::test();
    kgw.spec.security.tokens_secret = Some("my-tokens".into());
    let mut steps = vec![sts_found(&kgw, 1), Step::dry_run_sts()];
    steps.push(Step::get("/api/v1", "secrets", "my-tokens", Reply::Status(404)));
    steps.push(Step::event_about(
        "TokensSecretInvalid",
        "spec.security.tokensSecret",
    ));
    steps.push(Step::status(&kgw, |s| {
        let ready = cond(s, kind::READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "TokensSecretInvalid")
        );
        assert!(ready.message.contains("my-tokens"), "{}", ready.message);
    }));
    let mock = server.run(steps, Arc::clone(&journal));
    reconcile(Arc::new(kgw), ctx).await.expect("reported");
    timeout_after_1s(mock).await;
    // Only the dry run touched the StatefulSet, and no other child was applied.
    let log = journal.lock().clone();
    let sts_patches = log
        .iter()
        .filter(|e| e.starts_with("PATCH /apis/apps/v1/namespaces/testns/statefulsets/kgw"))
        .count();
    assert_eq!(sts_patches, 1, "{log:?}");
    assert!(
        !log.iter().any(|e| e.contains("/configmaps/")
            || e.contains("/services/")
            || e.contains("/networkpolicies/")),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_network_policy_turned_off_is_deleted() {
    let (ctx, server, _, journal) = Context::test(None, vec![]);
    let mut kgw = KafkaGateway::test();
    kgw.spec.security.network_policy.enabled = false;
    let mut steps = vec![sts_found(&kgw, 1)];
    let mut children = Step::services_and_config();
    children[5] = Step::raw(
        http::Method::DELETE,
        &format!("{NETWORKING}/namespaces/testns/networkpolicies/kgw"),
        Reply::Status(404),
    );
    steps.extend(children);
    steps.push(Step::apply_sts(|_| {}));
    steps.push(pdb());
    steps.push(Step::status(&kgw, |_| {}));
    let mock = server.run(steps, journal);
    reconcile(Arc::new(kgw), ctx).await.expect("reconcile");
    timeout_after_1s(mock).await;
}
