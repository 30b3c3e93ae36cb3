//! Following the log from a position on, as the projector and the audit index do: batches of records that
//! resume, after a failure, where the last batch ended.

use crate::{EventLog, ReadError, Record};
use futures::stream::{self, BoxStream, ReadyChunks, StreamExt};
use std::sync::Arc;
use std::time::Duration;

/// The pause before the tail is opened again after a failure; it doubles while failures repeat.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

struct Follow {
    log: Arc<dyn EventLog>,
    /// The position after the last record yielded.
    next: u64,
    tail: Option<ReadyChunks<BoxStream<'static, Result<Record, ReadError>>>>,
    /// Set after a failure: the wait before the tail is opened again.
    pause: Option<Duration>,
}

impl Follow {
    /// Drops the tail, to open it again after a pause (longer than the last one, if any).
    fn reopen(&mut self, error: Option<ReadError>, who: &str) {
        let pause = self.pause.map_or(FIRST_PAUSE, |p| (p * 2).min(LONGEST_PAUSE));
        if let Some(error) = error {
            tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "{who} lost the log; resuming");
        }
        (self.tail, self.pause) = (None, Some(pause));
    }
}

/// The records of `log` from position `from` on, in batches of at most `max` (what the tail has ready at
/// once). Where the tail fails, the failure is logged as `who` losing the log, and the tail is opened again
/// after the last record yielded, after a pause that doubles from 100 ms to 5 s while failures repeat.
/// Never ends.
pub fn follow(log: Arc<dyn EventLog>, from: u64, max: usize, who: &'static str) -> BoxStream<'static, Vec<Record>> {
    let state = Follow { log, next: from, tail: None, pause: None };
    stream::unfold(state, move |mut s| async move {
        loop {
            let tail = match &mut s.tail {
                Some(tail) => tail,
                None => {
                    if let Some(pause) = s.pause {
                        tokio::time::sleep(pause).await;
                    }
                    s.tail.insert(s.log.tail(s.next).ready_chunks(max))
                }
            };
            // A tail that ends (a closed log) is opened again like a failed one.
            let Some(items) = tail.next().await else {
                s.reopen(None, who);
                continue;
            };
            let mut records = Vec::with_capacity(items.len());
            let mut error = None;
            for item in items {
                match item {
                    Ok(record) => records.push(record),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            if let Some(last) = records.last() {
                s.next = last.position + 1;
            }
            match error {
                Some(error) => s.reopen(Some(error), who),
                None => s.pause = None,
            }
            if !records.is_empty() {
                return Some((records, s));
            }
        }
    })
    .boxed()
}
