//! Reading a `consumer` group member's subscription, the one place opaque protocol metadata is
//! looked into (as Kafka does, for offset expiry and OffsetDelete).

use std::collections::BTreeSet;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

/// The protocol type of Kafka's consumer groups.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Topics subscribed to by one `consumer` protocol metadata blob, or `None` if it cannot be
/// decoded. Versions beyond the newest known are read as the newest, as Kafka does.
pub fn subscribed_topics(metadata: &Bytes) -> Option<BTreeSet<String>> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16().clamp(0, 3);
    let subscription = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    #[test]
    fn reads_topics_of_every_version() {
        for version in 0..=3i16 {
            let sub = ConsumerProtocolSubscription::default().with_topics(vec![
                StrBytes::from_static_str("a"),
                StrBytes::from_static_str("b"),
            ]);
            let mut buf = BytesMut::new();
            buf.put_i16(version);
            sub.encode(&mut buf, version).unwrap();
            let topics = subscribed_topics(&buf.freeze()).unwrap();
            assert_eq!(topics, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        }
        assert_eq!(subscribed_topics(&Bytes::from_static(&[0, 0, 0, 0, 0, 9])), None);
    }
}
