//! Frames waiting to be written to one connection: appended from any task or thread, taken whole
//! by the one task that writes them, so a burst of frames leaves in one write. The client's
//! sessions (requests) and the server's connections (answers) both use it.

use std::sync::Mutex;

use tokio::sync::Notify;

/// Encoded frames not written yet, and the bell of the task that writes them.
#[derive(Default)]
pub struct Outbox {
    queued: Mutex<Queued>,
    ready: Notify,
}

#[derive(Default)]
struct Queued {
    frames: Vec<u8>,
    /// The tags of the tagged frames among them, in order (a client's sequence ids: it must
    /// know which requests were handed to the connection, and which never left).
    tags: Vec<i32>,
}

impl Outbox {
    /// Appends one frame with `encode`; on error nothing of it stays. Rings the writer when the
    /// outbox was empty (a non-empty one has been rung already).
    pub fn append<E>(&self, encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        self.push(None, encode)
    }

    /// As [`Outbox::append`], the frame tagged with `tag` ([`Outbox::take_tagged`] returns it).
    pub fn append_tagged<E>(
        &self,
        tag: i32,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.push(Some(tag), encode)
    }

    fn push<E>(
        &self,
        tag: Option<i32>,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let first = {
            let mut queued = self.queued.lock().expect("outbox");
            let start = queued.frames.len();
            if let Err(e) = encode(&mut queued.frames) {
                queued.frames.truncate(start);
                return Err(e);
            }
            queued.tags.extend(tag);
            start == 0
        };
        if first {
            self.ring();
        }
        Ok(())
    }

    /// Moves every queued frame into `spare` (emptied first), leaving `spare`'s old buffer in
    /// the outbox so both keep their capacity; false when nothing was queued.
    pub fn take(&self, spare: &mut Vec<u8>) -> bool {
        let mut tags = Vec::new();
        self.take_tagged(spare, &mut tags)
    }

    /// As [`Outbox::take`], with the tags of the frames taken in `tags` (emptied first).
    pub fn take_tagged(&self, spare: &mut Vec<u8>, tags: &mut Vec<i32>) -> bool {
        spare.clear();
        tags.clear();
        let mut queued = self.queued.lock().expect("outbox");
        std::mem::swap(&mut queued.frames, spare);
        std::mem::swap(&mut queued.tags, tags);
        !spare.is_empty()
    }

    /// Wakes the writer (or its next wait, if it is not waiting).
    pub fn ring(&self) {
        self.ready.notify_one();
    }

    /// Waits until [`Outbox::ring`] is called.
    pub async fn rung(&self) {
        self.ready.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_taken_whole_and_a_failed_encoding_leaves_nothing() {
        let outbox = Outbox::default();
        outbox
            .append(|b| {
                b.extend_from_slice(b"one");
                Ok::<_, ()>(())
            })
            .unwrap();
        // The first frame rang: the writer's next wait returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), outbox.rung())
            .await
            .expect("the first frame rings");
        assert!(
            outbox
                .append(|b| {
                    b.extend_from_slice(b"half");
                    Err(())
                })
                .is_err()
        );
        outbox
            .append(|b| {
                b.extend_from_slice(b"two");
                Ok::<_, ()>(())
            })
            .unwrap();
        let mut out = b"stale".to_vec();
        assert!(outbox.take(&mut out));
        assert_eq!(out, b"onetwo");
        assert!(!outbox.take(&mut out));
        assert!(out.is_empty());
        // Tagged frames give their tags back with them; a failed one leaves no tag.
        outbox
            .append_tagged(7, |b| {
                b.extend_from_slice(b"seven");
                Ok::<_, ()>(())
            })
            .unwrap();
        assert!(outbox.append_tagged(8, |_| Err(())).is_err());
        outbox
            .append(|b| {
                b.extend_from_slice(b"plain");
                Ok::<_, ()>(())
            })
            .unwrap();
        let mut tags = vec![1, 2];
        assert!(outbox.take_tagged(&mut out, &mut tags));
        assert_eq!(
            (out.as_slice(), tags.as_slice()),
            (&b"sevenplain"[..], &[7][..])
        );
    }
}
