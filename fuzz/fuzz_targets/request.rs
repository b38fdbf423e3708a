//! Fuzz target `request`: see `kafka_gateway::fuzz_entry::request` for the input shape and properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kafka_gateway::fuzz_entry::request(data));
