//! Real clients (see `main.rs`).
