//! The closed control plane (issue 16, control-plane items) against real gateway processes:
//! - a standalone gateway listens on its Kafka and admin ports and nothing else (no raft port);
//! - on a running cluster, raft calls without the cluster token (or with a wrong one) are
//!   answered UNAUTHENTICATED and change nothing; admin mutations without the admin token are
//!   answered 401 and change nothing; a snapshot chunk at a huge offset, even with the token, is
//!   refused without the receiver's memory growing, and the cluster keeps its leader and term.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kafka_gateway::cluster::command::{Command, ForwardRequest};
use kafka_gateway::cluster::pb::v1::raft_service_client::RaftServiceClient;
use kafka_gateway::cluster::pb::v1::{RaftReply, RaftRequest};
use kafka_gateway::cluster::pb::Wire;
use kafka_gateway::cluster::{ClusterNode, NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::{SnapshotMeta, StoredMembership, Vote};
use tests::harness::cluster::{Boot, Cluster};
use tests::harness::tokens::{Tokens, ADMIN_TOKEN, CLUSTER_TOKEN};
use tests::{phase, Gateway, GatewayOptions};

/// Bound of each batch of raft calls: a call the gateway accepted by mistake (a membership change
/// waiting for a member that does not exist) fails the test instead of stalling it.
const CALLS_DEADLINE: Duration = Duration::from_secs(30);

/// How much the receiver's resident memory may grow while refusing the chunks (allocator noise,
/// request buffers); a buffer grown to the chunk's offset would be 1 TiB.
const RSS_SLACK: u64 = 64 << 20;

#[test]
fn standalone_gateway_opens_no_raft_port_and_guards_admin_mutations() -> Result<()> {
    let tokens = Tokens::new()?;
    let opts =
        GatewayOptions::default().arg("--admin-token-file", &tokens.admin_file().display().to_string());
    let gw = Gateway::start("standalone-ports", opts)?;

    phase("the standalone gateway listens on its Kafka and admin ports only");
    let mut want = vec![gw.kafka_addr().port(), gw.admin_addr().port()];
    want.sort_unstable();
    let ports = gw.listening_ports()?;
    ensure!(
        ports == want,
        "listening on {ports:?}, want only Kafka and admin {want:?}"
    );
    ensure!(
        gw.log_text().contains("standalone"),
        "the start line does not say standalone:\n{}",
        gw.log_tail()
    );

    phase("admin mutations need the admin token; reads stay open");
    let addr = gw.admin_addr();
    let timeout = Duration::from_secs(5);
    let del = tests::harness::http::request(addr, "DELETE", "/cluster/members/0", None, timeout)?;
    ensure!(
        del.status == 401,
        "DELETE without a token: {} {}",
        del.status,
        del.body
    );
    let wrong = [("Authorization", "Bearer not-the-admin-token-at-all")];
    let del =
        tests::harness::http::request_with(addr, "DELETE", "/cluster/members/0", &wrong, None, timeout)?;
    ensure!(
        del.status == 401,
        "DELETE with a wrong token: {} {}",
        del.status,
        del.body
    );
    let status = gw.admin_get("/cluster")?;
    ensure!(
        status.status == 200,
        "GET /cluster: {} {}",
        status.status,
        status.body
    );
    ensure!(status.body.contains("\"leader\": 0"), "{}", status.body);
    ensure!(gw.admin_get("/metrics")?.status == 200, "metrics closed");
    Ok(())
}

/// `calls` within [`CALLS_DEADLINE`].
async fn deadline(calls: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::time::timeout(CALLS_DEADLINE, calls)
        .await
        .context("raft calls not answered in time")?
}

fn request<T: serde::Serialize>(value: &T, bearer: Option<&str>) -> Result<tonic::Request<RaftRequest>> {
    let mut r = tonic::Request::new(RaftRequest::try_from(&Wire(value))?);
    if let Some(b) = bearer {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {b}").parse()?);
    }
    Ok(r)
}

fn chunk(term: u64, leader: NodeId, offset: u64) -> InstallSnapshotRequest<TypeConfig> {
    InstallSnapshotRequest {
        vote: Vote::new_committed(term, leader),
        meta: SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            snapshot_id: "attack".into(),
        },
        offset,
        data: vec![0xAB; 64 * 1024],
        done: false,
    }
}

