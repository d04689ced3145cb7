#!/usr/bin/env bash
# C-to-C against Rust-to-Rust streaming through shmring, in the same run:
# the C examples (ffi/examples/producer.c, consumer.c, linked to the release
# libshmring_ffi.so) and the Rust examples (examples/producer.rs,
# consumer.rs), each pair a producer process and a verifying consumer
# process, 64-byte messages. Runs the pairs alternately ROUNDS times and
# prints each run's consumer msgs/s, the medians and their ratio.
#
#   bash ffi/bench.sh [COUNT] [ROUNDS] [verify|raw]
#
# Defaults: 5000000 messages, 3 rounds, verify (both consumers check every
# byte, as the examples do; raw: they only count, so the ratio is closer to
# the library's own cost through the C ABI).
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-5000000}
rounds=${2:-3}
mode=${3:-verify}
size=64
case "$mode" in
  verify) verify=--verify ;;
  raw) verify= ;;
  *) echo "mode: verify or raw, not $mode" >&2; exit 2 ;;
esac

cargo build --release --quiet -p shmring-ffi
cargo build --release --quiet -p shmring --example producer --example consumer
out=target/release/ffi-bench
mkdir -p "$out"
for prog in producer consumer; do
  cc -std=c99 -O2 -Iffi/include "ffi/examples/$prog.c" -Ltarget/release -lshmring_ffi \
    -Wl,-rpath,"$PWD/target/release" -o "$out/c-$prog"
done

# One run: prints the consumer's msgs/s.
run() {
  local producer=$1 consumer=$2 name="/shmring-ffi-bench-$$"
  "$consumer" --name "$name" --create $verify --count "$count" > "$out/consumer.txt" &
  local pid=$!
  "$producer" --name "$name" --count "$count" --size "$size" --open-timeout 10 > "$out/producer.txt"
  wait "$pid"
  grep -q "errors=0" "$out/consumer.txt" || { cat "$out/consumer.txt"; exit 1; }
  sed -n 's/.*msgs_per_s=\([0-9]*\).*/\1/p' "$out/consumer.txt"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

c_runs=() rust_runs=()
for ((i = 0; i < rounds; i++)); do
  c_runs+=("$(run "$out/c-producer" "$out/c-consumer")")
  rust_runs+=("$(run target/release/examples/producer target/release/examples/consumer)")
  echo "round $((i + 1)): C-to-C ${c_runs[-1]} msgs/s, Rust-to-Rust ${rust_runs[-1]} msgs/s"
done
c=$(printf '%s\n' "${c_runs[@]}" | median)
rust=$(printf '%s\n' "${rust_runs[@]}" | median)
awk -v c="$c" -v r="$rust" -v n="$count" -v s="$size" -v m="$mode" 'BEGIN {
  printf "%d messages of %d B (%s), median of the rounds: C-to-C %.2f M msgs/s, Rust-to-Rust %.2f M msgs/s, C/Rust %.2fx\n",
    n, s, m, c / 1e6, r / 1e6, c / r }'
