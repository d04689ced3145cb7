//! Sends verifiable messages into a segment.
//!
//! ```text
//! cargo run --release --example consumer -- --name /demo --create --verify &
//! cargo run --release --example producer -- --name /demo --count 10000000 --size 64
//! ```
mod common;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Send verifiable messages into a shmring segment")]
struct Cli {
    #[command(flatten)]
    args: common::ProducerArgs,
}

fn main() {
    let cli = Cli::parse();
    common::report(|| common::run_producer(&cli.args));
}
