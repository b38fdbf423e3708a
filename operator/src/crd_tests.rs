//! Schema tests: the generated CRD's shape, its CEL rules evaluated client-side on valid and
//! invalid specs, and the drift check of `crds/kafkagateway.yaml`.

use kube::core::cel::validate_cel;
use kube::CustomResourceExt;
use serde_json::{json, Value};

use super::*;

fn crd_json() -> Value {
    serde_json::to_value(KafkaGateway::crd()).unwrap()
}

fn spec_schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

fn gateway(spec: Value) -> KafkaGateway {
    let mut kgw = KafkaGateway::new("kgw", serde_json::from_value(spec).expect("spec deserializes"));
    kgw.metadata.namespace = Some("testns".into());
    kgw
}

fn valid_spec() -> Value {
    json!({
        "replicas": 3,
        "image": "kafka-gateway:1",
        "seaweedmq": { "masters": ["m:9333"] },
        "topics": [
            { "name": "orders", "partitions": 6, "config": { "retention.ms": "86400000" } },
            { "name": "a.b_c-D9", "partitions": 1 }
        ]
    })
}

fn errors_of(spec: Value) -> Vec<String> {
    match validate_cel(&gateway(spec)) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn drift_crds_dir_matches_the_generated_crd() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/kafkagateway.yaml");
    let checked_in = std::fs::read_to_string(path).expect("crds/kafkagateway.yaml exists");
    let generated = crd_yaml().expect("yaml");
    assert!(
        checked_in == generated,
        "crds/kafkagateway.yaml is stale: run `cargo run -p kafka-gateway-operator --bin crdgen > crds/kafkagateway.yaml`"
    );
}

#[test]
fn names_scope_and_scale_subresource() {
    let crd = crd_json();
    assert_eq!(crd["metadata"]["name"], "kafkagateways.kafkagateway.seaweedfs.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["kgw"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], json!({}));
    assert_eq!(
        version["subresources"]["scale"],
        json!({"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"})
    );
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Replicas", "Ready", "Status", "Bootstrap", "Age"]);
}

#[test]
fn schema_carries_bounds_the_api_server_enforces() {
    let spec = spec_schema();
    assert_eq!(spec["required"], json!(["image", "replicas", "seaweedmq"]));
    assert_eq!(spec["properties"]["replicas"]["minimum"], 1.0);
    let topics = &spec["properties"]["topics"];
    assert_eq!(topics["x-kubernetes-list-type"], "map");
    assert_eq!(topics["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(topics["maxItems"], MAX_TOPICS);
    let item = &topics["items"]["properties"];
    assert_eq!(
        (
            item["name"]["minLength"].as_u64(),
            item["name"]["maxLength"].as_u64()
        ),
        (Some(1), Some(249))
    );
    assert_eq!(item["partitions"]["minimum"], 1.0);
    assert_eq!(item["partitions"]["maximum"], f64::from(MAX_PARTITIONS));
    let advertised = &spec["properties"]["listener"]["properties"]["advertisedAddress"]["enum"];
    assert_eq!(*advertised, json!(["PodIP", "PodDNS"]));
}

#[test]
fn valid_specs_pass_the_cel_rules() {
    assert_eq!(errors_of(valid_spec()), Vec::<String>::new());
    let brokers_only = json!({"replicas": 1, "image": "i", "seaweedmq": {"brokers": ["b:17777"]}});
    assert_eq!(errors_of(brokers_only), Vec::<String>::new());
}

#[test]
fn invalid_specs_are_refused_with_clear_messages() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"replicas": 0}), "replicas must be at least 1"),
        (json!({"seaweedmq": {}}), "at least one master or broker"),
        (
            json!({"topics": [{"name": "bad/name", "partitions": 1}]}),
            "topic names are 1 to 249 characters",
        ),
        (
            json!({"topics": [{"name": "..", "partitions": 1}]}),
            "not '.' or '..'",
        ),
        (
            json!({"topics": [{"name": "ok", "partitions": 0}]}),
            "partitions must be between 1 and 2520",
        ),
        (
            json!({"topics": [{"name": "ok", "partitions": 5000}]}),
            "partitions must be between 1 and 2520",
        ),
    ];
    for (patch, expected) in cases {
        let mut spec = valid_spec();
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let errors = errors_of(spec);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{patch}: expected {expected:?} in {errors:?}"
        );
    }
}

#[test]
fn topic_name_rule_agrees_with_the_gateway_validator() {
    for name in [
        "a",
        "A.b-c_9",
        ".",
        "..",
        "x y",
        "naïve",
        "a/b",
        "...",
        &"x".repeat(249),
    ] {
        let mut spec = valid_spec();
        spec["topics"] = json!([{ "name": name, "partitions": 1 }]);
        let cel_ok = errors_of(spec).is_empty();
        let gateway_ok = kafka_gateway::storage::validate_topic_name(name).is_ok();
        assert_eq!(cel_ok, gateway_ok, "{name:?}");
    }
}

fn rule_nodes(node: &Value, out: &mut Vec<Value>) {
    match node {
        Value::Object(map) => {
            if map.contains_key("x-kubernetes-validations") {
                out.push(node.clone());
            }
            map.values().for_each(|v| rule_nodes(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| rule_nodes(v, out)),
        _ => {}
    }
}

#[test]
fn every_cel_rule_compiles_within_the_cost_budget() {
    let mut nodes = Vec::new();
    rule_nodes(&crd_json(), &mut nodes);
    assert_eq!(nodes.len(), 4, "replicas, seaweedmq, topic name, partitions");
    for node in nodes {
        let compiled = kube::core::cel::compile_schema(&node);
        assert!(compiled.compilation_errors().is_empty(), "{node}");
        for rule in node["x-kubernetes-validations"].as_array().unwrap() {
            let rule = rule["rule"].as_str().unwrap();
            assert_eq!(
                kube::core::cel::estimate_rule_cost(rule, &compiled).len(),
                0,
                "{rule}"
            );
        }
    }
}
