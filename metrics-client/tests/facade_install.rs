//! Installing the `metrics` facade recorder as the global recorder (feature `facade`), alone in
//! its test binary: a process has one global recorder.
//!
//! `cargo test -p metrics-client --features facade --test facade_install` (no server: nothing
//! is recorded, so nothing is sent).

#![allow(unreachable_pub, missing_docs, clippy::unwrap_used)]

use metrics_client::{facade, Client, Error};

/// Only one global recorder per process: a second install is refused, not ignored.
#[tokio::test]
async fn a_second_global_install_is_refused() {
    let client = Client::new("http://127.0.0.1:9").unwrap();
    let first = facade::install(&client).unwrap();
    assert!(matches!(
        facade::install(&client),
        Err(Error::FacadeInstalled)
    ));
    assert!(first.close().await.unwrap().is_empty());
}
