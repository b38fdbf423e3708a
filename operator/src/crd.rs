//! The `KafkaGateway` custom resource (v1alpha1): spec, status and the schema rules the API server
//! enforces (schemars bounds plus CEL `x-kubernetes-validations` with readable messages).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrBool, ValidationRule,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the resource.
pub const GROUP: &str = "kafkagateway.seaweedfs.io";
/// Largest partition count of a topic (SeaweedMQ's ring has 2520 slots).
pub const MAX_PARTITIONS: i32 = kafka_gateway::storage::seaweedmq::MAX_PARTITIONS;
/// Most topics one resource may declare (bounds the cost of the CEL rules).
pub const MAX_TOPICS: u32 = 1000;
/// Longest resource name: the StatefulSet controller labels each pod with
/// `controller-revision-hash: <name>-<10-character hash>`, and label values stop at 63 characters.
/// (The headless Service `<name>-headless` needs at most 54.)
pub const MAX_NAME_LENGTH: i64 = 52;
/// A DNS-1035 label: the Services are named after the resource.
pub const NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// A DNS-1123 subdomain (storage class names).
pub const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A non-negative Kubernetes quantity (`resource.Quantity`'s grammar without a sign).
pub const QUANTITY_PATTERN: &str =
    r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$";

/// A gateway cluster: `replicas` Kafka-compatible gateway pods forming one raft cluster over a
/// SeaweedMQ, with the listed topics created in SeaweedMQ.
// kube-derive's repeated `printcolumn(...)` keys look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kafkagateway.seaweedfs.io",
    version = "v1alpha1",
    kind = "KafkaGateway",
    plural = "kafkagateways",
    shortname = "kgw",
    category = "kafka",
    namespaced,
    status = "KafkaGatewayStatus",
    derive = "PartialEq",
    doc = "A Kafka-wire-compatible gateway cluster over SeaweedMQ",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Bootstrap",
        type_ = "string",
        json_path = ".status.bootstrap",
        priority = "1"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.metrics.port != self.listener.port && self.metrics.port != self.listener.clusterPort",
        "message": "metrics.port must differ from listener.port and listener.clusterPort (all three are ports of the headless Service)",
        "fieldPath": ".metrics.port"
    },
    {
        "rule": "self.listener.clusterPort != self.listener.port",
        "message": "listener.clusterPort must differ from listener.port",
        "fieldPath": ".listener.clusterPort"
    }
]))]
pub struct KafkaGatewaySpec {
    /// Gateway pods (raft members). Scale with `kubectl scale` or an HPA.
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// Gateway container image.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Container resources of each gateway pod (requests and limits are Kubernetes quantities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Where the SeaweedMQ cluster is.
    pub seaweedmq: SeaweedMqSpec,
    /// Kafka listener and how pods advertise themselves.
    #[serde(default)]
    pub listener: ListenerSpec,
    /// Volume for the raft log and gateway metadata of each pod.
    #[serde(default)]
    pub storage: RaftStorageSpec,
    /// Topics created and kept in SeaweedMQ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub topics: Vec<TopicSpec>,
    /// What happens to a topic in SeaweedMQ once it is removed from `topics`.
    #[serde(default)]
    pub topic_deletion_policy: TopicDeletionPolicy,
    /// Metrics port and Prometheus Operator integration.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// Pod placement.
    #[serde(default)]
    pub placement: PlacementSpec,
    /// PodDisruptionBudget of the gateway pods.
    #[serde(default)]
    pub pdb: PdbSpec,
    /// Extra environment variables of the gateway container (`KAFKA_GATEWAY_*` tune the gateway).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Cluster DNS domain used in stable pod addresses.
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
    /// The closed control plane: the cluster and admin tokens, and the NetworkPolicy.
    #[serde(default)]
    pub security: SecuritySpec,
}

/// Control-plane security: who may talk raft to the gateways and change their membership.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySpec {
    /// A Secret in the gateway's namespace with the keys `cluster-token` (the shared secret of
    /// raft peer calls) and `admin-token` (the bearer token of the mutating admin endpoints),
    /// 16 to 4096 visible ASCII characters each. When absent, the operator generates the Secret
    /// `<name>-tokens` once (random, 256 bits each) and keeps it; deleting it rotates both tokens
    /// at the next reconcile (restart the pods then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub tokens_secret: Option<String>,
    /// The NetworkPolicy of the gateway pods.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
}

