//! kcat
