//! The `kafka-gateway` binary.

fn main() {}
