//! The StatefulSet running the gateway pods.
//!
//! Each pod learns its node id from its ordinal (the `apps.kubernetes.io/pod-index` label, through
//! the downward API) and advertises its pod IP or stable DNS name; raft data lives on a per-pod PVC.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource,
    SecurityContext, TopologySpreadConstraint, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::tokens::{self, TOKENS_DIR, TOKENS_VOLUME};
use super::{
    advertised_listener, child_meta, configmap, Names, CONFIG_DIR, CONFIG_FILE, CONFIG_HASH_ANNOTATION,
    DATA_DIR,
};
use crate::crd::KafkaGateway;
use crate::validate::quantity_value;
use crate::Result;

/// UID of the gateway image's user (distroless `nonroot`).
const GATEWAY_UID: i64 = 65532;

/// Node label of the default pod anti-affinity.
const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
/// Node label of the default topology spread.
const ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// Name of the gateway container.
pub const CONTAINER: &str = "gateway";
/// Name of the raft data volume claim template.
pub const DATA_VOLUME: &str = "data";

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn value_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(3),
        ..Probe::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

/// Environment of the gateway container: per-pod identity first, then the user's extras (which
/// may override anything, at their own risk).
fn env(kgw: &KafkaGateway, names: &Names) -> Vec<EnvVar> {
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
        field_env(
            "KAFKA_GATEWAY_NODE_ID",
            "metadata.labels['apps.kubernetes.io/pod-index']",
        ),
        value_env(
            "KAFKA_GATEWAY_ADVERTISED_LISTENER",
            advertised_listener(kgw, names),
        ),
        value_env("KAFKA_GATEWAY_CONFIG", format!("{CONFIG_DIR}/{CONFIG_FILE}")),
    ];
    env.extend(kgw.spec.env.iter().cloned());
    env
}

fn container(kgw: &KafkaGateway, names: &Names) -> Container {
    let spec = &kgw.spec;
    Container {
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(vec!["--config".into(), format!("{CONFIG_DIR}/{CONFIG_FILE}")]),
        env: Some(env(kgw, names)),
        ports: Some(vec![
            container_port("kafka", spec.listener.port),
            container_port("cluster", spec.listener.cluster_port),
            container_port("admin", spec.metrics.port),
        ]),
        resources: spec.resources.clone(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: DATA_VOLUME.into(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: TOKENS_VOLUME.into(),
                mount_path: TOKENS_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        startup_probe: Some(http_probe("/healthz", 2, 60)),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", 5, 2)),
        security_context: Some(container_security_context()),
        ..Container::default()
    }
}

/// What the Pod Security "restricted" profile requires of a container: no privilege escalation,
/// every capability dropped, a non-root user, the runtime's default seccomp profile.
fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    }
}

/// The spec's affinity, or by default a preferred anti-affinity spreading the pods over nodes
/// (a node failure then costs one raft member, not a majority). Preferred, so a one-node cluster
/// still schedules every pod.
fn affinity(kgw: &KafkaGateway, names: &Names) -> Affinity {
    if let Some(affinity) = &kgw.spec.placement.affinity {
        return affinity.clone();
    }
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(selector(names)),
                    topology_key: HOSTNAME_KEY.into(),
                    ..PodAffinityTerm::default()
                },
            }]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// The spec's topology spread constraints (label selector filled in when absent), or by default
/// an even spread over zones that never blocks scheduling (nodes without a zone label still take
/// pods).
fn topology_spread(kgw: &KafkaGateway, names: &Names) -> Vec<TopologySpreadConstraint> {
    let mut spread = kgw.spec.placement.topology_spread_constraints.clone();
    if spread.is_empty() {
        spread.push(TopologySpreadConstraint {
            max_skew: 1,
            topology_key: ZONE_KEY.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            ..TopologySpreadConstraint::default()
        });
    }
    for constraint in &mut spread {
        if constraint.label_selector.is_none() {
            constraint.label_selector = Some(selector(names));
        }
    }
    spread
}

