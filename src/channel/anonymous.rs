//! Anonymous rings: a memfd to share with `fork`ed children or over a
//! Unix socket.

use super::*;
use crate::error::Error;
use crate::layout::{Slot, FLAG_HANDED_OUT};
use crate::segment::fork::Scope;
use crate::segment::Segment;
use crate::sync::Ordering;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;

/// A ring in anonymous shared memory: a memfd, sealed so that nobody can
/// shrink it, with no name in `/dev/shm`. Create it, then either `fork` (or
/// spawn a child that inherits the descriptor) or send it to another process
/// over a Unix socket; each process then attaches as a producer or the
/// consumer.
///
/// Each attach reopens the memfd through `/proc/self/fd`, so every handle
/// has an open file description (and a liveness lock) of its own. The
/// `AnonymousRing` itself is inherited by a forked child as it is, and the
/// child attaches through it: attach after forking. A handle made before
/// `fork` stays the parent's: in the child it fails with
/// [`ForkedHandle`](crate::ForkedHandle) and its drop does nothing (see
/// [`Producer`'s section on fork](Producer#fork)).
///
/// ```no_run
/// use shmring::{AnonymousRing, RingOptions};
/// use std::os::unix::net::UnixStream;
/// let options = RingOptions::new();
/// let ring = AnonymousRing::create("telemetry", &options)?;
/// let (here, there) = UnixStream::pair()?; // `there`: another process's end
/// ring.send_over(&here)?;
/// let received = AnonymousRing::receive_from(&there, &options)?; // validated like any segment
/// let mut consumer = received.consumer(&options)?;
/// let mut producer = ring.producer(&options)?;
/// producer.send(b"no name in /dev/shm")?;
/// assert_eq!(&*consumer.read()?, b"no name in /dev/shm");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AnonymousRing {
    segment: Segment,
    label: String,
}

impl AnonymousRing {
    fn new(segment: Segment, label: String) -> Self {
        AnonymousRing { segment, label }
    }

    /// Creates an anonymous ring of the options' kind and shape. `label` names
    /// it in messages (and in `/proc/PID/fd`).
    #[doc(alias = "memfd_create")]
    pub fn create(label: &str, options: &RingOptions) -> Result<AnonymousRing, Error> {
        Ok(AnonymousRing::new(Segment::create_memfd(label, &options.shape())?, label.to_owned()))
    }

    /// Opens the ring whose memfd is descriptor `fd` of this process (for
    /// example inherited from the parent that created it). The descriptor is
    /// not taken over: the ring reopens it. It must be a memfd sealed against
    /// shrinking ([`Error::NotMemfd`] or [`Error::NotSealed`] otherwise,
    /// found before it is reopened) with a valid header of the options' kind.
    pub fn open_inherited(fd: RawFd, options: &RingOptions) -> Result<AnonymousRing, Error> {
        let label = format!("fd{fd}");
        Ok(AnonymousRing::new(Segment::open_memfd(fd, &label, &options.expect(), Scope::Inherited)?, label))
    }

    /// Sends the ring's descriptor over a Unix stream socket (`SCM_RIGHTS`,
    /// with one byte of data).
    ///
    /// Whoever holds the socket's other end can then write the ring, and
    /// nothing proves who that is (peer credentials name whoever made or
    /// connected the socket). So the ring is first marked as handed out, in
    /// its own header, for every process and every `AnonymousRing` of it:
    /// from then on no handle lends its memory in place. And it is sent only
    /// while no live handle, in any process, lends it
    /// ([`Error::PermissionDenied`] otherwise: send it before attaching
    /// them, or attach them with [`RingOptions::borrow_in_place`]`(false)`).
    pub fn send_over(&self, socket: &UnixStream) -> Result<(), Error> {
        // SeqCst, as the attach side (`may_lend`): either a handle sees the
        // mark and copies, or this sees the handle's `lends` and refuses.
        let header = self.segment.header();
        header.identity.flags.fetch_or(FLAG_HANDED_OUT, Ordering::SeqCst);
        let producers = (0..self.segment.identity().max_producers as usize).map(Slot::Producer);
        let lending = std::iter::once(Slot::Consumer).chain(producers).any(|slot| {
            header.ring.participant(slot).is_some_and(|p| p.lends.load(Ordering::SeqCst) != 0)
                && self.segment.is_locked(slot)
        });
        if lending {
            return Err(Error::PermissionDenied {
                segment: format!("memfd:{}", self.label),
                detail: "it would be sent to another process while a live handle lends its memory in place: \
                         send it before attaching handles, or attach them with RingOptions::borrow_in_place(false)"
                    .to_owned(),
            });
        }
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let fds = [self.segment.fd()];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        sendmsg(socket, &[std::io::IoSlice::new(b"R")], &mut control, SendFlags::empty())
            .map_err(|e| Error::from_os(&format!("memfd:{}", self.label), "sendmsg", e))?;
        Ok(())
    }

    /// Receives a ring's descriptor sent with [`send_over`](Self::send_over)
    /// and validates it exactly as a named segment is validated (the peer can
    /// send anything): a memfd sealed against shrinking, large enough, with a
    /// valid header of the options' kind. Its handles copy rather than lend
    /// in place: who else holds it cannot be known (the trust rule, see
    /// [`RingOptions::borrow_in_place`]).
    pub fn receive_from(socket: &UnixStream, options: &RingOptions) -> Result<AnonymousRing, Error> {
        use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
        let label = "received".to_owned();
        let os_error = |op, e| Error::from_os(&format!("memfd:{label}"), op, e);
        let mut byte = [0u8; 1];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(socket, &mut [std::io::IoSliceMut::new(&mut byte)], &mut control, RecvFlags::CMSG_CLOEXEC)
            .map_err(|e| os_error("recvmsg", e))?;
        let mut received = None;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                // Keep the first; any others are closed as the iterator drops them.
                for fd in fds {
                    received.get_or_insert(fd);
                }
            }
        }
        let Some(fd) = received.filter(|_| got.bytes == 1) else {
            return Err(os_error("recvmsg", rustix::io::Errno::BADMSG));
        };
        // Reopened: the received descriptor shares the sender's open file
        // description, and so would its locks.
        let segment = Segment::open_memfd(fd.as_raw_fd(), &label, &options.expect(), Scope::Inherited)?;
        // Crossed a socket: nobody's handles lend it in place any more.
        segment.header().identity.flags.fetch_or(FLAG_HANDED_OUT, Ordering::SeqCst);
        Ok(AnonymousRing::new(segment, label))
    }

    /// Attaches as a producer (reopening the memfd: see the type's docs).
    pub fn producer(&self, options: &RingOptions) -> Result<Producer, Error> {
        Producer::attach(segment_for(Target::Anonymous(self), options)?, options)
    }

    /// Attaches as the consumer (reopening the memfd: see the type's docs).
    pub fn consumer(&self, options: &RingOptions) -> Result<Consumer, Error> {
        Consumer::attach(segment_for(Target::Anonymous(self), options)?, options)
    }

    pub(super) fn label(&self) -> &str {
        &self.label
    }

    pub(super) fn segment(&self) -> &Segment {
        &self.segment
    }
}

impl AsFd for AnonymousRing {
    /// The memfd, for passing to a child (clear `FD_CLOEXEC` on a duplicate)
    /// or another process. The trust rule assumes it goes to this user's
    /// processes only: handing it to a process of another user this way,
    /// which [`send_over`](AnonymousRing::send_over) would refuse while
    /// handles lend in place, needs this process's handles attached with
    /// [`RingOptions::borrow_in_place`]`(false)`.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.segment.fd()
    }
}
