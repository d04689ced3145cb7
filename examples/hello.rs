//! Two processes, one ring: this process creates the ring as its consumer,
//! starts itself again as the producer, and prints what arrives.
//!
//! `cargo run --release --example hello`
use shmring::{Consumer, Producer, RecvTimeoutError, RingOptions};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = RingOptions::new().capacity(64 * 1024);
    if let Some(name) = std::env::args().nth(1) {
        // The child: open the ring the parent created, send, and exit
        // (dropping the producer detaches it).
        let mut producer = Producer::open(&name, &options)?;
        for i in 0..3 {
            producer.send(format!("hello #{i} from process {}", std::process::id()).as_bytes())?;
        }
        return Ok(());
    }
    let name = format!("/hello-{}", std::process::id());
    let mut consumer = Consumer::create(&name, &options)?; // removed again on drop
    let mut child = std::process::Command::new(std::env::current_exe()?).arg(&name).spawn()?;
    let mut buf = [0u8; 256];
    loop {
        // A timeout, in case the child never comes.
        match consumer.recv_into_timeout(&mut buf, Duration::from_secs(10)) {
            Ok(len) => println!("{}", String::from_utf8_lossy(&buf[..len])),
            // Every message read and the producer gone.
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    child.wait()?;
    Ok(())
}
