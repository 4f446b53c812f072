//! The shared harness (`metrics-test-support`): a database per test on each backend, the server
//! on a real socket.

#[allow(unused_imports)]
pub use metrics_test_support::{Backend, TestDb, TestServer};