#[test]
fn cluster_control_plane_refuses_unauthenticated_calls_and_wild_snapshot_chunks() -> Result<()> {
    let c = Cluster::start("ctlplane", 2, false, Boot::OneByOne)?;
    let before = c.view(0)?;
    let leader = before.leader.context("no leader")?;
    let follower = 1 - leader;
    let members = |c: &Cluster| -> Result<Vec<i32>> { Ok(c.view(leader)?.members.keys().copied().collect()) };
    let start_members = members(&c)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    phase("raft calls without the cluster token, or with a wrong one: UNAUTHENTICATED");
    let raft_addr = format!("http://{}", c.node(leader)?.cluster_addr);
    let rogue = ForwardRequest::AddMember {
        node_id: 7,
        node: ClusterNode {
            cluster_addr: "10.9.9.9:9645".into(),
            kafka_addr: "10.9.9.9:9092".into(),
            admin_addr: "10.9.9.9:9644".into(),
            listeners: Default::default(),
            rack: None,
        },
    };
    let remove = ForwardRequest::RemoveMember {
        node_id: follower as NodeId,
    };
    let write = ForwardRequest::Write(Command::SetClusterId {
        cluster_id: "stolen".into(),
    });
    runtime.block_on(deadline(async {
        let mut client = RaftServiceClient::connect(raft_addr.clone()).await?;
        for bearer in [None, Some("wrong-cluster-token-0123456789")] {
            for req in [&rogue, &remove, &write] {
                let e = client
                    .forward(request(req, bearer)?)
                    .await
                    .expect_err("forward without the token");
                ensure!(e.code() == tonic::Code::Unauthenticated, "forward: {e}");
            }
            let e = client
                .vote(request(&(), bearer)?)
                .await
                .expect_err("vote without the token");
            ensure!(e.code() == tonic::Code::Unauthenticated, "vote: {e}");
            let e = client
                .append(request(&(), bearer)?)
                .await
                .expect_err("append without the token");
            ensure!(e.code() == tonic::Code::Unauthenticated, "append: {e}");
            let e = client
                .snapshot(request(&chunk(0, 0, 0), bearer)?)
                .await
                .expect_err("snapshot without the token");
            ensure!(e.code() == tonic::Code::Unauthenticated, "snapshot: {e}");
        }
        anyhow::Ok(())
    }))?;
    ensure!(members(&c)? == start_members, "membership changed");
    let md = c.metadata(leader, &[])?;
    ensure!(
        md.cluster_id.as_deref() != Some("stolen"),
        "the cluster id was overwritten"
    );

    phase("admin mutations without the admin token: 401, nothing changes");
    let path = format!("/cluster/members/{follower}");
    for id in [leader, follower] {
        for bearer in [None, Some("wrong-admin-token-0123456789")] {
            let r = c.admin_as(id, "DELETE", &path, None, bearer)?;
            ensure!(
                r.status == 401,
                "DELETE on node {id} with {bearer:?}: {} {}",
                r.status,
                r.body
            );
            let body = r#"{"node_id":7,"cluster_addr":"10.9.9.9:9645","kafka_addr":"10.9.9.9:9092","admin_addr":"10.9.9.9:9644","rack":null}"#;
            let r = c.admin_as(id, "POST", "/cluster/members", Some(body), bearer)?;
            ensure!(
                r.status == 401,
                "POST on node {id} with {bearer:?}: {} {}",
                r.status,
                r.body
            );
        }
    }
    ensure!(members(&c)? == start_members, "membership changed");

    phase("snapshot chunks at a huge offset, with the token: refused, no memory growth");
    let target = c.node(follower)?;
    let rss_before = target.gw.rss_bytes()?;
    let term = c.view(follower)?.term;
    let huge = 1u64 << 40;
    runtime.block_on(deadline(async {
        let mut client = RaftServiceClient::connect(format!("http://{}", target.cluster_addr)).await?;
        for offset in [huge, huge + 1, u64::MAX - 1] {
            let reply: RaftReply = client
                .snapshot(request(&chunk(term + 1, leader as NodeId, offset), Some(CLUSTER_TOKEN))?)
                .await?
                .into_inner();
            let r: Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> =
                reply.decode()?;
            ensure!(
                matches!(
                    &r,
                    Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m))) if m.expect.offset == 0
                ),
                "chunk at offset {offset}: {r:?}"
            );
        }
        anyhow::Ok(())
    }))?;
    let rss_after = target.gw.rss_bytes()?;
    ensure!(
        rss_after < rss_before + RSS_SLACK,
        "the receiver grew from {rss_before} to {rss_after} bytes"
    );
    let after = c.view(follower)?;
    ensure!(
        after.leader == Some(leader) && after.term == term,
        "the refused chunks disturbed raft: leader {:?} term {} (was {leader}, {term})",
        after.leader,
        after.term
    );
    ensure!(members(&c)? == start_members, "membership changed");

    phase("with the admin token the same removal goes through");
    let r = c.admin_as(leader, "DELETE", &path, None, Some(ADMIN_TOKEN))?;
    ensure!(r.status == 200, "DELETE with the token: {} {}", r.status, r.body);
    ensure!(members(&c)? == vec![leader], "member {follower} not removed");
    Ok(())
}
