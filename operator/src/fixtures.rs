//! Test fixtures: `KafkaGateway` builders, a scripted mock API server, test doubles for the
//! topic backend and member removal.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Request, Response};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kafka_gateway::storage::{Storage, StorageError};
use kube::client::Body;
use kube::{Client, Resource, ResourceExt};
use parking_lot::Mutex;
use prometheus::Registry;
use serde_json::{json, Value};

use crate::crd::{KafkaGateway, KafkaGatewaySpec, KafkaGatewayStatus, SeaweedMqSpec, TopicSpec};
use crate::members::{MemberError, MemberRemover};
use crate::metrics::Metrics;
use crate::resources::{statefulset, Names};
use crate::topics::TopicBackends;
use crate::{Context, FIELD_MANAGER, FINALIZER};
use kafka_gateway::storage::local::{LocalOptions, LocalStorage};

/// Builders of test resources.
pub(crate) trait KafkaGatewayExt: Sized {
    /// `testns/kgw`, one replica, masters given, stored (uid, generation 1).
    fn test() -> Self;
    /// With `n` replicas.
    fn with_replicas(self, n: i32) -> Self;
    /// Advertising stable pod DNS names.
    fn with_pod_dns(self) -> Self;
    /// Brokers instead of masters.
    fn with_brokers(self) -> Self;
    /// ServiceMonitor enabled.
    fn with_service_monitor(self) -> Self;
    /// With these topics.
    fn with_topics(self, topics: Vec<TopicSpec>) -> Self;
    /// With the operator's finalizer.
    fn finalized(self) -> Self;
    /// Being deleted.
    fn deleting(self) -> Self;
}

impl KafkaGatewayExt for KafkaGateway {
    fn test() -> Self {
        let spec: KafkaGatewaySpec = serde_json::from_value(json!({
            "replicas": 1,
            "image": "kafka-gateway:test",
            "seaweedmq": { "masters": ["weed-master.seaweedfs:9333"] },
        }))
        .expect("valid spec");
        let mut kgw = KafkaGateway::new("kgw", spec);
        kgw.meta_mut().namespace = Some("testns".into());
        kgw.meta_mut().uid = Some("5d5a4c3e-0000-4000-8000-000000000001".into());
        kgw.meta_mut().generation = Some(1);
        kgw
    }
    fn with_replicas(mut self, n: i32) -> Self {
        self.spec.replicas = n;
        self
    }
    fn with_pod_dns(mut self) -> Self {
        self.spec.listener.advertised_address = crate::crd::AdvertisedAddress::PodDNS;
        self
    }
    fn with_brokers(mut self) -> Self {
        self.spec.seaweedmq = SeaweedMqSpec {
            masters: Vec::new(),
            brokers: vec!["weed-broker.seaweedfs:17777".into()],
        };
        self
    }
    fn with_service_monitor(mut self) -> Self {
        self.spec.metrics.service_monitor = true;
        self
    }
    fn with_topics(mut self, topics: Vec<TopicSpec>) -> Self {
        self.spec.topics = topics;
        self
    }
    fn finalized(mut self) -> Self {
        self.finalizers_mut().push(FINALIZER.to_string());
        self
    }
    fn deleting(mut self) -> Self {
        let at = k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("valid time");
        self.meta_mut().deletion_timestamp = Some(Time(at));
        self
    }
}

/// The StatefulSet the builder makes, as the API server would report it after a rollout.
pub(crate) fn statefulset_with_status(kgw: &KafkaGateway, replicas: i32, ready: i32) -> StatefulSet {
    let names = Names::of(kgw).expect("names");
    let mut sts = statefulset::build(kgw, &names, replicas).expect("sts");
    sts.metadata.generation = Some(1);
    sts.status = Some(StatefulSetStatus {
        replicas,
        ready_replicas: Some(ready),
        updated_replicas: Some(replicas),
        observed_generation: Some(1),
        ..StatefulSetStatus::default()
    });
    sts
}

/// A topic declaration.
pub(crate) fn topic(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: name.into(),
        partitions,
        config: Default::default(),
    }
}

/// Ordered log of side effects across the mock API server and the test doubles.
pub(crate) type Journal = Arc<Mutex<Vec<String>>>;

