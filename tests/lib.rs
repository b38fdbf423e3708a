//! Shared helpers of the workspace integration suites.
