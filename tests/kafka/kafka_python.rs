//! kafka_python
