//! The closed control plane, in process: raft calls without the cluster token are refused and
//! change nothing, snapshot chunks out of sequence or over the cap are refused before openraft
//! buffers them, and tokenless admin mutations are refused off loopback.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::{SnapshotMeta, StoredMembership, Vote};
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;

use super::command::{Command, ForwardError, ForwardRequest, ForwardResponse};
use super::pb::v1::raft_service_client::RaftServiceClient;
use super::pb::v1::{RaftReply, RaftRequest};
use super::pb::Wire;
use super::*;

const DEADLINE: Duration = Duration::from_secs(20);

/// Awaits one peer call; a call that hangs (an accepted membership change waiting for a member
/// that does not exist) fails the test instead of stalling it.
async fn within<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("peer call answered within 5 s")
}

/// A one-node cluster serving peers on 127.0.0.1 with the test token, its peer address, and
/// the directory keeping its data.
async fn serving_node(max_snapshot_bytes: u64) -> (Coordinator, String, tempfile::TempDir) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let node = ClusterNode {
        cluster_addr: addr.clone(),
        kafka_addr: "127.0.0.1:9092".into(),
        admin_addr: "127.0.0.1:9644".into(),
        rack: None,
        listeners: Default::default(),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut o = ClusterOptions::new(1, node.clone(), dir.path().to_owned());
    o.heartbeat_interval = Duration::from_millis(100);
    o.election_timeout = Duration::from_millis(500);
    o.network.token = Some(test_support::test_token());
    o.network.max_snapshot_bytes = max_snapshot_bytes;
    let c = Coordinator::start(o, Some(listener)).await.unwrap();
    c.initialize(BTreeMap::from([(1, node)])).await.unwrap();
    c.raft()
        .wait(Some(DEADLINE))
        .current_leader(1, "single-node leader")
        .await
        .unwrap();
    (c, addr, dir)
}

fn request<T: serde::Serialize>(value: &T, bearer: Option<&str>) -> tonic::Request<RaftRequest> {
    let mut r = tonic::Request::new(RaftRequest::try_from(&Wire(value)).unwrap());
    if let Some(b) = bearer {
        let v: MetadataValue<_> = format!("Bearer {b}").parse().unwrap();
        r.metadata_mut().insert("authorization", v);
    }
    r
}

