//! The kernel locks a segment's participants hold (liveness), the lock that
//! serialises recovery after a restart, and the boot id that tells one.

use super::*;

impl Segment {
    /// File segments: whether the machine restarted since the segment was
    /// last created or recovered (the header holds another boot id).
    pub(crate) fn restarted(&self) -> bool {
        load_boot_id(&self.header().ring.persistence) != current_boot_id()
    }

    /// Takes the lock that serialises recovery after a restart (waiting for
    /// it); released when the guard drops.
    pub(crate) fn lock_recovery(&self) -> Result<RecoveryLock<'_>, Error> {
        if self.recovery_lock(libc::F_WRLCK) != 0 {
            let errno = Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO);
            return Err(Error::from_os(&self.name, "fcntl(F_OFD_SETLKW)", errno));
        }
        Ok(RecoveryLock(self))
    }

    pub(super) fn recovery_lock(&self, kind: libc::c_int) -> libc::c_int {
        let mut lock = byte_lock_at(kind, RECOVERY_LOCK_BYTE);
        // SAFETY: `fcntl(F_OFD_SETLKW)` reads the `flock` we pass by
        // pointer, valid for the call; the descriptor is open.
        unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_OFD_SETLKW, &mut lock) }
    }

    /// Records this boot's id in the header and writes the header back: the
    /// segment is current (recovered, or proven not to need it).
    pub(crate) fn mark_booted(&self) -> Result<(), Error> {
        store_boot_id(&self.header().ring.persistence, current_boot_id());
        self.write_back_header()
    }

    /// Takes the participant lock of `slot`: `false` if a live process holds
    /// it.
    pub(crate) fn try_lock(&self, slot: Slot) -> Result<bool, Error> {
        let mut lock = byte_lock(libc::F_WRLCK, slot);
        // SAFETY: `fcntl(F_OFD_SETLK)` reads the `flock` we pass by pointer,
        // which is valid for the call; the descriptor is open (owned by self).
        let rc = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
        if rc == 0 {
            return Ok(true);
        }
        match Errno::from_io_error(&std::io::Error::last_os_error()) {
            Some(Errno::AGAIN) | Some(Errno::ACCESS) => Ok(false),
            Some(e) => Err(Error::from_os(&self.name, "fcntl(F_OFD_SETLK)", e)),
            None => Ok(false),
        }
    }

    /// Whether any participant (the consumer or a producer slot) holds its
    /// lock.
    pub(crate) fn any_participant_alive(&self) -> bool {
        let producers = (0..self.identity.max_producers as usize).map(Slot::Producer);
        std::iter::once(Slot::Consumer).chain(producers).any(|slot| self.is_locked(slot))
    }

    /// Releases the participant lock of `slot` (taken with
    /// [`try_lock`](Self::try_lock) by a producer that then found the slot
    /// unusable).
    pub(crate) fn unlock(&self, slot: Slot) -> Result<(), Error> {
        let mut lock = byte_lock(libc::F_UNLCK, slot);
        // SAFETY: `fcntl(F_OFD_SETLK)` reads the `flock` we pass by pointer,
        // which is valid for the call; the descriptor is open (owned by self).
        let rc = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
        if rc == 0 {
            return Ok(());
        }
        let errno = Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO);
        Err(Error::from_os(&self.name, "fcntl(F_OFD_SETLK, F_UNLCK)", errno))
    }

    /// Takes a shared lock on every participant's lock byte (the consumer's
    /// and each producer slot's) at once: `false` if a live participant
    /// holds one. Held until the segment is dropped; meanwhile no process
    /// can take a role in the segment (its `try_lock` fails). For removing a
    /// stale segment; works on a read-only segment.
    pub(crate) fn try_hold_participants(&self) -> Result<bool, Error> {
        let mut lock = byte_lock_at(libc::F_RDLCK, Slot::Consumer.lock_byte());
        // Bytes 0..=max_producers: the consumer's, then producer n's at 1 + n.
        lock.l_len = libc::off_t::from(self.identity.max_producers) + 1;
        // SAFETY: `fcntl(F_OFD_SETLK)` reads the `flock` we pass by pointer,
        // which is valid for the call; the descriptor is open (owned by self).
        let rc = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
        if rc == 0 {
            return Ok(true);
        }
        match Errno::from_io_error(&std::io::Error::last_os_error()) {
            Some(Errno::AGAIN) | Some(Errno::ACCESS) | None => Ok(false),
            Some(e) => Err(Error::from_os(&self.name, "fcntl(F_OFD_SETLK, F_RDLCK)", e)),
        }
    }

    /// Device and inode of the object (`fstat`): which file this is,
    /// whatever its name refers to now.
    pub(crate) fn file_id(&self) -> Result<(u64, u64), Error> {
        let stat = rustix::fs::fstat(&self.fd).map_err(|e| Error::from_os(&self.name, "fstat", e))?;
        Ok((stat.st_dev, stat.st_ino))
    }

    /// Whether some open file description (another handle, in any process)
    /// holds the participant lock of `slot`.
    pub(crate) fn is_locked(&self, slot: Slot) -> bool {
        let mut lock = byte_lock(libc::F_WRLCK, slot);
        // SAFETY: `fcntl(F_OFD_GETLK)` reads and writes the `flock` we pass by
        // pointer, valid for the call; the descriptor is open.
        let rc = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
        // If the probe itself fails, say "alive": a false "dead" would let a
        // second process take a live role.
        rc != 0 || lock.l_type != libc::F_UNLCK as libc::c_short
    }
}

/// The recovery lock of a segment, held until dropped (see
/// [`Segment::lock_recovery`]).
pub(crate) struct RecoveryLock<'a>(&'a Segment);

impl Drop for RecoveryLock<'_> {
    fn drop(&mut self) {
        self.0.recovery_lock(libc::F_UNLCK);
    }
}

/// A `flock` for one participant byte.
pub(super) fn byte_lock(kind: libc::c_int, slot: Slot) -> libc::flock {
    byte_lock_at(kind, slot.lock_byte())
}

/// A `flock` for the byte at `offset`.
pub(super) fn byte_lock_at(kind: libc::c_int, offset: u64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct of integers; all-zero is a valid
    // value (and the `l_pid` of 0 that OFD locks require).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = offset as libc::off_t;
    lock.l_len = 1;
    lock
}

/// The kernel's boot id as two words; zeros if it cannot be read (then a
/// file segment is recovered on every open that finds no participant alive:
/// safe, and only unflushed records are at stake).
pub(super) fn current_boot_id() -> [u64; 2] {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    match u128::from_str_radix(&hex, 16) {
        Ok(id) if hex.len() == 32 && id != 0 => [(id >> 64) as u64, id as u64],
        _ => [0, 0],
    }
}

pub(super) fn load_boot_id(line: &crate::layout::PersistenceLine) -> [u64; 2] {
    let id = [line.boot_id[0].load(Ordering::Relaxed), line.boot_id[1].load(Ordering::Relaxed)];
    // An unreadable boot id never matches, so such a segment is recovered.
    if id == [0, 0] {
        [u64::MAX; 2]
    } else {
        id
    }
}

pub(super) fn store_boot_id(line: &crate::layout::PersistenceLine, id: [u64; 2]) {
    line.boot_id[0].store(id[0], Ordering::Relaxed);
    line.boot_id[1].store(id[1], Ordering::Relaxed);
}