fn selector(names: &Names) -> LabelSelector {
    LabelSelector {
        match_labels: Some(names.selector_labels()),
        ..LabelSelector::default()
    }
}

fn data_claim(kgw: &KafkaGateway, names: &Names) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(names.selector_labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: kgw.spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(kgw.spec.storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The StatefulSet for `replicas` pods.
///
/// Pods start in parallel (a raft cluster needs a quorum before any member is ready, so ordered
/// start would wait forever). The pod template carries a hash of the restart-relevant config, so a
/// config change rolls the pods while a scale does not.
///
/// # Errors
/// [`crate::Error::MissingObjectKey`] when `kgw` lacks a name, namespace or uid.
pub fn build(kgw: &KafkaGateway, names: &Names, replicas: i32) -> Result<StatefulSet> {
    let spec = &kgw.spec;
    let hash = configmap::restart_hash(&configmap::entries(kgw, names, replicas));
    let pod = PodSpec {
        containers: vec![container(kgw, names)],
        volumes: Some(vec![
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names.config(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            // The cluster and admin tokens; readable by the gateway's group (fsGroup) only.
            Volume {
                name: TOKENS_VOLUME.into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(tokens::secret_name(kgw, names)),
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        affinity: Some(affinity(kgw, names)),
        tolerations: (!spec.placement.tolerations.is_empty()).then(|| spec.placement.tolerations.clone()),
        node_selector: (!spec.placement.node_selector.is_empty())
            .then(|| spec.placement.node_selector.clone()),
        topology_spread_constraints: Some(topology_spread(kgw, names)),
        termination_grace_period_seconds: Some(60),
        // The gateway image runs as the distroless `nonroot` user; fsGroup makes the raft data
        // volume writable by it. With the container's context this passes Pod Security
        // "restricted".
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(GATEWAY_UID),
            run_as_group: Some(GATEWAY_UID),
            fs_group: Some(GATEWAY_UID),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    };
    let mut labels = names.labels();
    labels.extend(names.selector_labels());
    Ok(StatefulSet {
        metadata: child_meta(kgw, names, names.name.clone())?,
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names.headless()),
            pod_management_policy: Some("Parallel".into()),
            selector: selector(names),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), hash)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![data_claim(kgw, names)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    })
}

/// The storage request and class of the data claim template.
fn claim_of(sts: &StatefulSet) -> Option<(String, Option<String>)> {
    let claim = sts
        .spec
        .as_ref()?
        .volume_claim_templates
        .as_ref()?
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(DATA_VOLUME))?;
    let spec = claim.spec.as_ref()?;
    let size = spec
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?
        .0
        .clone();
    Some((size, spec.storage_class_name.clone()))
}

/// How the existing StatefulSet's data claim differs from the desired one, comparing only what
/// the spec sets (size by value, class): the API server adds defaults (`volumeMode`, `status`,
/// `apiVersion`) that are no difference. `None` when they match.
pub fn claim_mismatch(desired: &StatefulSet, current: &StatefulSet) -> Option<String> {
    let (want_size, want_class) = claim_of(desired)?;
    let Some((has_size, has_class)) = claim_of(current) else {
        return Some("the existing StatefulSet has no data volume claim".into());
    };
    let same_size = match (quantity_value(&want_size), quantity_value(&has_size)) {
        (Some(a), Some(b)) => a == b,
        _ => want_size == has_size,
    };
    if same_size && want_class == has_class {
        return None;
    }
    let class = |c: &Option<String>| c.clone().unwrap_or_else(|| "the default class".into());
    Some(format!(
        "spec.storage asks {want_size} of {}, the existing volume claims have {has_size} of {}; volume claim \
         templates are immutable, so the change applies only to a new KafkaGateway",
        class(&want_class),
        class(&has_class)
    ))
}

#[cfg(test)]
#[path = "statefulset_tests.rs"]
mod tests;
