//! The shared harness (`metrics-test-support`), and a client for its server.

#![allow(dead_code, unused_imports)]

pub use metrics_test_support::{on_both_backends, Backend, TestDb, TestServer};

/// A [`Client`](metrics_client::Client) of a test server.
pub trait ServerClient {
    /// A client of this server.
    fn client(&self) -> metrics_client::Client;
}

impl ServerClient for TestServer {
    fn client(&self) -> metrics_client::Client {
        metrics_client::Client::new(&self.base_url()).expect("client")
    }
}
