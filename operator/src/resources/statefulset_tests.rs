//! StatefulSet builder tests: identity, probes, placement defaults, Pod Security, claims.

use super::*;
use crate::fixtures::KafkaGatewayExt;
use k8s_openapi::api::core::v1::{Toleration, TopologySpreadConstraint};

#[test]
fn pods_run_as_the_image_user_with_a_writable_data_volume() {
    let kgw = KafkaGateway::test();
    let names = Names::of(&kgw).unwrap();
    let sts = build(&kgw, &names, 1).unwrap();
    let sc = pod_of(&sts)
        .security_context
        .as_ref()
        .expect("pod security context");
    assert_eq!(
        (sc.run_as_user, sc.fs_group, sc.run_as_non_root),
        (Some(65532), Some(65532), Some(true))
    );
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
    assert_eq!(
        mounts,
        [DATA_DIR, CONFIG_DIR, crate::resources::tokens::TOKENS_DIR]
    );
    // The tokens come from the generated Secret, readable by the gateway's group only.
    let tokens = pod_of(&sts)
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref())
        .expect("tokens volume");
    assert_eq!(
        (tokens.secret_name.as_deref(), tokens.default_mode),
        (Some("kgw-tokens"), Some(0o440))
    );
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
    assert_eq!(
        pod.topology_spread_constraints.as_ref().unwrap().len(),
        1,
        "the spec's replace the default"
    );
    let custom = Affinity {
        node_affinity: Some(Default::default()),
        ..Affinity::default()
    };
    kgw.spec.placement.affinity = Some(custom.clone());
    assert_eq!(pod_of(&build(&kgw, &names, 1).unwrap()).affinity, Some(custom));
}

#[test]
fn pods_spread_over_nodes_and_zones_by_default_without_blocking_scheduling() {
    let kgw = KafkaGateway::test().with_replicas(3);
    let names = Names::of(&kgw).unwrap();
    let sts = build(&kgw, &names, 3).unwrap();
    let pod = pod_of(&sts);
    let anti = pod.affinity.as_ref().unwrap().pod_anti_affinity.as_ref().unwrap();
    assert!(anti.required_during_scheduling_ignored_during_execution.is_none());
    let preferred = &anti
        .preferred_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()[0];
    assert_eq!(preferred.pod_affinity_term.topology_key, "kubernetes.io/hostname");
    assert_eq!(
        preferred
            .pod_affinity_term
            .label_selector
            .as_ref()
            .unwrap()
            .match_labels,
        Some(names.selector_labels())
    );
    let spread = &pod.topology_spread_constraints.as_ref().unwrap()[0];
    assert_eq!(
        (
            spread.topology_key.as_str(),
            spread.when_unsatisfiable.as_str(),
            spread.max_skew
        ),
        ("topology.kubernetes.io/zone", "ScheduleAnyway", 1)
    );
}

/// The checks of the Pod Security Standards' "restricted" profile (v1.25+) that a pod of this
/// shape can fail, applied to every container.
fn restricted_violations(pod: &PodSpec) -> Vec<String> {
    let mut out = Vec::new();
    let psc = pod.security_context.clone().unwrap_or_default();
    let seccomp_ok = |p: &Option<SeccompProfile>| {
        p.as_ref()
            .is_some_and(|p| p.type_ == "RuntimeDefault" || p.type_ == "Localhost")
    };
    for c in &pod.containers {
        let sc = c.security_context.clone().unwrap_or_default();
        if sc.allow_privilege_escalation != Some(false) {
            out.push(format!("{}: allowPrivilegeEscalation != false", c.name));
        }
        let caps = sc.capabilities.clone().unwrap_or_default();
        if !caps.drop.unwrap_or_default().iter().any(|d| d == "ALL") {
            out.push(format!("{}: capabilities.drop lacks ALL", c.name));
        }
        if caps
            .add
            .unwrap_or_default()
            .iter()
            .any(|a| a != "NET_BIND_SERVICE")
        {
            out.push(format!("{}: adds capabilities", c.name));
        }
        if sc.run_as_non_root != Some(true) && psc.run_as_non_root != Some(true) {
            out.push(format!("{}: runAsNonRoot", c.name));
        }
        if !seccomp_ok(&sc.seccomp_profile) && !seccomp_ok(&psc.seccomp_profile) {
            out.push(format!("{}: seccompProfile", c.name));
        }
        if sc.privileged == Some(true) || sc.run_as_user == Some(0) {
            out.push(format!("{}: privileged or root", c.name));
        }
    }
    if psc.run_as_user == Some(0) || pod.host_network == Some(true) || pod.host_pid == Some(true) {
        out.push("pod: root or host namespaces".into());
    }
    for v in pod.volumes.iter().flatten() {
        if v.host_path.is_some() {
            out.push(format!("volume {}: hostPath", v.name));
        }
    }
    out
}

#[test]
fn pods_pass_the_restricted_pod_security_profile() {
    let kgw = KafkaGateway::test().with_replicas(3);
    let names = Names::of(&kgw).unwrap();
    let sts = build(&kgw, &names, 3).unwrap();
    assert_eq!(restricted_violations(pod_of(&sts)), Vec::<String>::new());
}

/// The StatefulSet as the API server returns it: the claim template gains `volumeMode`,
/// `apiVersion`/`kind` and a `status`, and the quantity may be re-emitted canonically.
fn as_returned(mut sts: StatefulSet, size: &str) -> StatefulSet {
    let claim = &mut sts
        .spec
        .as_mut()
        .unwrap()
        .volume_claim_templates
        .as_mut()
        .unwrap()[0];
    let spec = claim.spec.as_mut().unwrap();
    spec.volume_mode = Some("Filesystem".into());
    spec.resources
        .as_mut()
        .unwrap()
        .requests
        .as_mut()
        .unwrap()
        .insert("storage".into(), Quantity(size.into()));
    claim.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
        phase: Some("Pending".into()),
        ..Default::default()
    });
    sts
}

#[test]
fn claims_compare_by_what_the_spec_sets_not_by_api_server_defaults() {
    let mut kgw = KafkaGateway::test();
    kgw.spec.storage.size = "1024Mi".into();
    let names = Names::of(&kgw).unwrap();
    let desired = build(&kgw, &names, 1).unwrap();
    assert_eq!(
        claim_mismatch(&desired, &as_returned(desired.clone(), "1Gi")),
        None
    );

    let mut bigger = kgw.clone();
    bigger.spec.storage.size = "5Gi".into();
    bigger.spec.storage.storage_class_name = Some("fast".into());
    let wanted = build(&bigger, &names, 1).unwrap();
    let diff = claim_mismatch(&wanted, &as_returned(desired, "1Gi")).expect("a real change");
    assert!(diff.contains("asks 5Gi of fast"), "{diff}");
    assert!(diff.contains("have 1Gi of the default class"), "{diff}");
}
