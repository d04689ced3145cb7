//! In-process micro-benches of the hot path, so that a regression in it shows
//! up in numbers: a `try_send` + `try_recv` pair, `reserve`/`commit` with a
//! borrowed read, and two threads streaming through one segment.
//!
//! ```text
//! cargo bench --bench ring
//! ```

#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shmring::{Consumer, Producer, RingOptions, WaitStrategy};
use std::hint::black_box;

/// A fresh segment name per bench (the creator unlinks it on drop).
fn name(tag: &str) -> String {
    format!("/shmring-critbench-{}-{tag}", std::process::id())
}

fn pair(tag: &str, wait: WaitStrategy) -> (Producer, Consumer) {
    let options = RingOptions::new().capacity(1 << 20).wait(wait);
    let name = name(tag);
    let producer = Producer::create(&name, &options).expect("create");
    let consumer = Consumer::open(&name, &options).expect("open");
    (producer, consumer)
}

fn send_recv_pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("pair");
    for size in [8usize, 64, 1024] {
        let (mut producer, mut consumer) = pair(&format!("pair-{size}"), WaitStrategy::BusySpin);
        let msg = vec![0x5A; size];
        let mut buf = Vec::with_capacity(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("try_send+try_recv/{size}"), |b| {
            b.iter(|| {
                producer.try_send(black_box(&msg)).expect("room");
                black_box(consumer.try_recv(&mut buf).expect("message"));
            })
        });
        group.bench_function(format!("reserve+commit+read/{size}"), |b| {
            b.iter(|| {
                let mut grant = producer.try_reserve(size).expect("room");
                grant.fill(0x5A);
                grant.commit();
                let msg = consumer.try_read().expect("message");
                black_box(msg[msg.len() - 1]);
            })
        });
    }
    group.finish();
}

fn two_thread_stream(c: &mut Criterion) {
    const BATCH: u64 = 100_000;
    let mut group = c.benchmark_group("stream");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH));
    for size in [64usize, 1024] {
        let (producer, mut consumer) = pair(&format!("stream-{size}"), WaitStrategy::BusySpin);
        let producer = std::sync::Mutex::new(producer);
        let mut buf = Vec::with_capacity(size);
        group.bench_function(format!("busy/{size}"), |b| {
            b.iter_batched(
                || (),
                |()| {
                    std::thread::scope(|s| {
                        s.spawn(|| {
                            let mut producer = producer.lock().expect("producer");
                            let msg = vec![0x5A; size];
                            for _ in 0..BATCH {
                                producer.send(&msg).expect("send");
                            }
                        });
                        for _ in 0..BATCH {
                            consumer.recv(&mut buf).expect("recv");
                        }
                    });
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = send_recv_pairs, two_thread_stream
}
criterion_main!(benches);
