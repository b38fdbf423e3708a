//! Checks of a spec the API server admitted but Kubernetes would refuse in the children.
//!
//! The CRD carries the same rules (schema patterns and CEL, see [`crate::crd`]), so `kubectl
//! apply` normally refuses such specs up front. These checks cover objects admitted by an older
//! CRD and the rules a schema cannot express (requests above limits, a zero volume). A spec that
//! fails them gets no children at all: the controller reports `Ready=False/InvalidSpec` and a
//! Warning event naming the field.

use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::{KafkaGateway, MAX_NAME_LENGTH};

/// One refused field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.storage.size`.
    pub field: String,
    /// Why it is refused.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn error(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// The value of a Kubernetes quantity (`resource.Quantity` grammar, no sign but `+`), or `None`
/// when the string is not one. Precision is that of `f64`: enough to compare requests and limits.
pub fn quantity_value(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    let end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(end);
    if number.matches('.').count() > 1 || !number.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(digits.parse::<i32>().ok()?)
        }
    };
    Some(value * scale)
}

/// Whether `text` is a non-negative Kubernetes quantity ([`crate::crd::QUANTITY_PATTERN`]).
pub fn is_quantity(text: &str) -> bool {
    quantity_value(text).is_some()
}

/// Whether `name` is a DNS-1035 label ([`crate::crd::NAME_PATTERN`]).
pub fn is_dns1035_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    matches!(bytes.first(), Some(b) if b.is_ascii_lowercase())
        && matches!(bytes.last(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.iter().all(inner_ok)
        && bytes.len() <= 63
}

fn check_name(kgw: &KafkaGateway, errors: &mut Vec<FieldError>) {
    let name = kgw.metadata.name.as_deref().unwrap_or_default();
    if !is_dns1035_label(name) {
        errors.push(error(
            "metadata.name",
            format!(
                "'{name}' is not a DNS-1035 label (lowercase letters, digits and '-', starting with a letter); \
                 the gateway's Services are named after it"
            ),
        ));
    } else if i64::try_from(name.len()).unwrap_or(i64::MAX) > MAX_NAME_LENGTH {
        errors.push(error(
            "metadata.name",
            format!(
                "'{name}' has {} characters, at most {MAX_NAME_LENGTH} fit: the StatefulSet's pods are labelled \
                 '<name>-<10-character revision hash>' (63 at most)",
                name.len()
            ),
        ));
    }
}

fn check_resources(kgw: &KafkaGateway, errors: &mut Vec<FieldError>) {
    let Some(resources) = kgw.spec.resources.as_ref() else {
        return;
    };
    let empty = Default::default();
    let requests = resources.requests.as_ref().unwrap_or(&empty);
    let limits = resources.limits.as_ref().unwrap_or(&empty);
    for (map, values) in [("requests", requests), ("limits", limits)] {
        for (key, Quantity(value)) in values {
            if !is_quantity(value) {
                errors.push(error(
                    format!("spec.resources.{map}.{key}"),
                    format!("'{value}' is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)"),
                ));
            }
        }
    }
    for (key, Quantity(request)) in requests {
        let Some(Quantity(limit)) = limits.get(key) else {
            continue;
        };
        if let (Some(r), Some(l)) = (quantity_value(request), quantity_value(limit)) {
            if r > l {
                errors.push(error(
                    format!("spec.resources.requests.{key}"),
                    format!("request {request} exceeds the limit {limit}"),
                ));
            }
        }
    }
}

/// Whether `name` is a DNS-1123 subdomain ([`crate::crd::DNS_SUBDOMAIN_PATTERN`]).
pub fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            matches!(b.first(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
                && matches!(b.last(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn check_storage(kgw: &KafkaGateway, errors: &mut Vec<FieldError>) {
    if let Some(class) = &kgw.spec.storage.storage_class_name {
        if !is_dns1123_subdomain(class) {
            errors.push(error(
                "spec.storage.storageClassName",
                format!("'{class}' is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.')"),
            ));
        }
    }
    let size = &kgw.spec.storage.size;
    match quantity_value(size) {
        None => errors.push(error(
            "spec.storage.size",
            format!("'{size}' is not a Kubernetes quantity (e.g. 1Gi)"),
        )),
        Some(v) if v <= 0.0 => errors.push(error(
            "spec.storage.size",
            format!("'{size}': a volume claim needs more than zero bytes"),
        )),
        Some(_) => {}
    }
}

fn check_ports(kgw: &KafkaGateway, errors: &mut Vec<FieldError>) {
    let listener = &kgw.spec.listener;
    let metrics = kgw.spec.metrics.port;
    if metrics == listener.port || metrics == listener.cluster_port {
        errors.push(error(
            "spec.metrics.port",
            format!(
                "{metrics} is also listener.port or listener.clusterPort; the headless Service needs three different ports"
            ),
        ));
    }
    if listener.cluster_port == listener.port {
        errors.push(error(
            "spec.listener.clusterPort",
            format!("{} is also listener.port", listener.cluster_port),
        ));
    }
}

fn check_pdb(kgw: &KafkaGateway, errors: &mut Vec<FieldError>) {
    let Some(IntOrString::String(value)) = kgw.spec.pdb.max_unavailable.as_ref() else {
        return;
    };
    let percent = value
        .strip_suffix('%')
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n <= 100);
    if percent.is_none() {
        errors.push(error(
            "spec.pdb.maxUnavailable",
            format!("'{value}' is neither a number nor a percentage like 20%"),
        ));
    }
}

/// Pod-template mistakes the StatefulSet API admits but pod creation refuses (the pods would
/// never appear, with the reason only in the StatefulSet's events).
fn check_pod_template(kgw: &KafkaGateway, errors: &mut Vec<FieldError>) {
    for (i, env) in kgw.spec.env.iter().enumerate() {
        if env.value.as_deref().is_some_and(|v| !v.is_empty()) && env.value_from.is_some() {
            errors.push(error(
                format!("spec.env[{i}]"),
                format!("{} has both value and valueFrom; give one", env.name),
            ));
        }
    }
    for (i, spread) in kgw.spec.placement.topology_spread_constraints.iter().enumerate() {
        if spread.max_skew < 1 {
            errors.push(error(
                format!("spec.placement.topologySpreadConstraints[{i}].maxSkew"),
                format!("{} must be at least 1", spread.max_skew),
            ));
        }
        if !["DoNotSchedule", "ScheduleAnyway"].contains(&spread.when_unsatisfiable.as_str()) {
            errors.push(error(
                format!("spec.placement.topologySpreadConstraints[{i}].whenUnsatisfiable"),
                format!(
                    "'{}' is neither DoNotSchedule nor ScheduleAnyway",
                    spread.when_unsatisfiable
                ),
            ));
        }
    }
}

/// Every field of `kgw` that Kubernetes would refuse in a child object; empty when none.
pub fn validate(kgw: &KafkaGateway) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_name(kgw, &mut errors);
    check_resources(kgw, &mut errors);
    check_storage(kgw, &mut errors);
    check_ports(kgw, &mut errors);
    check_pdb(kgw, &mut errors);
    check_pod_template(kgw, &mut errors);
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::KafkaGatewayExt;
    use std::collections::BTreeMap;

    fn fields(kgw: &KafkaGateway) -> Vec<String> {
        validate(kgw).into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn quantities() {
        for (text, value) in [
            ("1Gi", 1073741824.0),
            ("500m", 0.5),
            ("2", 2.0),
            ("1e3", 1000.0),
            ("1k", 1000.0),
        ] {
            assert_eq!(quantity_value(text), Some(value), "{text}");
        }
        for bad in ["lots", "banana", "1K", "-1", "", "Gi", "1.2.3", "1 Gi"] {
            assert_eq!(quantity_value(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_issue_examples_are_refused_with_their_field() {
        assert!(fields(&KafkaGateway::test()).is_empty());

        let mut kgw = KafkaGateway::test();
        kgw.metadata.name = Some("9gw".into());
        assert_eq!(fields(&kgw), ["metadata.name"]);
        kgw.metadata.name = Some("g".repeat(53));
        assert_eq!(fields(&kgw), ["metadata.name"]);
        kgw.metadata.name = Some("g".repeat(52));
        assert!(fields(&kgw).is_empty());

        let mut kgw = KafkaGateway::test();
        kgw.spec.storage.size = "lots".into();
        assert_eq!(fields(&kgw), ["spec.storage.size"]);

        let mut kgw = KafkaGateway::test();
        kgw.spec.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("banana".into())),
                ("memory".to_string(), Quantity("2Gi".into())),
            ])),
            limits: Some(BTreeMap::from([("memory".to_string(), Quantity("1Gi".into()))])),
            ..Default::default()
        });
        assert_eq!(
            fields(&kgw),
            ["spec.resources.requests.cpu", "spec.resources.requests.memory"]
        );

        let mut kgw = KafkaGateway::test();
        kgw.spec.metrics.port = 9092;
        let errors = validate(&kgw);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().starts_with("spec.metrics.port: 9092"),
            "{}",
            errors[0]
        );

        let mut kgw = KafkaGateway::test();
        kgw.spec.pdb.max_unavailable = Some(IntOrString::String("half".into()));
        assert_eq!(fields(&kgw), ["spec.pdb.maxUnavailable"]);
    }

    /// Seen on a real API server: the StatefulSet is admitted, its pods never are.
    #[test]
    fn pod_template_mistakes_the_statefulset_api_admits_are_refused() {
        let mut kgw = KafkaGateway::test();
        kgw.spec.storage.storage_class_name = Some("Bad_Class".into());
        kgw.spec.env = vec![k8s_openapi::api::core::v1::EnvVar {
            name: "A".into(),
            value: Some("x".into()),
            value_from: Some(Default::default()),
        }];
        kgw.spec.placement.topology_spread_constraints =
            vec![k8s_openapi::api::core::v1::TopologySpreadConstraint {
                max_skew: 0,
                topology_key: "topology.kubernetes.io/zone".into(),
                when_unsatisfiable: "Sometimes".into(),
                ..Default::default()
            }];
        assert_eq!(
            fields(&kgw),
            [
                "spec.storage.storageClassName",
                "spec.env[0]",
                "spec.placement.topologySpreadConstraints[0].maxSkew",
                "spec.placement.topologySpreadConstraints[0].whenUnsatisfiable"
            ]
        );
        kgw.spec.storage.storage_class_name = Some("fast.ssd-1".into());
        assert!(is_dns1123_subdomain("fast.ssd-1") && !is_dns1123_subdomain("a..b"));
    }
}
