//! Fuzz target `group_log`: see `kafka_gateway::fuzz_entry::group_log` for the input shape and properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kafka_gateway::fuzz_entry::group_log(data));