fn voters(c: &Coordinator) -> Vec<NodeId> {
    c.raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_calls_without_the_cluster_token_are_refused_and_change_nothing() {
    let (c, addr, _dir) = serving_node(1 << 20).await;
    let mut client = RaftServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let applied = c.status().applied_index;
    let rogue = ForwardRequest::AddMember {
        node_id: 9,
        node: ClusterNode {
            cluster_addr: "10.0.0.9:9645".into(),
            ..ClusterNode::default()
        },
    };
    let write = ForwardRequest::Write(Command::SetClusterId {
        cluster_id: "taken-over".into(),
    });
    for bearer in [None, Some("wrong-token-0123456789abcdef")] {
        for req in [&rogue, &write, &ForwardRequest::RemoveMember { node_id: 1 }] {
            let e = within(client.forward(request(req, bearer))).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        }
        let e = within(client.vote(request(&(), bearer))).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        let e = within(client.append(request(&(), bearer))).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        let e = within(client.snapshot(request(&(), bearer))).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    }
    assert_eq!(voters(&c), vec![1]);
    assert_eq!(c.status().applied_index, applied);
    assert_eq!(c.cluster_id(), None);

    // The same call with the token goes through.
    let token = "test-cluster-token-0123456789";
    let reply: RaftReply = within(client.forward(request(&ForwardRequest::Status, Some(token))))
        .await
        .unwrap()
        .into_inner();
    let status: Result<ForwardResponse, ForwardError> = reply.decode().unwrap();
    assert!(
        matches!(
            status,
            Ok(ForwardResponse::Status {
                initialized: true,
                ..
            })
        ),
        "{status:?}"
    );
    c.shutdown().await;
}

fn chunk(id: &str, offset: u64, len: usize, done: bool) -> InstallSnapshotRequest<TypeConfig> {
    InstallSnapshotRequest {
        vote: Vote::new(0, 0),
        meta: SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            snapshot_id: id.into(),
        },
        offset,
        data: vec![b'x'; len],
        done,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_chunks_out_of_sequence_or_over_the_cap_are_refused() {
    let (c, addr, _dir) = serving_node(4096).await;
    let mut client = RaftServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let token = Some("test-cluster-token-0123456789");
    let send = |client: &mut RaftServiceClient<tonic::transport::Channel>, rpc| {
        let mut client = client.clone();
        async move { within(client.snapshot(request(&rpc, token))).await }
    };
    let mismatch = |reply: RaftReply| {
        let r: Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> =
            reply.decode().unwrap();
        match r {
            Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m))) => {
                (m.expect.offset, m.got.offset)
            }
            other => panic!("expected a snapshot mismatch, got {other:?}"),
        }
    };
    // A first chunk at a huge offset: refused before any buffer grows.
    let huge = 1u64 << 40;
    let reply = send(&mut client, chunk("s1", huge, 8, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mismatch(reply), (0, huge));
    // A stream that starts well, then jumps.
    send(&mut client, chunk("s1", 0, 100, false)).await.unwrap();
    let reply = send(&mut client, chunk("s1", huge, 8, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mismatch(reply), (100, huge));
    // Contiguous, but past the 4096-byte cap.
    let e = send(&mut client, chunk("s1", 100, 4000, false))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    assert!(e.message().contains("4096"), "{e}");
    assert_eq!(voters(&c), vec![1]);
    c.shutdown().await;
}

#[tokio::test]
async fn a_listener_without_a_token_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = ClusterOptions::new(1, ClusterNode::default(), dir.path().to_owned());
    let e = Coordinator::start(o, Some(listener)).await.unwrap_err();
    assert!(
        matches!(e, ClusterError::Config(ref m) if m.contains("token")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_only_loopback_callers_mutate() {
    let dir = tempfile::tempdir().unwrap();
    let c = test_support::single_node(dir.path(), "127.0.0.1:9092", "admin").await;
    let app = admin_http::router(c.clone(), crate::admin::AdminAuth::new(None));
    // Served with the caller's address: a loopback caller passes the guard (and the handler
    // then judges the body).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let with_peer = listener.local_addr().unwrap();
    let service = app
        .clone()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    let post = super::cluster_test::http_with(with_peer, "POST", "/cluster/members", "", "{").await;
    assert!(post.starts_with("HTTP/1.1 400"), "{post}");
    // Served without it, the caller cannot be shown to be local: refused.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let unknown = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let delete = super::cluster_test::http_with(unknown, "DELETE", "/cluster/members/0", "", "").await;
    assert!(delete.starts_with("HTTP/1.1 403"), "{delete}");
    let status = super::cluster_test::http_with(unknown, "GET", "/cluster", "", "").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(voters(&c), vec![0]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_another_token_is_refused_and_backed_off() {
    use openraft::error::RPCError;
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};

    let (c, addr, _dir) = serving_node(1 << 20).await;
    let other = network::NetworkOptions {
        token: Some(crate::auth::Token::new("another-cluster-token-0123456789").unwrap()),
        ..network::NetworkOptions::default()
    };
    let mut outsider = network::Network::new(other);
    // Its join request is refused, naming the reason.
    let e = within(outsider.forward(&addr, &ForwardRequest::Status))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClusterError::Rpc(ref m) if m.contains("cluster token")),
        "{e}"
    );
    // Its raft calls count as an unreachable peer: openraft retries them with backoff.
    let node = ClusterNode {
        cluster_addr: addr.clone(),
        ..ClusterNode::default()
    };
    let mut client = outsider.new_client(1, &node).await;
    let vote = openraft::raft::VoteRequest::new(Vote::new(99, 2), None);
    let e = within(client.vote(vote, RPCOption::new(Duration::from_secs(5))))
        .await
        .unwrap_err();
    assert!(matches!(e, RPCError::Unreachable(_)), "{e}");
    assert_eq!(voters(&c), vec![1]);
    assert_eq!(c.status().term, 1, "the refused vote did not raise the term");
    c.shutdown().await;
}
