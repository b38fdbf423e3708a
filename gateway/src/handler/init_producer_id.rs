//! InitProducerId: producer ids for idempotent producers, with the KIP-360 epoch bump.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use tracing::{debug, error};

use super::Context;

/// "No producer id" / "no epoch" in requests and responses.
const NO_PRODUCER_ID: i64 = -1;
const NO_EPOCH: i16 = -1;

/// Epochs at or above this are exhausted and the producer gets a new id instead (Kafka's
/// `ProducerIdAndEpoch.isEpochExhausted`: `Short.MAX_VALUE` itself is never handed out).
const LAST_USABLE_EPOCH: i16 = i16::MAX - 1;

pub(super) async fn handle(
    ctx: &Context,
    _version: i16,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let failed = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(NO_PRODUCER_ID))
            .with_producer_epoch(NO_EPOCH)
    };
    match req.transactional_id.as_ref().map(|t| t.0.as_str()) {
        None => {}
        // Kafka refuses an empty transactional id the same way.
        Some("") => return failed(ResponseError::InvalidRequest),
        Some(id) => {
            // Transactions are not supported. TRANSACTIONAL_ID_AUTHORIZATION_FAILED is the refusal
            // every client treats as fatal and reports to the application at once ("not allowed to
            // use this transactional id"), instead of retrying as it would on COORDINATOR_* codes;
            // Produce uses the same code for transactional batches.
            debug!(transactional_id = id, "refusing transactional producer");
            return failed(ResponseError::TransactionalIdAuthorizationFailed);
        }
    }
    let (producer_id, epoch) = (req.producer_id.0, req.producer_epoch);
    // v3+ (KIP-360): a producer that already has an id and epoch asks for an epoch bump. Both must
    // be given, or neither.
    if (producer_id == NO_PRODUCER_ID) != (epoch == NO_EPOCH)
        || producer_id < NO_PRODUCER_ID
        || epoch < NO_EPOCH
    {
        return failed(ResponseError::InvalidRequest);
    }
    if producer_id != NO_PRODUCER_ID && epoch < LAST_USABLE_EPOCH {
        debug!(producer_id, epoch = epoch + 1, "bumped producer epoch");
        return InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch + 1);
    }
    match ctx.producer_ids.next_id().await {
        Ok(id) => {
            debug!(producer_id = id, "allocated producer id");
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0)
        }
        Err(e) => {
            error!(error = %e, "producer id allocation failed");
            // Retriable: the client retries InitProducerId instead of failing the producer.
            failed(ResponseError::CoordinatorNotAvailable)
        }
    }
}

#[cfg(test)]
#[path = "init_producer_id_test.rs"]
mod tests;