/// What the mock API server answers.
pub(crate) enum Reply {
    /// 200 with the request body echoed back (what an apply returns, near enough).
    Echo,
    /// 200 with this body.
    Json(Value),
    /// An API error status (404, 409, ...).
    Status(u16),
    /// An API error status with this message (a 422 naming the invalid field).
    Refused(u16, &'static str),
}

type BodyCheck = Box<dyn FnOnce(&Value) + Send>;

/// One expected API call.
pub(crate) struct Step {
    method: Method,
    path: String,
    apply: bool,
    dry_run: bool,
    check: Option<BodyCheck>,
    reply: Reply,
}

const NS_PATH: &str = "/namespaces/testns";

impl Step {
    /// `GET` of a namespaced object.
    pub(crate) fn get(api: &str, plural: &str, name: &str, reply: Reply) -> Self {
        Self {
            method: Method::GET,
            path: format!("{api}{NS_PATH}/{plural}/{name}"),
            apply: false,
            dry_run: false,
            check: None,
            reply,
        }
    }
    /// Any call by method and full path (cluster-scoped objects, deletes).
    pub(crate) fn raw(method: Method, path: &str, reply: Reply) -> Self {
        Self {
            method,
            path: path.into(),
            apply: false,
            dry_run: false,
            check: None,
            reply,
        }
    }
    /// Server-side apply (`PATCH ...?fieldManager=kafka-gateway-operator&force=true`).
    pub(crate) fn apply(api: &str, plural: &str, name: &str) -> Self {
        Self {
            method: Method::PATCH,
            path: format!("{api}{NS_PATH}/{plural}/{name}"),
            apply: true,
            dry_run: false,
            check: None,
            reply: Reply::Echo,
        }
    }
    /// Server-side apply of the StatefulSet, with a body check.
    pub(crate) fn apply_sts(check: impl FnOnce(&Value) + Send + 'static) -> Self {
        Self::apply("/apis/apps/v1", "statefulsets", "kgw").checked(check)
    }
    /// An Event with this reason.
    pub(crate) fn event(reason: &'static str) -> Self {
        Self {
            method: Method::POST,
            path: format!("/apis/events.k8s.io/v1{NS_PATH}/events"),
            apply: false,
            dry_run: false,
            check: Some(Box::new(move |body| {
                assert_eq!(body["reason"], reason, "event {body}")
            })),
            reply: Reply::Echo,
        }
    }
    /// The status apply, with a check of the status written.
    pub(crate) fn status(
        kgw: &KafkaGateway,
        check: impl FnOnce(&KafkaGatewayStatus) + Send + 'static,
    ) -> Self {
        let response = serde_json::to_value(kgw).expect("kgw json");
        Self {
            method: Method::PATCH,
            path: format!("/apis/kafkagateway.seaweedfs.io/v1alpha1{NS_PATH}/kafkagateways/kgw/status"),
            apply: true,
            dry_run: false,
            check: Some(Box::new(move |body| {
                let status: KafkaGatewayStatus =
                    serde_json::from_value(body["status"].clone()).expect("status");
                check(&status);
            })),
            reply: Reply::Json(response),
        }
    }
    /// An Event with this reason about this field of the gateway (`regarding.fieldPath`).
    pub(crate) fn event_about(reason: &'static str, field: &'static str) -> Self {
        Self::event(reason).checked(move |body| {
            assert_eq!(body["reason"], reason, "event {body}");
            assert_eq!(body["regarding"]["fieldPath"], field, "event {body}");
        })
    }
    /// The merge patch adding (`add`) or removing our finalizer, guarded by the resourceVersion.
    pub(crate) fn finalizer(kgw: &KafkaGateway, add: bool) -> Self {
        let mut response = kgw.clone();
        if add {
            response.finalizers_mut().push(FINALIZER.into());
        } else {
            response.finalizers_mut().retain(|f| f != FINALIZER);
        }
        Self {
            method: Method::PATCH,
            path: format!("/apis/kafkagateway.seaweedfs.io/v1alpha1{NS_PATH}/kafkagateways/kgw"),
            apply: false,
            dry_run: false,
            check: Some(Box::new(move |body| {
                let finalizers = body["metadata"]["finalizers"]
                    .as_array()
                    .expect("finalizers list");
                assert_eq!(finalizers.iter().any(|f| f == FINALIZER), add, "{body}");
                assert!(body["metadata"].get("resourceVersion").is_some(), "{body}");
            })),
            reply: Reply::Json(serde_json::to_value(response).expect("kgw json")),
        }
    }
    /// The server-side dry run of the StatefulSet's apply, before any child is changed.
    pub(crate) fn dry_run_sts() -> Self {
        Self {
            dry_run: true,
            ..Self::apply("/apis/apps/v1", "statefulsets", "kgw")
        }
    }
    /// The standard steps of every apply, up to (not including) the StatefulSet: its dry run,
    /// the read of the tokens Secret (found), the ConfigMap, the two Services and the
    /// NetworkPolicy.
    pub(crate) fn services_and_config() -> Vec<Self> {
        vec![
            Self::dry_run_sts(),
            tokens_found(),
            Self::apply("/api/v1", "configmaps", "kgw-config"),
            Self::apply("/api/v1", "services", "kgw-headless"),
            Self::apply("/api/v1", "services", "kgw"),
            Self::apply(NETWORKING, "networkpolicies", "kgw"),
        ]
    }
    /// Adds a body check.
    pub(crate) fn checked(mut self, check: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(check));
        self
    }
    /// Replaces the reply.
    pub(crate) fn reply(mut self, reply: Reply) -> Self {
        self.reply = reply;
        self
    }
}

