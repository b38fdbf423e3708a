"""Chart, examples and dashboard checks with real Helm (PyPI helm-sdkpy embeds Helm's Go library).

- `helm lint` (Lint action) on the chart and on copies whose values.yaml is the defaults merged
  with each non-default values file; lint renders every template and checks values.schema.json.
- `helm install` (Install action) against tests/chart/fake_apiserver.py, which records the objects
  Helm creates: the rendered manifests are asserted field by field (security context, RBAC rules,
  probes, metrics objects, the example KafkaGateway).
- Bad values must fail lint (schema) and install.
- examples/*.yaml and docs/grafana-dashboard.json are checked against the CRD, the chart and the
  metric names the gateway and operator register. docs/kubernetes.md uses these same files.

Run: python3 tests/chart/test_chart.py (scripts/test.sh installs helm-sdkpy; the Rust test binary
`chart` in the tests crate runs this file).
"""

import asyncio
import copy
import json
import re
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

import helm_sdkpy as helm
import jsonschema
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from fake_apiserver import FakeApiServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kafka-gateway-operator"
EXAMPLES = ROOT / "examples"
VALUES_DIR = Path(__file__).parent / "values"
NAMESPACE = "kafka"
GROUP = "kafkagateway.seaweedfs.io"
LINT_ERROR = 3  # helm's support.ErrorSev
LINT_WARNING = 2


def load_yaml(path):
    return yaml.safe_load(Path(path).read_text())


def deep_merge(base, override):
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


DEFAULTS = load_yaml(CHART / "values.yaml")
CRD = load_yaml(ROOT / "crds" / "kafkagateway.yaml")
CRD_VERSION = CRD["spec"]["versions"][0]
KGW_SCHEMA = CRD_VERSION["schema"]["openAPIV3Schema"]


