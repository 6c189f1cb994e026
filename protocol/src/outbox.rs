//! Frames waiting to be written to one connection: appended from any task or thread, taken whole
//! by the one task that writes them, so a burst of frames leaves in one write. The client's
//! sessions (requests) and the server's connections (answers) both use it.

use std::sync::Mutex;

use tokio::sync::Notify;

/// Encoded frames not written yet, and the bell of the task that writes them.
#[derive(Default)]
pub struct Outbox {
    frames: Mutex<Vec<u8>>,
    ready: Notify,
}

impl Outbox {
    /// Appends one frame with `encode`; on error nothing of it stays. Rings the writer when the
    /// outbox was empty (a non-empty one has been rung already).
    pub fn append<E>(&self, encode: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        let first = {
            let mut frames = self.frames.lock().expect("outbox");
            let start = frames.len();
            if let Err(e) = encode(&mut frames) {
                frames.truncate(start);
                return Err(e);
            }
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
        spare.clear();
        std::mem::swap(&mut *self.frames.lock().expect("outbox"), spare);
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
    }
}
