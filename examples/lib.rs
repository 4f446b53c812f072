//! Runnable examples of `metrics-client`: each file beside this one opens with what it shows and
//! how to run it. Build them all with `cargo build -p examples --examples`; the one that needs no
//! running server is `cargo run -p examples --example in_process`.