def lint_with(values):
    """Lints a copy of the chart whose values.yaml is `values`; returns helm's messages."""
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / CHART.name
        shutil.copytree(CHART, chart)
        (chart / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
        result = asyncio.run(helm.Lint(helm.Configuration(namespace=NAMESPACE)).run(str(chart)))
    return result.get("Messages") or []


def install(values, kube_minor=33):
    """Installs the chart with `values` into a fake API server of Kubernetes 1.`kube_minor`;
    returns (objects, release)."""
    server = FakeApiServer(version=kube_minor).start()
    try:
        config = helm.Configuration(namespace=NAMESPACE, kubeconfig=server.kubeconfig(NAMESPACE))
        release = asyncio.run(
            helm.Install(config).run("kgo", str(CHART), values=values, wait=False, timeout=30)
        )
        return server.created, release
    finally:
        server.stop()


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def one(objects, kind, name=None):
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def validate_kgw(obj):
    """Structural validation against the CRD's openAPIV3Schema (CEL rules need an API server)."""
    jsonschema.validate(obj, KGW_SCHEMA)


# Exactly what operator/src/controller.rs and leader.rs call; see templates/rbac.yaml.
EXPECTED_OPERATOR_RULES = [
    ([GROUP], ["kafkagateways"], None, ["get", "list", "watch", "patch"]),
    ([GROUP], ["kafkagateways/status"], None, ["get", "patch"]),
    ([GROUP], ["kafkagateways/finalizers"], None, ["update"]),
    (["apps"], ["statefulsets"], None, ["get", "list", "watch", "create", "patch"]),
    ([""], ["services", "configmaps"], None, ["list", "watch", "create", "patch"]),
    (["policy"], ["poddisruptionbudgets"], None, ["list", "watch", "create", "patch", "delete"]),
    (["networking.k8s.io"], ["networkpolicies"], None, ["list", "watch", "create", "patch", "delete"]),
    ([""], ["secrets"], None, ["get", "create"]),
    (["monitoring.coreos.com"], ["servicemonitors"], None, ["create", "patch", "delete"]),
    (["apiextensions.k8s.io"], ["customresourcedefinitions"], ["servicemonitors.monitoring.coreos.com"], ["get"]),
    (["events.k8s.io"], ["events"], None, ["create", "patch"]),
]


def pod_labels(deployment):
    return deployment["spec"]["template"]["metadata"]["labels"]


def rule_tuples(role):
    return [
        (r["apiGroups"], r["resources"], r.get("resourceNames"), r["verbs"]) for r in role["rules"]
    ]


class CrdSync(unittest.TestCase):
    def test_chart_crds_are_the_generated_crds(self):
        shipped = (CHART / "crds" / "kafkagateway.yaml").read_text()
        generated = (ROOT / "crds" / "kafkagateway.yaml").read_text()
        self.assertEqual(
            shipped, generated,
            "charts/kafka-gateway-operator/crds/kafkagateway.yaml differs from crds/kafkagateway.yaml; "
            "copy it: cp crds/kafkagateway.yaml charts/kafka-gateway-operator/crds/",
        )
        self.assertEqual(sorted(p.name for p in (CHART / "crds").iterdir()), ["kafkagateway.yaml"])


class Lint(unittest.TestCase):
    def assert_clean(self, values, what):
        messages = lint_with(values)
        bad = [m for m in messages if m["Severity"] >= LINT_WARNING]
        self.assertEqual(bad, [], f"lint of {what}: {messages}")

    def test_defaults_lint_clean(self):
        self.assert_clean(DEFAULTS, "defaults")

    def test_non_default_values_files_lint_clean(self):
        files = [
            EXAMPLES / "values-example-gateway.yaml",
            EXAMPLES / "values-production.yaml",
            VALUES_DIR / "metrics-off.yaml",
            VALUES_DIR / "existing-serviceaccount.yaml",
        ]
        for path in files:
            with self.subTest(values=path.name):
                self.assert_clean(deep_merge(DEFAULTS, load_yaml(path)), path.name)

    def test_bad_values_fail_lint_and_install(self):
        bad = {
            "zero replicas": {"replicaCount": 0},
            "unknown pull policy": {"image": {"pullPolicy": "Sometimes"}},
            "tag with a space": {"image": {"tag": "1.0 beta"}},
            "empty repository": {"image": {"repository": ""}},
            "privilege escalation": {"securityContext": {"allowPrivilegeEscalation": True}},
            "writable root fs": {"securityContext": {"readOnlyRootFilesystem": False}},
            "capabilities kept": {"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
            "root pod": {"podSecurityContext": {"runAsNonRoot": False}},
            "admin port out of range": {"adminPort": 70000},
            "short lease": {"leaderElection": {"leaseSeconds": 1}},
            "bad scrape interval": {"metrics": {"serviceMonitor": {"interval": "soon"}}},
            "unknown top-level key": {"replicas": 3},
            "string for a bool": {"metrics": {"enabled": "yes"}},
            "example topic without partitions": {
                "exampleGateway": {"enabled": True, "spec": {"topics": [{"name": "t", "partitions": 0}]}}
            },
            "example topic with a bad name": {
                "exampleGateway": {"enabled": True, "spec": {"topics": [{"name": "a/b", "partitions": 1}]}}
            },
            "two replicas without leader election": {"replicaCount": 2, "leaderElection": {"enabled": False}},
            "example gateway name not a DNS-1035 label": {"exampleGateway": {"enabled": True, "name": "9gw"}},
            "example gateway name too long for its pods": {"exampleGateway": {"enabled": True, "name": "g" * 53}},
        }
        for what, override in bad.items():
            with self.subTest(bad=what):
                values = deep_merge(DEFAULTS, override)
                messages = lint_with(values)
                errors = [m for m in messages if m["Severity"] >= LINT_ERROR]
                self.assertTrue(
                    any(m["Path"] == "values.yaml" for m in errors),
                    f"lint accepted bad values ({what}): {messages}",
                )
                with self.assertRaises(helm.InstallError, msg=f"install accepted {what}"):
                    install(override)


class Rendered(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objects, cls.release = install({})

    def test_crd_installed_first_from_crds_dir(self):
        self.assertEqual(self.objects[0]["kind"], "CustomResourceDefinition")
        self.assertEqual(self.objects[0]["spec"], CRD["spec"])

    def test_default_objects(self):
        kinds = sorted(o["kind"] for o in self.objects)
        self.assertEqual(kinds, sorted([
            "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRole", "ClusterRole",
            "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment",
        ]))

    def test_deployment_security_probes_image_env(self):
        dep = one(self.objects, "Deployment", "kgo-kafka-gateway-operator")
        self.assertEqual(dep["metadata"]["namespace"], NAMESPACE)
        pod = dep["spec"]["template"]["spec"]
        self.assertEqual(pod["serviceAccountName"], "kgo-kafka-gateway-operator")
        self.assertEqual(pod["securityContext"]["runAsNonRoot"], True)
        self.assertEqual(pod["securityContext"]["runAsUser"], 65532)
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        (container,) = pod["containers"]
        self.assertEqual(container["image"], "kafka-gateway-operator:0.1.0")
        sc = container["securityContext"]
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertIs(sc["runAsNonRoot"], True)
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        self.assertEqual(container["ports"], [{"name": "admin", "containerPort": 8080, "protocol": "TCP"}])
        for probe in ("livenessProbe", "readinessProbe"):
            self.assertEqual(container[probe]["httpGet"], {"path": "/healthz", "port": "admin"})
        env = {e["name"]: e for e in container["env"]}
        self.assertEqual(env["KAFKA_GATEWAY_OPERATOR_ADMIN_LISTEN"]["value"], "0.0.0.0:8080")
        self.assertEqual(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")
        self.assertEqual(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace")
        self.assertEqual(env["KAFKA_GATEWAY_OPERATOR_LEASE_NAME"]["value"], "kafka-gateway-operator")
        # The operator's own pod labels, for the gateways' NetworkPolicy; they select its pods.
        self.assertEqual(
            env["KAFKA_GATEWAY_OPERATOR_POD_LABELS"]["value"],
            "app.kubernetes.io/name=kafka-gateway-operator,app.kubernetes.io/instance=kgo",
        )
        for pair in env["KAFKA_GATEWAY_OPERATOR_POD_LABELS"]["value"].split(","):
            key, value = pair.split("=")
            self.assertEqual(pod_labels(dep)[key], value)
        # Dependencies (kube, hyper) at warn; the operator's own events at info.
        self.assertEqual(env["RUST_LOG"]["value"], "warn,kafka_gateway_operator=info,kafka_gateway=info")
        self.assertNotIn("args", container)
        self.assertEqual(container["resources"]["requests"], {"cpu": "50m", "memory": "64Mi"})
        self.assertEqual(container["resources"]["limits"], {"memory": "256Mi"})
        self.assertEqual(container["volumeMounts"], [{"name": "tmp", "mountPath": "/tmp"}])

    def test_operator_rbac_is_exactly_what_the_controller_calls(self):
        role = one(self.objects, "ClusterRole", "kgo-kafka-gateway-operator")
        self.assertEqual(rule_tuples(role), EXPECTED_OPERATOR_RULES)
        binding = one(self.objects, "ClusterRoleBinding")
        self.assertEqual(binding["roleRef"]["name"], "kgo-kafka-gateway-operator")
        self.assertEqual(
            binding["subjects"],
            [{"kind": "ServiceAccount", "name": "kgo-kafka-gateway-operator", "namespace": NAMESPACE}],
        )
        lease = one(self.objects, "Role")
        self.assertEqual(lease["metadata"]["namespace"], NAMESPACE)
        self.assertEqual(rule_tuples(lease), [
            (["coordination.k8s.io"], ["leases"], None, ["create"]),
            (["coordination.k8s.io"], ["leases"], ["kafka-gateway-operator"], ["get", "update"]),
        ])

    def test_no_wildcards_and_scale_only_for_users(self):
        for role in by_kind(self.objects, "ClusterRole") + by_kind(self.objects, "Role"):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    self.assertNotIn("*", rule[field], f"{role['metadata']['name']}: {rule}")
        edit = one(self.objects, "ClusterRole", "kgo-kafka-gateway-operator-edit")
        self.assertEqual(edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"], "true")
        self.assertIn(([GROUP], ["kafkagateways/scale"], None, ["get", "update", "patch"]), rule_tuples(edit))
        view = one(self.objects, "ClusterRole", "kgo-kafka-gateway-operator-view")
        self.assertEqual(view["rules"][0]["verbs"], ["get", "list", "watch"])

    def test_metrics_service_selects_the_operator_pods(self):
        svc = one(self.objects, "Service", "kgo-kafka-gateway-operator-metrics")
        dep = one(self.objects, "Deployment")
        self.assertEqual(svc["spec"]["selector"], dep["spec"]["selector"]["matchLabels"])
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        for k, v in svc["spec"]["selector"].items():
            self.assertEqual(pod_labels[k], v)
        self.assertEqual(svc["spec"]["ports"], [{"name": "metrics", "port": 8080, "targetPort": "admin", "protocol": "TCP"}])
        self.assertEqual(svc["metadata"]["labels"]["app.kubernetes.io/component"], "operator")
        self.assertFalse(by_kind(self.objects, "ServiceMonitor"))
        self.assertFalse(by_kind(self.objects, "KafkaGateway"))

    def test_notes_tell_the_next_command(self):
        notes = self.release["info"].get("notes", "")
        self.assertIn("kubectl -n kafka rollout status deployment/kgo-kafka-gateway-operator", notes)
        self.assertIn("kubectl apply -f examples/kafkagateway.yaml", notes)


class RenderedVariants(unittest.TestCase):
    def test_metrics_off_no_leader_election(self):
        objects, _ = install(load_yaml(VALUES_DIR / "metrics-off.yaml"))
        self.assertFalse(by_kind(objects, "Service"))
        self.assertFalse(by_kind(objects, "Role"))
        self.assertEqual(len(by_kind(objects, "ClusterRole")), 1)
        container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(container["args"], ["--no-leader-election"])

    def test_production_values_servicemonitor_and_image(self):
        objects, _ = install(load_yaml(EXAMPLES / "values-production.yaml"))
        dep = one(objects, "Deployment")
        self.assertEqual(dep["spec"]["replicas"], 2)
        pod = dep["spec"]["template"]["spec"]
        self.assertEqual(pod["imagePullSecrets"], [{"name": "registry-credentials"}])
        self.assertEqual(pod["containers"][0]["image"], "registry.example.com/platform/kafka-gateway-operator:0.1.0")
        self.assertEqual(pod["containers"][0]["imagePullPolicy"], "Always")
        monitor = one(objects, "ServiceMonitor")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "prometheus")
        self.assertEqual(monitor["spec"]["endpoints"], [{"port": "metrics", "path": "/metrics", "interval": "15s"}])
        svc = one(objects, "Service")
        self.assertEqual(monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(), True)

    def test_existing_service_account_and_custom_image(self):
        objects, _ = install(load_yaml(VALUES_DIR / "existing-serviceaccount.yaml"))
        self.assertFalse(by_kind(objects, "ServiceAccount"))
        dep = one(objects, "Deployment", "kgw-operator")
        pod = dep["spec"]["template"]["spec"]
        self.assertEqual(pod["serviceAccountName"], "platform-operator")
        self.assertEqual(pod["containers"][0]["image"], "localhost:5000/kafka-gateway-operator:dev-2024.1")
        self.assertEqual(one(objects, "ClusterRoleBinding")["subjects"][0]["name"], "platform-operator")

    def test_example_gateway_values_render_a_valid_kafkagateway(self):
        values = load_yaml(EXAMPLES / "values-example-gateway.yaml")
        objects, release = install(values)
        kgw = one(objects, "KafkaGateway", "events")
        self.assertEqual(kgw["apiVersion"], f"{GROUP}/{CRD_VERSION['name']}")
        self.assertEqual(kgw["metadata"]["namespace"], NAMESPACE)
        self.assertEqual(kgw["spec"], values["exampleGateway"]["spec"])
        validate_kgw(kgw)
        self.assertIn("kubectl -n kafka get kafkagateway events -w", release["info"]["notes"])
        self.assertIn("events.kafka.svc:9092", release["info"]["notes"])


class KubernetesVersions(unittest.TestCase):
    def test_installs_on_kubernetes_1_28_and_refuses_older(self):
        objects, _ = install({}, kube_minor=28)
        self.assertTrue(by_kind(objects, "Deployment"))
        with self.assertRaises(helm.InstallError):
            install({}, kube_minor=27)


class UninstallHook(unittest.TestCase):
    """helm uninstall deletes the operator and its RBAC before custom resources; the pre-delete
    hook deletes the example KafkaGateway first, while the operator can still finalize it."""

    def hooks(self, values):
        _, release = install(values)
        return {(h["kind"], h["name"]): h for h in release.get("hooks") or []}

    def test_no_hook_without_the_example_gateway(self):
        self.assertEqual(self.hooks({}), {})

    def test_example_gateway_is_deleted_by_a_pre_delete_job_first(self):
        hooks = self.hooks(load_yaml(EXAMPLES / "values-example-gateway.yaml"))
        name = "kgo-kafka-gateway-operator-uninstall"
        self.assertEqual(sorted(kind for kind, _ in hooks), ["Job", "Role", "RoleBinding", "ServiceAccount"])
        for (kind, hook_name), hook in hooks.items():
            self.assertEqual(hook_name, name)
            self.assertEqual(hook["events"], ["pre-delete"], kind)
            self.assertIn("hook-succeeded", hook["delete_policies"], kind)
            self.assertEqual(hook.get("weight", 0), 0 if kind == "Job" else -10, kind)
        role = yaml.safe_load(hooks[("Role", name)]["manifest"])
        self.assertEqual(rule_tuples(role), [([GROUP], ["kafkagateways"], ["events"], ["get", "delete"])])
        job = yaml.safe_load(hooks[("Job", name)]["manifest"])
        pod = job["spec"]["template"]["spec"]
        self.assertEqual(pod["serviceAccountName"], name)
        self.assertEqual(pod["restartPolicy"], "Never")
        (container,) = pod["containers"]
        self.assertEqual(container["image"], "kafka-gateway-operator:0.1.0")
        self.assertEqual(container["args"], ["delete-gateway", "--namespace=kafka", "--name=events",
                                             "--timeout-seconds=120"])
        self.assertIs(container["securityContext"]["allowPrivilegeEscalation"], False)
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertGreater(job["spec"]["activeDeadlineSeconds"], 120)


class Examples(unittest.TestCase):
    def test_example_kafkagateway_matches_the_crd(self):
        kgw = load_yaml(EXAMPLES / "kafkagateway.yaml")
        validate_kgw(kgw)
        self.assertEqual(kgw["apiVersion"], f"{GROUP}/{CRD_VERSION['name']}")
        self.assertEqual(kgw["kind"], CRD["spec"]["names"]["kind"])

    def test_schema_validation_catches_mistakes(self):
        kgw = load_yaml(EXAMPLES / "kafkagateway.yaml")
        mistakes = {
            "enum": ("listener", {"port": 9092, "advertisedAddress": "PodDns"}),
            "minimum": ("replicas", 0),
            "type": ("topics", [{"name": "x", "partitions": "6"}]),
        }
        for what, (key, value) in mistakes.items():
            with self.subTest(mistake=what):
                broken = copy.deepcopy(kgw)
                broken["spec"][key] = value
                with self.assertRaises(jsonschema.ValidationError):
                    validate_kgw(broken)

    def test_hpa_targets_the_scale_subresource(self):
        hpa = load_yaml(EXAMPLES / "hpa.yaml")
        kgw = load_yaml(EXAMPLES / "kafkagateway.yaml")
        target = hpa["spec"]["scaleTargetRef"]
        self.assertEqual(target["apiVersion"], kgw["apiVersion"])
        self.assertEqual(target["kind"], kgw["kind"])
        self.assertEqual(target["name"], kgw["metadata"]["name"])
        self.assertEqual(hpa["metadata"]["namespace"], kgw["metadata"]["namespace"])
        scale = CRD_VERSION["subresources"]["scale"]
        self.assertEqual(scale["specReplicasPath"], ".spec.replicas")
        self.assertEqual(scale["labelSelectorPath"], ".status.selector")
        self.assertGreaterEqual(hpa["spec"]["minReplicas"], 1)
        self.assertEqual(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu")
        self.assertIn("cpu", kgw["spec"]["resources"]["requests"])

    def test_prometheus_scrape_config_matches_operator_and_chart_labels(self):
        jobs = {j["job_name"]: j for j in load_yaml(EXAMPLES / "prometheus-scrape.yaml")["scrape_configs"]}
        service_rs = (ROOT / "operator" / "src" / "resources" / "service.rs").read_text()
        mod_rs = (ROOT / "operator" / "src" / "resources" / "mod.rs").read_text()
        role_label = re.search(r'SERVICE_ROLE_LABEL: &str = "([^"]+)"', mod_rs).group(1)
        meta = "__meta_kubernetes_service_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", role_label)
        gateway = {tuple(r["source_labels"]): r for r in jobs["kafka-gateway"]["relabel_configs"]}
        self.assertEqual(gateway[(meta,)]["regex"], "peers")
        self.assertIn('insert(SERVICE_ROLE_LABEL.into(), "peers".into())', service_rs)
        self.assertEqual(gateway[("__meta_kubernetes_endpoint_port_name",)]["regex"], "admin")
        self.assertIn('port("admin", spec.metrics.port)', service_rs)

        objects, _ = install({})
        svc = one(objects, "Service")
        operator = {tuple(r["source_labels"]): r for r in jobs["kafka-gateway-operator"]["relabel_configs"]}
        keep = operator[("__meta_kubernetes_service_label_app_kubernetes_io_name",
                         "__meta_kubernetes_service_label_app_kubernetes_io_component")]
        labels = svc["metadata"]["labels"]
        self.assertTrue(re.fullmatch(keep["regex"], f"{labels['app.kubernetes.io/name']};{labels['app.kubernetes.io/component']}"))
        self.assertEqual(operator[("__meta_kubernetes_endpoint_port_name",)]["regex"], svc["spec"]["ports"][0]["name"])


def registered_metric_names():
    names = set()
    for src in [ROOT / "gateway" / "src", ROOT / "operator" / "src"]:
        for path in src.rglob("*.rs"):
            names.update(re.findall(r'"(kafka_gateway_[a-z_]+)"', path.read_text()))
    return names


class Dashboard(unittest.TestCase):
    def test_dashboard_uses_registered_metrics_and_covers_the_topics(self):
        dash = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
        known = registered_metric_names()
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        self.assertGreaterEqual(len(exprs), 10)
        used = set()
        for expr in exprs:
            for name in re.findall(r"\b(kafka_gateway_[a-z_]+)", expr):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                self.assertIn(base, known, f"{name} in {expr!r} is not registered by the gateway or operator")
                used.add(base)
        for needed in ("kafka_gateway_bytes_in_total", "kafka_gateway_request_duration_seconds",
                       "kafka_gateway_consumer_group_lag", "kafka_gateway_operator_reconcile_failures_total",
                       "kafka_gateway_raft_term", "kafka_gateway_raft_commit_index", "kafka_gateway_groups_owned",
                       "kafka_gateway_smq_wal_bytes", "kafka_gateway_smq_wal_oldest_unflushed_seconds",
                       "kafka_gateway_smq_wal_replayed_records_total"):
            self.assertIn(needed, used)
        rows = [p["title"] for p in dash["panels"] if p["type"] == "row"]
        self.assertEqual(rows, ["Throughput", "Latency", "Consumer lag", "Cluster and raft health",
                                "SeaweedMQ write-ahead log"])
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)))


class Docs(unittest.TestCase):
    def test_guide_uses_the_tested_files(self):
        guide = (ROOT / "docs" / "kubernetes.md").read_text()
        for path in ["examples/kafkagateway.yaml", "examples/hpa.yaml", "examples/prometheus-scrape.yaml",
                     "examples/values-example-gateway.yaml", "examples/values-production.yaml",
                     "docs/grafana-dashboard.json", "charts/kafka-gateway-operator"]:
            self.assertIn(path, guide)
            self.assertTrue((ROOT / path).exists(), path)


if __name__ == "__main__":
    unittest.main(verbosity=2)
