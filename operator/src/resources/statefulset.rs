//! The StatefulSet running the gateway pods.
//!
//! Each pod learns its node id from its ordinal (the `apps.kubernetes.io/pod-index` label, through
//! the downward API) and advertises its pod IP or stable DNS name; raft data lives on a per-pod PVC.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    advertised_listener, child_meta, configmap, Names, CONFIG_DIR, CONFIG_FILE, CONFIG_HASH_ANNOTATION,
    DATA_DIR,
};
use crate::crd::KafkaGateway;
use crate::Result;

/// UID of the gateway image's user (distroless `nonroot`).
const GATEWAY_UID: i64 = 65532;

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
        ]),
        startup_probe: Some(http_probe("/healthz", 2, 60)),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", 5, 2)),
        ..Container::default()
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
    let mut spread = spec.placement.topology_spread_constraints.clone();
    for constraint in &mut spread {
        if constraint.label_selector.is_none() {
            constraint.label_selector = Some(LabelSelector {
                match_labels: Some(names.selector_labels()),
                ..LabelSelector::default()
            });
        }
    }
    let pod = PodSpec {
        containers: vec![container(kgw, names)],
        volumes: Some(vec![Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        affinity: spec.placement.affinity.clone(),
        tolerations: (!spec.placement.tolerations.is_empty()).then(|| spec.placement.tolerations.clone()),
        node_selector: (!spec.placement.node_selector.is_empty())
            .then(|| spec.placement.node_selector.clone()),
        topology_spread_constraints: (!spread.is_empty()).then_some(spread),
        termination_grace_period_seconds: Some(60),
        // The gateway image runs as the distroless `nonroot` user; fsGroup makes the raft data
        // volume writable by it.
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(GATEWAY_UID),
            fs_group: Some(GATEWAY_UID),
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
            selector: LabelSelector {
                match_labels: Some(names.selector_labels()),
                ..LabelSelector::default()
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::KafkaGatewayExt;
    use k8s_openapi::api::core::v1::{Toleration, TopologySpreadConstraint};

    #[test]
    fn pods_run_as_the_image_user_with_a_writable_data_volume() {
        let kgw = KafkaGateway::test();
        let names = Names::of(&kgw).unwrap();
        let sts = build(&kgw, &names, 1).unwrap();
        let sc = pod_of(&sts).security_context.as_ref().expect("pod security context");
        assert_eq!((sc.run_as_user, sc.fs_group, sc.run_as_non_root), (Some(65532), Some(65532), Some(true)));
    }

    fn pod_of(sts: &StatefulSet) -> &PodSpec {
        sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn env_of<'a>(sts: &'a StatefulSet, name: &str) -> &'a EnvVar {
        pod_of(sts).containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
            .expect(name)
    }

    #[test]
    fn identity_comes_from_the_ordinal_and_downward_api() {
        let kgw = KafkaGateway::test().with_replicas(3);
        let names = Names::of(&kgw).unwrap();
        let sts = build(&kgw, &names, 3).unwrap();
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("kgw-headless"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let node_id = env_of(&sts, "KAFKA_GATEWAY_NODE_ID").value_from.as_ref().unwrap();
        assert_eq!(
            node_id.field_ref.as_ref().unwrap().field_path,
            "metadata.labels['apps.kubernetes.io/pod-index']"
        );
        let pod_ip = env_of(&sts, "POD_IP").value_from.as_ref().unwrap();
        assert_eq!(pod_ip.field_ref.as_ref().unwrap().field_path, "status.podIP");
        assert_eq!(
            env_of(&sts, "KAFKA_GATEWAY_ADVERTISED_LISTENER").value.as_deref(),
            Some("$(POD_IP):9092")
        );
        // $(VAR) expansion only sees variables defined earlier in the list.
        let env = pod_of(&sts).containers[0].env.as_ref().unwrap();
        let pos = |n: &str| env.iter().position(|e| e.name == n).unwrap();
        assert!(pos("POD_IP") < pos("KAFKA_GATEWAY_ADVERTISED_LISTENER"));
        assert!(pos("POD_NAME") < pos("KAFKA_GATEWAY_ADVERTISED_LISTENER"));
    }

    #[test]
    fn probes_ports_volumes_and_claim() {
        let mut kgw = KafkaGateway::test();
        kgw.spec.storage.size = "5Gi".into();
        kgw.spec.storage.storage_class_name = Some("fast".into());
        let names = Names::of(&kgw).unwrap();
        let sts = build(&kgw, &names, 1).unwrap();
        let c = &pod_of(&sts).containers[0];
        let path = |p: &Option<Probe>| {
            p.as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .clone()
                .unwrap()
        };
        assert_eq!(path(&c.liveness_probe), "/healthz");
        assert_eq!(path(&c.readiness_probe), "/readyz");
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .port,
            IntOrString::String("admin".into())
        );
        let ports: Vec<_> = c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.container_port))
            .collect();
        assert_eq!(
            ports,
            [
                ("kafka".into(), 9092),
                ("cluster".into(), 9645),
                ("admin".into(), 9644)
            ]
        );
        assert_eq!(
            c.args.as_ref().unwrap(),
            &["--config".to_string(), "/etc/kafka-gateway/gateway.toml".into()]
        );
        let mounts: Vec<_> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, [DATA_DIR, CONFIG_DIR]);
        let claim = &sts
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .as_ref()
            .unwrap()[0];
        let claim_spec = claim.spec.as_ref().unwrap();
        assert_eq!(claim.metadata.name.as_deref(), Some(DATA_VOLUME));
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
            Quantity("5Gi".into())
        );
    }

    #[test]
    fn scaling_changes_replicas_but_not_the_pod_template() {
        let kgw = KafkaGateway::test();
        let names = Names::of(&kgw).unwrap();
        let three = build(&kgw, &names, 3).unwrap().spec.unwrap();
        let five = build(&kgw, &names, 5).unwrap().spec.unwrap();
        assert_eq!(five.replicas, Some(5));
        assert_eq!(three.template, five.template);
        let moved = KafkaGateway::test().with_brokers();
        assert_ne!(
            build(&moved, &names, 3).unwrap().spec.unwrap().template,
            three.template
        );
    }

    #[test]
    fn placement_and_extra_env_are_passed_through() {
        let mut kgw = KafkaGateway::test();
        kgw.spec.placement.tolerations = vec![Toleration {
            key: Some("dedicated".into()),
            ..Toleration::default()
        }];
        kgw.spec.placement.node_selector = BTreeMap::from([("disk".into(), "ssd".into())]);
        kgw.spec.placement.topology_spread_constraints = vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "DoNotSchedule".into(),
            ..TopologySpreadConstraint::default()
        }];
        kgw.spec.env = vec![EnvVar {
            name: "RUST_LOG".into(),
            value: Some("debug".into()),
            ..EnvVar::default()
        }];
        let names = Names::of(&kgw).unwrap();
        let sts = build(&kgw, &names, 1).unwrap();
        let pod = pod_of(&sts);
        assert_eq!(
            pod.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        assert_eq!(pod.node_selector.as_ref().unwrap()["disk"], "ssd");
        let spread = &pod.topology_spread_constraints.as_ref().unwrap()[0];
        assert_eq!(
            spread.label_selector.as_ref().unwrap().match_labels,
            Some(names.selector_labels())
        );
        assert_eq!(env_of(&sts, "RUST_LOG").value.as_deref(), Some("debug"));
        assert!(pod.affinity.is_none());
    }
}
