//! Schema tests: the generated CRD's shape, its CEL rules evaluated client-side on valid and
//! invalid specs, and the drift check of `crds/kafkagateway.yaml`.

use kube::core::cel::Validator;
use serde_json::{json, Value};

use super::*;

fn crd_json() -> Value {
    serde_json::to_value(crd()).unwrap()
}

fn root_schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn spec_schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

fn gateway_named(name: &str, spec: Value) -> Value {
    let kgw = KafkaGateway::new(name, serde_json::from_value(spec).expect("spec deserializes"));
    let mut value = serde_json::to_value(kgw).unwrap();
    value["metadata"]["namespace"] = json!("testns");
    value
}

/// CEL errors of `new` (an update of `old` when given), as the API server evaluates them.
fn cel_errors(new: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&root_schema(), new, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.to_string()).collect(),
    }
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
    cel_errors(&gateway_named("kgw", spec), None)
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
            json!({"metrics": {"port": 9092}}),
            "metrics.port must differ from listener.port",
        ),
        (
            json!({"metrics": {"port": 7000}, "listener": {"port": 7000, "clusterPort": 9645}}),
            "metrics.port must differ from listener.port",
        ),
        (
            json!({"listener": {"port": 9645}}),
            "listener.clusterPort must differ from listener.port",
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
    assert_eq!(
        nodes.len(),
        5,
        "root (name), spec (ports), seaweedmq, topic name, partitions"
    );
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

#[test]
fn names_the_children_cannot_carry_are_refused() {
    let name = &root_schema()["properties"]["metadata"]["properties"]["name"];
    assert_eq!(name["maxLength"], MAX_NAME_LENGTH);
    assert_eq!(name["type"], "string");
    for good in ["kgw", "events", "a", "a-1", &"x".repeat(52)] {
        assert_eq!(
            cel_errors(&gateway_named(good, valid_spec()), None),
            Vec::<String>::new(),
            "{good}"
        );
    }
    for bad in ["9gw", "-a", "a-", "Kgw", "a.b", "a_b"] {
        let errors = cel_errors(&gateway_named(bad, valid_spec()), None);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("metadata.name must be a DNS-1035 label")),
            "{bad}: {errors:?}"
        );
    }
}

#[test]
fn quantities_carry_the_quantity_pattern() {
    let spec = spec_schema();
    assert_eq!(
        spec["properties"]["storage"]["properties"]["size"]["pattern"],
        QUANTITY_PATTERN
    );
    for map in ["requests", "limits"] {
        let value = &spec["properties"]["resources"]["properties"][map]["additionalProperties"];
        assert_eq!(value["pattern"], QUANTITY_PATTERN, "{map}");
        assert_eq!(value["x-kubernetes-int-or-string"], true, "{map}");
    }
}

/// The schema pattern and the operator's own quantity check (used when the CRD in the cluster is
/// older than the operator) accept exactly the same strings; evaluated with CEL's RE2 `matches`.
#[test]
fn quantity_pattern_agrees_with_the_operator_check() {
    let schema = json!({
        "type": "string",
        "x-kubernetes-validations": [{"rule": format!("self.matches('{}')", QUANTITY_PATTERN.replace('\\', "\\\\"))}]
    });
    for q in [
        "1Gi",
        "500m",
        "0.5",
        "2",
        "1e3",
        "1E-3",
        "+1",
        ".5",
        "5.",
        "10Ki",
        "1k",
        "128974848",
        "lots",
        "banana",
        "1K",
        "1 Gi",
        "-1",
        "1.2.3",
        "Gi",
        "",
        "1gi",
        "1Gb",
        "0x10",
        "1e",
    ] {
        let pattern_ok = Validator::new().validate(&schema, &json!(q), None).is_ok();
        assert_eq!(pattern_ok, crate::validate::is_quantity(q), "{q:?}");
    }
}

#[test]
fn partitions_cannot_change_once_set() {
    let old = gateway_named("kgw", valid_spec());
    let mut grown = valid_spec();
    grown["topics"][0]["partitions"] = json!(12);
    let errors = cel_errors(&gateway_named("kgw", grown), Some(&old));
    assert!(
        errors.iter().any(|e| e.contains("partitions cannot change")),
        "{errors:?}"
    );
    // Same counts, and a new topic with any count, are fine.
    let mut added = valid_spec();
    added["topics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "new", "partitions": 7}));
    assert_eq!(
        cel_errors(&gateway_named("kgw", added), Some(&old)),
        Vec::<String>::new()
    );
    let description = spec_schema()["properties"]["topics"]["items"]["properties"]["partitions"]
        ["description"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!description.contains("grow"), "{description}");
}

/// A bound is reported once: numeric bounds are schema `minimum`/`maximum`, never also a CEL rule.
#[test]
fn every_bound_is_reported_once() {
    let mut nodes = Vec::new();
    rule_nodes(&crd_json(), &mut nodes);
    for node in nodes {
        if node.get("minimum").is_some() || node.get("maximum").is_some() {
            for rule in node["x-kubernetes-validations"].as_array().unwrap() {
                let rule = rule["rule"].as_str().unwrap();
                assert!(
                    !rule.contains(">=") && !rule.contains("<="),
                    "{rule} duplicates {node}"
                );
            }
        }
    }
    let spec = spec_schema();
    assert_eq!(spec["properties"]["replicas"]["minimum"], 1.0);
    assert!(spec["properties"]["replicas"]
        .get("x-kubernetes-validations")
        .is_none());
}
