//! The shared harness (`metrics-test-support`): a database per test on each backend, the server
//! on a real socket.

pub use metrics_test_support::{Backend, TestDb, TestServer};
