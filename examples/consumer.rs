//! Receives messages from a segment, verifies every byte and the order, and
//! prints one summary line; exits non-zero on any error.
//!
//! ```text
//! cargo run --release --example consumer -- --name /demo --create --verify
//! ```
mod common;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Receive and verify messages from a shmring segment")]
struct Cli {
    #[command(flatten)]
    args: common::ConsumerArgs,
}

fn main() {
    let cli = Cli::parse();
    common::report(|| common::run_consumer(&cli.args));
}
