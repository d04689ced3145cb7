//! The public handles: a [`Producer`] and a [`Consumer`] joined through a
//! segment, and the [`RingOptions`] builder that makes or opens it. The same
//! handles serve both ring kinds (the options say which kind to create or
//! expect) and every backing: a shared-memory name (`create`/`open`), a
//! regular file (`create_file`/`open_file`), or an [`AnonymousRing`] (a
//! memfd, for `fork` and for passing over a Unix socket).

mod anonymous;
mod backing;
mod consumer;
mod options;
mod producer;
mod roles;
mod select;
mod target;

pub use anonymous::AnonymousRing;
pub use consumer::{Consumer, ReadGuard};
pub use options::{RingOptions, DEFAULT_CAPACITY};
pub use producer::{Grant, Producer};
use roles::*;
pub use select::{RoomFor, Select, Selectable};
use target::*;

use crate::segment;

/// Re-exported so tools can check a name without creating anything.
pub use segment::{unlink, validate_name};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_max_message_is_valid_for_every_capacity() {
        for shift in 12..=40 {
            let options = RingOptions::new().capacity(1 << shift);
            let shape = options.shape();
            assert!(segment::check_shape("/t", &shape).is_ok(), "capacity 2^{shift}: {}", shape.max_message);
        }
        // Nonsense capacities get a clear error, not an overflow.
        for capacity in [0, 1, 8, 4095] {
            assert!(segment::check_shape("/t", &RingOptions::new().capacity(capacity).shape()).is_err());
        }
    }

    #[test]
    fn handles_say_their_ring_s_kind() {
        use crate::layout::Kind;
        for kind in [Kind::Spsc, Kind::Mpsc] {
            let name = format!("/shmring-unit-kind-{}-{kind:?}", std::process::id());
            let options = RingOptions::new().kind(kind).unlink_on_drop(true);
            let consumer = Consumer::create(&name, &options).expect("create");
            let producer = Producer::open(&name, &options).expect("open");
            assert_eq!((consumer.kind(), producer.kind()), (kind, kind));
        }
    }
}
