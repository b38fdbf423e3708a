//! Fuzz target `record_batch`: see `kafka_gateway::fuzz_entry::record_batch` for the input shape and properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kafka_gateway::fuzz_entry::record_batch(data));
