//! The first Kafka error code a response carries, for the request metrics' `error_code` label.

use kafka_protocol::messages::ResponseKind;

/// The top-level error code, else the first non-zero per-topic or per-partition code, else 0.
pub fn first_error_code(body: &ResponseKind) -> i16 {
    fn first(codes: impl IntoIterator<Item = i16>) -> i16 {
        codes.into_iter().find(|c| *c != 0).unwrap_or(0)
    }
    match body {
        ResponseKind::ApiVersions(r) => r.error_code,
        ResponseKind::Produce(r) => first(r.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))),
        ResponseKind::Fetch(r) => {
            first(std::iter::once(r.error_code).chain(r.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code))))
        }
        ResponseKind::Metadata(r) => first(r.topics.iter().map(|t| t.error_code)),
        ResponseKind::ListOffsets(r) => first(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code))),
        ResponseKind::CreateTopics(r) => first(r.topics.iter().map(|t| t.error_code)),
        ResponseKind::DeleteTopics(r) => first(r.responses.iter().map(|t| t.error_code)),
        ResponseKind::DeleteRecords(r) => first(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code))),
        ResponseKind::InitProducerId(r) => r.error_code,
        ResponseKind::DescribeConfigs(r) => first(r.results.iter().map(|t| t.error_code)),
        ResponseKind::AlterConfigs(r) => first(r.responses.iter().map(|t| t.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => first(r.responses.iter().map(|t| t.error_code)),
        ResponseKind::CreatePartitions(r) => first(r.results.iter().map(|t| t.error_code)),
        ResponseKind::DescribeCluster(r) => r.error_code,
        ResponseKind::OffsetForLeaderEpoch(r) => first(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code))),
        ResponseKind::FindCoordinator(r) => first(std::iter::once(r.error_code).chain(r.coordinators.iter().map(|c| c.error_code))),
        ResponseKind::JoinGroup(r) => r.error_code,
        ResponseKind::SyncGroup(r) => r.error_code,
        ResponseKind::Heartbeat(r) => r.error_code,
        ResponseKind::LeaveGroup(r) => first(std::iter::once(r.error_code).chain(r.members.iter().map(|m| m.error_code))),
        ResponseKind::OffsetCommit(r) => first(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code))),
        ResponseKind::OffsetFetch(r) => first(std::iter::once(r.error_code).chain(r.groups.iter().map(|g| g.error_code))),
        ResponseKind::DescribeGroups(r) => first(r.groups.iter().map(|g| g.error_code)),
        ResponseKind::ListGroups(r) => r.error_code,
        ResponseKind::DeleteGroups(r) => first(r.results.iter().map(|g| g.error_code)),
        ResponseKind::OffsetDelete(r) => r.error_code,
        _ => 0,
    }
}
