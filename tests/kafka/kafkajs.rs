//! kafkajs
