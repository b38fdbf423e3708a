//! Fuzz target `raft_log`: see `kafka_gateway::fuzz_entry::raft_log` for the input shape and properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kafka_gateway::fuzz_entry::raft_log(data));
