//! Fuzz target `smq_envelope`: see `kafka_gateway::fuzz_entry::smq_envelope` for the input shape and properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kafka_gateway::fuzz_entry::smq_envelope(data));
