"""A minimal in-memory Kubernetes API server, enough for `helm install` (helm-sdkpy) to run
against it: discovery, namespaced and cluster-scoped CRUD on a fixed set of kinds, and CRDs that
report Established. It records every object created, so tests read exactly what Helm sent after
rendering the chart. Nothing is validated beyond JSON parsing: schema checks are the tests' job.
"""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

# (group, version, plural, kind, namespaced)
RESOURCES = [
    ("", "v1", "namespaces", "Namespace", False),
    ("", "v1", "secrets", "Secret", True),
    ("", "v1", "configmaps", "ConfigMap", True),
    ("", "v1", "services", "Service", True),
    ("", "v1", "serviceaccounts", "ServiceAccount", True),
    ("", "v1", "events", "Event", True),
    ("apps", "v1", "deployments", "Deployment", True),
    ("apps", "v1", "statefulsets", "StatefulSet", True),
    ("batch", "v1", "jobs", "Job", True),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
    ("coordination.k8s.io", "v1", "leases", "Lease", True),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False),
    ("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", True),
    ("kafkagateway.seaweedfs.io", "v1alpha1", "kafkagateways", "KafkaGateway", True),
]

PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)


class FakeApiServer:
    """Serves on 127.0.0.1 (an ephemeral port) until `stop()`; `created` lists objects in order.
    `version` is the Kubernetes minor version /version reports (charts check kubeVersion with it)."""

    def __init__(self, version=33):
        self.version = version
        self.created = []
        self.objects = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, namespace):
        return (
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
            f"clusters:\n- name: fake\n  cluster:\n    server: {self.url}\n"
            "users:\n- name: fake\n  user:\n    token: fake\n"
            f"contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n"
        )

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                """The JSON body, or None for protobuf (client-go's typed clients, e.g. Helm's
                release Secrets), which this server accepts without decoding."""
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if "json" not in (self.headers.get("Content-Type") or ""):
                    return None
                return json.loads(raw or b"{}")

            def _not_found(self, name):
                self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404, "message": f"{name} not found"})

            def _discovery(self, path):
                if path == "/version":
                    return {"major": "1", "minor": str(api.version), "gitVersion": f"v1.{api.version}.0",
                            "platform": "linux/amd64"}
                if path == "/api":
                    return {"kind": "APIVersions", "versions": ["v1"]}
                if path == "/apis":
                    groups = sorted({(g, v) for g, v, *_ in RESOURCES if g})
                    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                        {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                         "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                        for g, v in groups]}
                m = re.match(r"^/(?:api/(v1)|apis/([^/]+)/([^/]+))$", path)
                if not m:
                    return None
                group, version = (m.group(2) or ""), (m.group(1) or m.group(3))
                resources = [
                    {"name": p, "singularName": "", "namespaced": ns, "kind": k,
                     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                    for g, v, p, k, ns in RESOURCES if g == group and v == version]
                if not resources:
                    return None
                gv = f"{group}/{version}" if group else version
                return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

            def _key(self, m):
                return (m.group("group") or "", m.group("plural"), m.group("ns") or "", m.group("name"))

            def do_GET(self):
                path = urlparse(self.path).path
                found = self._discovery(path)
                if found is not None:
                    return self._send(200, found)
                m = PATH.match(path)
                if not m:
                    return self._not_found(path)
                group, plural, ns, name = self._key(m)
                with api.lock:
                    if name is None:
                        items = [o for (g, p, n, _), o in api.objects.items()
                                 if g == group and p == plural and (not ns or n == ns)]
                        return self._send(200, {"kind": "List", "apiVersion": "v1",
                                                "metadata": {"resourceVersion": "1"}, "items": items})
                    obj = api.objects.get((group, plural, ns, name))
                if obj is None:
                    return self._not_found(name)
                self._send(200, obj)

            def _store(self, obj, m, name=None):
                group, plural, ns, _ = self._key(m)
                meta = obj.setdefault("metadata", {})
                meta.setdefault("namespace", ns) if ns else None
                meta.setdefault("uid", f"uid-{len(api.created)}")
                meta["resourceVersion"] = "1"
                if obj.get("kind") == "CustomResourceDefinition":
                    obj["status"] = {"conditions": [
                        {"type": "Established", "status": "True"},
                        {"type": "NamesAccepted", "status": "True"}],
                        "acceptedNames": obj.get("spec", {}).get("names", {})}
                api.objects[(group, plural, ns, name or meta.get("name"))] = obj
                return obj

            def do_POST(self):
                m = PATH.match(urlparse(self.path).path)
                if not m:
                    return self._not_found(self.path)
                obj = self._body()
                if obj is None:
                    return self._send(201, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
                with api.lock:
                    api.created.append(json.loads(json.dumps(obj)))
                    stored = self._store(obj, m)
                self._send(201, stored)

            def do_PUT(self):
                m = PATH.match(urlparse(self.path).path)
                if not m:
                    return self._not_found(self.path)
                obj = self._body()
                if obj is None:
                    return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
                with api.lock:
                    stored = self._store(obj, m, m.group("name"))
                self._send(200, stored)

            def do_PATCH(self):
                m = PATH.match(urlparse(self.path).path)
                self._body()
                with api.lock:
                    obj = api.objects.get(self._key(m)) if m else None
                if obj is None:
                    return self._not_found(self.path)
                self._send(200, obj)

            def do_DELETE(self):
                m = PATH.match(urlparse(self.path).path)
                with api.lock:
                    obj = api.objects.pop(self._key(m), None) if m else None
                if obj is None:
                    return self._not_found(self.path)
                self._send(200, obj)

        return Handler
