//! The one table of supported API versions.
//!
//! Both dispatch (a request outside its range is refused before decoding) and the ApiVersions
//! response are generated from [`SUPPORTED`], so they cannot disagree. Ranges start at Apache
//! Kafka 3.9's minimums (older clients keep working: Produce v0-2 carry message format v0/v1,
//! up-converted on write; Fetch v0-3 answer down-converted message sets) and end at Kafka 4.x's
//! maximums, capped by what the (patched, see vendor/kafka-protocol/PATCHED.md) `kafka-protocol`
//! crate can encode.

use kafka_protocol::messages::ApiKey;

/// One supported API and its inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub key: ApiKey,
    /// The API's name, used as a metric label.
    pub name: &'static str,
    /// Lowest supported version.
    pub min: i16,
    /// Highest supported version.
    pub max: i16,
}

macro_rules! r {
    ($key:ident, $min:expr, $max:expr) => {
        ApiRange {
            key: ApiKey::$key,
            name: stringify!($key),
            min: $min,
            max: $max,
        }
    };
}

/// Every API the gateway serves. Adding an entry here requires a dispatch arm in
/// `handler::dispatch` (a unit test checks every entry is dispatched).
pub const SUPPORTED: &[ApiRange] = &[
    r!(Produce, 0, 13),
    r!(Fetch, 0, 18),
    r!(ListOffsets, 0, 10),
    r!(Metadata, 0, 13),
    r!(ApiVersions, 0, 4),
    r!(CreateTopics, 0, 7),
    r!(DeleteTopics, 0, 6),
    r!(DeleteRecords, 0, 2),
    r!(InitProducerId, 0, 5),
    r!(OffsetForLeaderEpoch, 0, 4),
    r!(DescribeConfigs, 0, 4),
    r!(AlterConfigs, 0, 2),
    r!(CreatePartitions, 0, 3),
    r!(IncrementalAlterConfigs, 0, 1),
    r!(DescribeCluster, 0, 2),
    r!(FindCoordinator, 0, 6),
    r!(JoinGroup, 0, 9),
    r!(Heartbeat, 0, 4),
    r!(LeaveGroup, 0, 5),
    r!(SyncGroup, 0, 5),
    // OffsetCommit v10 and OffsetFetch v10 (topic ids) exist in the codec only as responses.
    r!(OffsetCommit, 0, 9),
    r!(OffsetFetch, 0, 9),
    r!(DescribeGroups, 0, 6),
    r!(ListGroups, 0, 5),
    r!(DeleteGroups, 0, 2),
    r!(OffsetDelete, 0, 0),
    // Listed from v0 because librdkafka (2.x) enables SASL only when v0 is in the range; every
    // client that knows SaslAuthenticate sends v1. After a v0 handshake a client would send its
    // SASL tokens unframed, which the gateway does not read: such a connection is closed.
    r!(SaslHandshake, 0, 1),
    r!(SaslAuthenticate, 0, 2),
    r!(DescribeUserScramCredentials, 0, 0),
    r!(AlterUserScramCredentials, 0, 0),
];

/// The supported range of an API key, if any.
pub fn lookup(api_key: i16) -> Option<&'static ApiRange> {
    SUPPORTED.iter().find(|a| a.key as i16 == api_key)
}

/// Why a request's API or version is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The API key is not served at all.
    UnknownApi,
    /// The API is served, but not at this version.
    UnsupportedVersion,
}

/// Checks an (api key, version) pair against the table.
///
/// # Errors
/// [`Refusal`] naming why the pair is not served.
pub fn check(api_key: i16, version: i16) -> Result<&'static ApiRange, Refusal> {
    let range = lookup(api_key).ok_or(Refusal::UnknownApi)?;
    if version < range.min || version > range.max {
        return Err(Refusal::UnsupportedVersion);
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;

    use super::*;

    #[test]
    fn ranges_are_within_what_the_codec_supports() {
        for a in SUPPORTED {
            let codec = a.key.valid_versions();
            assert!(
                a.min >= codec.min && a.max <= codec.max && a.min <= a.max,
                "{:?}",
                a.key
            );
        }
    }

    #[test]
    fn check_refuses_unknown_and_out_of_range() {
        assert_eq!(
            check(ApiKey::Produce as i16, 14),
            Err(Refusal::UnsupportedVersion)
        );
        assert!(
            check(ApiKey::Produce as i16, 0).is_ok(),
            "Kafka 3.9 clients' Produce v0"
        );
        assert!(check(ApiKey::Produce as i16, 9).is_ok());
        assert_eq!(check(9999, 0), Err(Refusal::UnknownApi));
        assert_eq!(check(ApiKey::EndTxn as i16, 0), Err(Refusal::UnknownApi));
    }

    /// The API table of docs/compatibility.md, rendered from [`SUPPORTED`].
    fn api_table() -> String {
        let mut out = String::from("| API | key | versions served |\n|---|---|---|\n");
        for a in SUPPORTED {
            out.push_str(&format!("| {} | {} | {}-{} |\n", a.name, a.key as i16, a.min, a.max));
        }
        out
    }

    #[test]
    fn compatibility_doc_lists_exactly_the_served_versions() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/compatibility.md");
        let doc = std::fs::read_to_string(path).expect("docs/compatibility.md");
        let (start, end) = ("<!-- api-table:start -->\n", "<!-- api-table:end -->");
        let from = doc.find(start).expect("start marker") + start.len();
        let to = doc[from..].find(end).expect("end marker") + from;
        assert_eq!(
            &doc[from..to],
            api_table(),
            "docs/compatibility.md is out of date: replace its table with the expected one"
        );
    }

    #[test]
    fn no_api_listed_twice() {
        for (i, a) in SUPPORTED.iter().enumerate() {
            assert!(SUPPORTED[i + 1..].iter().all(|b| b.key != a.key), "{:?}", a.key);
        }
    }
}
