//! Test harness: the gateway process, client processes, a raw protocol client and phase logging.

pub mod client;
pub mod gateway;
pub mod http;
pub mod phase;
pub mod raw;
pub mod weed;
