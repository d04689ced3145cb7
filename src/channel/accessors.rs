//! The accessors `Producer` and `Consumer` share.

macro_rules! handle_accessors {
    ($handle:ident, $role:literal, $role_word:expr) => {
        impl $handle {
            /// `Err` in a process forked from the one that attached this
            /// handle. The check every operation starts with: a relaxed load
            /// of a process-local word and a comparison, no system call.
            #[inline(always)]
            fn this_process(&self) -> Result<(), crate::error::ForkedHandle> {
                if self.ring.inherited() {
                    return Err(self.forked());
                }
                Ok(())
            }

            #[cold]
            #[inline(never)]
            fn forked(&self) -> crate::error::ForkedHandle {
                crate::error::ForkedHandle::new(self.ring.backing().name(), $role_word)
            }

            #[doc = concat!("Creates a file-backed segment at `path` (`O_EXCL`: never an existing file) and attaches ")]
            #[doc = concat!("as ", $role, ". The file stays when the handle is dropped: it is the ring's storage.")]
            ///
            /// ```no_run
            #[doc = concat!("let mut handle = shmring::", stringify!($handle), "::create_file(\"/var/lib/app/journal.ring\", &shmring::RingOptions::new())?;")]
            /// handle.flush()?;
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn create_file(path: impl AsRef<std::path::Path>, options: &RingOptions) -> Result<$handle, Error> {
                let path = path.as_ref();
                options.check_liveness_interval(&path.to_string_lossy())?;
                Self::attach(Segment::create_file(path, &options.shape())?, options)
            }

            #[doc = concat!("Opens the file-backed segment at `path` as ", $role, ". After a restart of the machine ")]
            /// the ring is first recovered: what was flushed is kept, what was
            /// written after the last flush is dropped and counted (see
            /// [`Consumer::lost_records`]), and the consumer resumes from its
            /// last flushed position.
            ///
            /// ```no_run
            #[doc = concat!("let handle = shmring::", stringify!($handle), "::open_file(\"/var/lib/app/journal.ring\", &shmring::RingOptions::new())?;")]
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn open_file(path: impl AsRef<std::path::Path>, options: &RingOptions) -> Result<$handle, Error> {
                let path = path.as_ref();
                options.check_liveness_interval(&path.to_string_lossy())?;
                let segment = Segment::open_file(path, &options.expect())?;
                backing::recover_if_restarted(&segment)?;
                Self::attach(segment, options)
            }

            /// Writes every message committed so far, and the consumer's
            /// position, back to the file with `msync(MS_SYNC)`, and only then
            /// records in the header how far that goes: once this returns,
            /// those messages (and that position) survive the processes and the
            /// machine going down. In effect a no-op for shared memory and
            /// memfd rings, which do not outlive the machine.
            ///
            /// ```no_run
            #[doc = concat!("let handle = shmring::", stringify!($handle), "::open_file(\"/var/lib/app/journal.ring\", &shmring::RingOptions::new())?;")]
            /// handle.flush()?;
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            #[doc(alias = "msync")]
            pub fn flush(&self) -> Result<(), Error> {
                self.this_process()?;
                backing::flush(self.ring.backing())?;
                self.release_after_flush()
            }

            /// Starts writing back what is committed and the header
            /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`) without waiting for
            /// the disk, so that a later [`flush`](Self::flush) has less to
            /// wait for. It promises nothing after a crash of the machine:
            /// recovery keeps only what `flush` made durable. A no-op for
            /// shared memory and memfd rings.
            pub fn flush_async(&self) -> Result<(), Error> {
                self.this_process()?;
                let segment = self.ring.backing();
                let header = crate::ring::RingBacking::header(segment);
                let from = header.consumer.head.load(crate::sync::Ordering::Acquire);
                let to = header.producer.tail.load(crate::sync::Ordering::Acquire);
                segment.start_write_back(from, to)
            }

            /// This handle's counters (in a forked child: as they were at the
            /// fork).
            pub fn stats(&self) -> crate::ring::Stats {
                self.ring.stats()
            }

            /// The segment's name.
            pub fn name(&self) -> &str {
                self.ring.backing().name()
            }

            /// The ring's kind (SPSC or MPSC), as its header says.
            pub fn kind(&self) -> crate::Kind {
                self.ring.backing().kind()
            }

            /// Bytes in the data region.
            pub fn capacity(&self) -> usize {
                // The segment is mapped: its capacity fits the address space.
                self.ring.backing().identity().capacity as usize
            }

            /// The largest message the segment takes.
            pub fn max_message(&self) -> usize {
                self.ring.backing().identity().max_message as usize
            }

            /// The strategy blocking calls use.
            pub fn wait_strategy(&self) -> WaitStrategy {
                self.wait
            }

            /// Changes the strategy blocking calls use.
            pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
                self.wait = strategy;
            }
        }
    };
}