/// The mock API server: answers the scripted steps in order, asserting each request.
pub(crate) struct ApiServerVerifier(tower_test::mock::Handle<Request<Body>, Response<Body>>);

impl ApiServerVerifier {
    /// Serves `steps` in order, logging each into `journal`; panics (failing the join) on any
    /// mismatch. Extra calls from the reconciler fail it with a closed service.
    pub(crate) fn run(mut self, steps: Vec<Step>, journal: Journal) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            for (i, step) in steps.into_iter().enumerate() {
                let (request, send) = self
                    .0
                    .next_request()
                    .await
                    .unwrap_or_else(|| panic!("step {i}: no request"));
                let uri = request.uri().clone();
                assert_eq!(
                    (request.method(), uri.path()),
                    (&step.method, step.path.as_str()),
                    "step {i}: {uri}"
                );
                if step.apply {
                    let query = uri.query().unwrap_or("");
                    assert!(
                        query.contains(&format!("fieldManager={FIELD_MANAGER}"))
                            && query.contains("force=true"),
                        "{uri}"
                    );
                    assert_eq!(query.contains("dryRun=All"), step.dry_run, "step {i}: {uri}");
                }
                journal.lock().push(format!("{} {}", step.method, step.path));
                let bytes = request.into_body().collect_bytes().await.expect("body");
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).expect("json body")
                };
                if let Some(check) = step.check {
                    check(&body);
                }
                let response = match step.reply {
                    Reply::Echo => Response::builder().body(Body::from(bytes.to_vec())),
                    Reply::Json(v) => {
                        Response::builder().body(Body::from(serde_json::to_vec(&v).expect("json")))
                    }
                    Reply::Status(code) => error_response(code, "scripted"),
                    Reply::Refused(code, message) => error_response(code, message),
                };
                send.send_response(response.expect("response"));
            }
        })
    }
}

fn error_response(code: u16, message: &str) -> http::Result<Response<Body>> {
    let reason = match code {
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        _ => "Failure",
    };
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&status).expect("json")))
}

/// A client whose API server is the returned verifier.
pub(crate) fn mock_client() -> (Client, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "testns"), ApiServerVerifier(handle))
}

/// Awaits the scripted server, failing when it did not see all its calls in time.
pub(crate) async fn timeout_after_1s(handle: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .expect("mock api server still waiting for calls")
        .expect("scenario completed");
}

/// A backend factory handing out one storage, or failing.
pub(crate) struct FixedBackends(pub(crate) Option<Arc<dyn Storage>>);

#[async_trait]
impl TopicBackends for FixedBackends {
    async fn storage(&self, _endpoints: &SeaweedMqSpec) -> Result<Arc<dyn Storage>, StorageError> {
        self.0
            .clone()
            .ok_or_else(|| StorageError::Io(std::io::Error::other("connection refused")))
    }
}

/// Records removals into the journal; fails for node ids in `fail`.
pub(crate) struct RecordingRemover {
    pub(crate) journal: Journal,
    pub(crate) fail: Vec<i32>,
}

