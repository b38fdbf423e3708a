//! confluent
