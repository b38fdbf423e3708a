//! The NetworkPolicy of the gateway pods: the Kafka port open, the raft port for the gateway pods
//! only, the admin port for the gateway pods, the operator and the configured metrics scrapers.
//!
//! Ingress only: egress (SeaweedMQ, DNS) is left alone, since where SeaweedMQ runs is not known
//! here. Kubelet probes come from the node, which NetworkPolicies always admit.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{child_meta, Names};
use crate::crd::KafkaGateway;
use crate::Result;

/// Where the operator runs, so its calls to the admin port are admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorIdentity {
    /// The operator's namespace.
    pub namespace: String,
    /// Labels of the operator pods.
    pub pod_labels: BTreeMap<String, String>,
}

impl OperatorIdentity {
    /// Parses `key=value,...` pod labels.
    ///
    /// # Errors
    /// An item without `=`, or no label at all (a policy selecting every pod of the namespace
    /// would admit far more than the operator).
    pub fn new(namespace: &str, pod_labels: &str) -> std::result::Result<Self, String> {
        let mut labels = BTreeMap::new();
        for item in pod_labels.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("operator pod label {item:?} is not key=value"))?;
            labels.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        if labels.is_empty() {
            return Err("the operator pod labels are empty".into());
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            pod_labels: labels,
        })
    }
}

fn port(number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

fn labels(match_labels: BTreeMap<String, String>) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(match_labels),
        ..LabelSelector::default()
    })
}

/// The NetworkPolicy, or `None` when disabled in the spec.
///
/// # Errors
/// [`crate::Error::MissingObjectKey`] when `kgw` lacks a name, namespace or uid.
pub fn build(
    kgw: &KafkaGateway,
    names: &Names,
    operator: &OperatorIdentity,
) -> Result<Option<NetworkPolicy>> {
    let policy = &kgw.spec.security.network_policy;
    if !policy.enabled {
        return Ok(None);
    }
    let gateways = NetworkPolicyPeer {
        pod_selector: labels(names.selector_labels()),
        ..NetworkPolicyPeer::default()
    };
    let the_operator = NetworkPolicyPeer {
        namespace_selector: labels(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            operator.namespace.clone(),
        )])),
        pod_selector: labels(operator.pod_labels.clone()),
        ..NetworkPolicyPeer::default()
    };
    let mut admin_from = vec![gateways.clone(), the_operator];
    admin_from.extend(policy.metrics_from.iter().cloned());
    let spec = &kgw.spec;
    Ok(Some(NetworkPolicy {
        metadata: child_meta(kgw, names, names.name.clone())?,
        spec: Some(NetworkPolicySpec {
            pod_selector: labels(names.selector_labels()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(spec.listener.port)]),
                    from: None,
                },
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(spec.listener.cluster_port)]),
                    from: Some(vec![gateways]),
                },
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(spec.metrics.port)]),
                    from: Some(admin_from),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{operator_identity, KafkaGatewayExt};
    use serde_json::json;

    #[test]
    fn kafka_is_open_raft_is_for_gateways_admin_for_gateways_operator_and_scrapers() {
        let mut kgw = KafkaGateway::test();
        let names = Names::of(&kgw).unwrap();
        let policy = build(&kgw, &names, &operator_identity()).unwrap().unwrap();
        let v = serde_json::to_value(&policy).unwrap();
        let gateways = json!({"podSelector": {"matchLabels": {
            "app.kubernetes.io/instance": "kgw", "app.kubernetes.io/name": "kafka-gateway"}}});
        assert_eq!(v["spec"]["podSelector"], gateways["podSelector"]);
        assert_eq!(v["spec"]["policyTypes"], json!(["Ingress"]));
        let rules = v["spec"]["ingress"].as_array().unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0], json!({"ports": [{"port": 9092, "protocol": "TCP"}]}));
        assert_eq!(
            rules[1],
            json!({"ports": [{"port": 9645, "protocol": "TCP"}], "from": [gateways.clone()]})
        );
        assert_eq!(rules[2]["ports"], json!([{"port": 9644, "protocol": "TCP"}]));
        let operator = json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kgo-system"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kafka-gateway-operator"}}});
        assert_eq!(rules[2]["from"], json!([gateways.clone(), operator.clone()]));

        let scraper =
            json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}});
        kgw.spec.security.network_policy.metrics_from =
            vec![serde_json::from_value(scraper.clone()).unwrap()];
        let v = serde_json::to_value(build(&kgw, &names, &operator_identity()).unwrap().unwrap()).unwrap();
        assert_eq!(
            v["spec"]["ingress"][2]["from"],
            json!([gateways, operator, scraper])
        );

        kgw.spec.security.network_policy.enabled = false;
        assert!(build(&kgw, &names, &operator_identity()).unwrap().is_none());
    }

    #[test]
    fn operator_labels_are_parsed() {
        let id = OperatorIdentity::new("ns", "a=b, c=d").unwrap();
        assert_eq!(id.pod_labels.len(), 2);
        assert!(OperatorIdentity::new("ns", "").is_err());
        assert!(OperatorIdentity::new("ns", "novalue").is_err());
    }
}