#[async_trait]
impl MemberRemover for RecordingRemover {
    async fn remove(
        &self,
        admin_base: &str,
        admin_token: Option<&str>,
        node_id: i32,
    ) -> Result<(), MemberError> {
        let token = admin_token.unwrap_or("none");
        self.journal
            .lock()
            .push(format!("remove {node_id} via {admin_base} as {token}"));
        if self.fail.contains(&node_id) {
            return Err(MemberError::Refused {
                status: 503,
                body: "no quorum".into(),
            });
        }
        Ok(())
    }
}

impl Context {
    /// A context over a mocked client; returns the verifier, the registry and the journal.
    pub(crate) fn test(
        topics: Option<Arc<dyn Storage>>,
        fail_removals: Vec<i32>,
    ) -> (Arc<Self>, ApiServerVerifier, Registry, Journal) {
        let (client, verifier) = mock_client();
        let registry = Registry::new();
        let journal = Journal::default();
        let ctx = Context::new(
            client,
            Some("test".into()),
            Metrics::register(&registry).expect("metrics"),
            Arc::new(FixedBackends(topics)),
            Arc::new(RecordingRemover {
                journal: Arc::clone(&journal),
                fail: fail_removals,
            }),
            operator_identity(),
        );
        (Arc::new(ctx), verifier, registry, journal)
    }
}

/// The operator as the test contexts place it: namespace `kgo-system`, the chart's name label.
pub(crate) fn operator_identity() -> crate::resources::networkpolicy::OperatorIdentity {
    crate::resources::networkpolicy::OperatorIdentity::new(
        "kgo-system",
        "app.kubernetes.io/name=kafka-gateway-operator",
    )
    .expect("valid labels")
}

/// The admin token of the tokens Secret the scripted API server returns.
pub(crate) const ADMIN_TOKEN: &str = "admin-token-of-the-test-secret";

/// The tokens Secret as the API server returns it (values base64 encoded).
pub(crate) fn tokens_secret() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "kgw-tokens", "namespace": "testns"},
        "data": {
            "cluster-token": "Y2x1c3Rlci10b2tlbi1vZi10aGUtdGVzdC1zZWNyZXQ=",
            "admin-token": "YWRtaW4tdG9rZW4tb2YtdGhlLXRlc3Qtc2VjcmV0",
        },
    })
}

/// The read of the tokens Secret, found.
pub(crate) fn tokens_found() -> Step {
    Step::get("/api/v1", "secrets", "kgw-tokens", Reply::Json(tokens_secret()))
}

/// API path prefix of apps/v1.
pub(crate) const APPS: &str = "/apis/apps/v1";
/// API path prefix of networking.k8s.io/v1.
pub(crate) const NETWORKING: &str = "/apis/networking.k8s.io/v1";
/// API path prefix of policy/v1.
pub(crate) const POLICY: &str = "/apis/policy/v1";

/// The condition `t` of a status written in a scenario.
pub(crate) fn cond<'a>(
    s: &'a KafkaGatewayStatus,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition"))
}

pub(crate) fn sts_missing() -> Step {
    Step::get(APPS, "statefulsets", "kgw", Reply::Status(404))
}

pub(crate) fn sts_found(kgw: &KafkaGateway, replicas: i32) -> Step {
    let sts = statefulset_with_status(kgw, replicas, replicas);
    Step::get(
        APPS,
        "statefulsets",
        "kgw",
        Reply::Json(serde_json::to_value(sts).unwrap()),
    )
}

pub(crate) fn replicas_of(body: &Value) -> i64 {
    body["spec"]["replicas"].as_i64().unwrap()
}

pub(crate) fn peers_in(body: &Value) -> usize {
    let text = body["data"]["gateway.toml"].as_str().unwrap();
    let table: toml::Table = text.parse().unwrap();
    table["peers"].as_str().unwrap().split(',').count()
}

/// Children applied after the StatefulSet when nothing else is enabled: the PDB.
pub(crate) fn pdb() -> Step {
    Step::apply(POLICY, "poddisruptionbudgets", "kgw")
}

pub(crate) async fn local_storage() -> (tempfile::TempDir, Arc<dyn Storage>) {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(LocalOptions::new(dir.path())).await.unwrap();
    (dir, Arc::new(storage))
}