/// The NetworkPolicy limiting who reaches the gateway pods' raft and admin ports. The Kafka port
/// stays open to everyone; the raft port admits the gateway pods only; the admin port admits the
/// gateway pods, the operator and `metricsFrom` (kubelet probes come from the node, which
/// NetworkPolicies always allow).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy (enforced only by network plugins that implement policies).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Further sources admitted to the admin port, typically Prometheus, which scrapes
    /// `/metrics` there (e.g. `- namespaceSelector: {matchLabels: {kubernetes.io/metadata.name:
    /// monitoring}}`). Without them, only the gateway pods and the operator reach the admin port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub metrics_from: Vec<NetworkPolicyPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            metrics_from: Vec::new(),
        }
    }
}

/// Image pull policy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when absent.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// SeaweedMQ discovery: masters (preferred) or brokers.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.masters) && size(self.masters) > 0) || (has(self.brokers) && size(self.brokers) > 0)",
    "message": "seaweedmq needs at least one master or broker address"
}]))]
pub struct SeaweedMqSpec {
    /// Master addresses, `host:port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub masters: Vec<String>,
    /// Broker addresses, `host:port`, used when no masters are given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub brokers: Vec<String>,
}

impl SeaweedMqSpec {
    /// A stable key identifying the cluster these endpoints reach.
    pub fn key(&self) -> String {
        format!("m={};b={}", self.masters.join(","), self.brokers.join(","))
    }
}

/// How a pod advertises its Kafka address in Metadata.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AdvertisedAddress {
    /// The pod IP (downward API); clients need routes to pod IPs.
    #[default]
    PodIP,
    /// The stable pod DNS name `<pod>.<name>-headless.<ns>.svc.<domain>`.
    PodDNS,
}

/// Kafka listener settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSpec {
    /// Kafka port.
    #[serde(default = "default_kafka_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Raft peer port.
    #[serde(default = "default_cluster_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub cluster_port: i32,
    /// Address advertised to clients.
    #[serde(default)]
    pub advertised_address: AdvertisedAddress,
}

impl Default for ListenerSpec {
    fn default() -> Self {
        Self {
            port: default_kafka_port(),
            cluster_port: default_cluster_port(),
            advertised_address: AdvertisedAddress::default(),
        }
    }
}

/// Per-pod persistent volume for raft data.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RaftStorageSpec {
    /// Volume size (a Kubernetes quantity, e.g. `1Gi`). Volume claims are immutable: a change
    /// applies to new clusters only and is reported by the `StorageUpToDate` condition.
    #[serde(default = "default_storage_size")]
    #[schemars(length(max = 64), regex(pattern = QUANTITY_PATTERN))]
    pub size: String,
    /// Storage class; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub storage_class_name: Option<String>,
}

impl Default for RaftStorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// One topic kept in SeaweedMQ.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Kafka topic name: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
    #[schemars(
        length(min = 1, max = 249),
        extend("x-kubernetes-validations" = [{
            "rule": "self.matches('^[a-zA-Z0-9._-]+$') && self != '.' && self != '..'",
            "message": "topic names are 1 to 249 characters of [a-zA-Z0-9._-], and not '.' or '..'"
        }])
    )]
    pub name: String,
    /// Partition count, fixed once the topic exists: SeaweedMQ can neither add nor remove
    /// partitions of a topic without losing data, so a change is refused.
    #[schemars(
        range(min = 1, max = 2520),
        extend("x-kubernetes-validations" = [{
            "rule": "self == oldSelf",
            "message": "partitions cannot change once the topic exists (SeaweedMQ can neither add nor remove partitions); delete and re-create the topic instead"
        }])
    )]
    pub partitions: i32,
    /// Kafka topic configs (`retention.ms`, `cleanup.policy`, ...); others keep their defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub config: BTreeMap<String, String>,
}

/// What the operator does with topics removed from the spec.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TopicDeletionPolicy {
    /// Leave them in SeaweedMQ.
    #[default]
    Retain,
    /// Delete them (with their data) from SeaweedMQ.
    Delete,
}

