//! Fuzz target `smq_batch_codec`: see `kafka_gateway::fuzz_entry::smq_batch_codec` for the input shape and properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kafka_gateway::fuzz_entry::smq_batch_codec(data));