/// Metrics settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Admin HTTP port: `/metrics`, `/healthz`, `/readyz` and the cluster admin API.
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Create a Prometheus Operator ServiceMonitor (when its CRD is installed).
    #[serde(default)]
    pub service_monitor: bool,
    /// Scrape interval of the ServiceMonitor, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<String>,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        Self {
            port: default_admin_port(),
            service_monitor: false,
            scrape_interval: None,
        }
    }
}

/// Pod placement.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// Node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Affinity rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Topology spread constraints (the operator fills in the label selector when absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
}

/// PodDisruptionBudget settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PdbSpec {
    /// Create the PDB.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Pods that may be down at once; a raft majority must stay up, so keep it below half.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

impl Default for PdbSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_unavailable: None,
        }
    }
}

/// Observed state, written by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaGatewayStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods of the StatefulSet.
    #[serde(default)]
    pub replicas: i32,
    /// Ready pods.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the pods (for the scale subresource and HPAs).
    #[serde(default)]
    pub selector: String,
    /// Ready, Progressing, Degraded and TopicsReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per-topic state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<TopicStatus>,
    /// Bootstrap address for Kafka clients (`host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
}

/// State of one topic.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// Topic name.
    pub name: String,
    /// Outcome of the last reconcile.
    pub state: TopicState,
    /// Partitions in SeaweedMQ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Why the topic is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Outcome of a topic reconcile.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TopicState {
    /// Exists with the declared partitions and configs.
    Ready,
    /// A change was refused (partition decrease, invalid config); the topic is otherwise intact.
    Refused,
    /// SeaweedMQ failed; retried.
    Error,
}

fn default_cluster_domain() -> String {
    "cluster.local".into()
}
fn default_kafka_port() -> i32 {
    9092
}
fn default_cluster_port() -> i32 {
    9645
}
fn default_admin_port() -> i32 {
    9644
}
fn default_storage_size() -> String {
    "1Gi".into()
}
fn default_true() -> bool {
    true
}

/// The CRD: kube-derive's schema plus the rules it cannot attach to a field, namely the name
/// restrictions (`metadata.name` is not a field of the spec) and the quantity pattern of
/// `resources` (a `k8s-openapi` type).
///
/// Structural schemas may restrict `metadata.name` (and nothing else in `metadata`); a root rule
/// may read it. The length is a schema bound (reported once), the DNS-1035 shape a CEL rule with a
/// readable message.
pub fn crd() -> CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = KafkaGateway::crd();
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        root.x_kubernetes_validations = Some(vec![ValidationRule {
            rule: format!("self.metadata.name.matches('{NAME_PATTERN}')"),
            message: Some(format!(
                "metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting \
                 with a letter, ending with a letter or digit): the gateway's Services are named after it; \
                 at most {MAX_NAME_LENGTH} characters"
            )),
            field_path: Some(".metadata.name".into()),
            ..ValidationRule::default()
        }]);
        let properties = root.properties.get_or_insert_with(BTreeMap::new);
        let name = JSONSchemaProps {
            type_: Some("string".into()),
            max_length: Some(MAX_NAME_LENGTH),
            ..JSONSchemaProps::default()
        };
        properties.insert(
            "metadata".into(),
            JSONSchemaProps {
                type_: Some("object".into()),
                properties: Some(BTreeMap::from([("name".to_string(), name)])),
                ..JSONSchemaProps::default()
            },
        );
        let resources = properties
            .get_mut("spec")
            .and_then(|spec| spec.properties.as_mut())
            .and_then(|spec| spec.get_mut("resources"))
            .and_then(|resources| resources.properties.as_mut());
        for map in resources.into_iter().flat_map(|r| r.values_mut()) {
            if let Some(JSONSchemaPropsOrBool::Schema(value)) = map.additional_properties.as_mut() {
                if value.x_kubernetes_int_or_string == Some(true) {
                    value.pattern = Some(QUANTITY_PATTERN.into());
                }
            }
        }
    }
    crd
}

/// The CRD as YAML, as checked into `crds/kafkagateway.yaml`.
///
/// # Errors
/// When the CRD cannot be serialized (never for the derived type).
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(&crd())
}

#[cfg(test)]
#[path = "crd_tests.rs"]
mod tests;
