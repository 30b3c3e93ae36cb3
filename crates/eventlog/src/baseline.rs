//! Raw baselines for `rectify bench`: what the storage under the log does without the log on top — acked
//! JetStream publishes of the same payloads, and an ordered replay of the embedded log's stored bytes into
//! a sled batch write. They live here because only this crate knows NATS and the on-disk log format.

use crate::EmbeddedLog;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::StreamExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Publishes `messages` (subject, payload) to a new file-storage stream `stream_name` holding
/// `<subject_prefix>.>`, with `in_flight` acked publishes outstanding at a time, and deletes the stream.
/// Returns the time from the first publish to the last ack. `done` counts acks as they come.
pub async fn jetstream_publish(
    url: &str,
    stream_name: &str,
    subject_prefix: &str,
    messages: Vec<(String, Bytes)>,
    in_flight: usize,
    done: &AtomicU64,
) -> Result<Duration, String> {
    let client = async_nats::connect(url).await.map_err(|e| format!("connecting to {url}: {e}"))?;
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: stream_name.to_owned(),
        subjects: vec![format!("{subject_prefix}.>")],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("creating stream {stream_name}: {e}"))?;
    let started = Instant::now();
    let js_ref = &js;
    let mut acks = futures::stream::iter(messages)
        .map(|(subject, payload)| async move {
            let ack = js_ref.publish(subject, payload).await.map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        })
        .buffer_unordered(in_flight.max(1));
    let mut failure = None;
    while let Some(ack) = acks.next().await {
        match ack {
            Ok(_) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => failure = Some(e),
        }
    }
    let elapsed = started.elapsed();
    drop(acks);
    let _ = js.delete_stream(stream_name).await;
    match failure {
        Some(e) => Err(format!("publishing: {e}")),
        None => Ok(elapsed),
    }
}

/// Deletes streams the bench created (best effort).
pub async fn delete_streams(url: &str, names: &[String]) {
    if let Ok(client) = async_nats::connect(url).await {
        let js = jetstream::new(client);
        for name in names {
            let _ = js.delete_stream(name).await;
        }
    }
}

/// Reads every stored commit of `log` in log order as the bytes on disk and writes them into a new sled
/// tree under `into`, `batch` commits per atomic batch (as a projector writes its views). Returns how many
/// commits and the time taken; `done` counts commits as they are written.
pub fn embedded_replay_write(
    log: &EmbeddedLog,
    into: &Path,
    batch: usize,
    done: &AtomicU64,
) -> Result<(u64, Duration), String> {
    let db = sled::Config::new().path(into).open().map_err(|e| format!("opening {}: {e}", into.display()))?;
    let tree = db.open_tree("replay").map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut count = 0;
    let mut writes = sled::Batch::default();
    let mut in_batch = 0u64;
    for item in log.raw_commits() {
        let (position, bytes) = item.map_err(|e| e.to_string())?;
        writes.insert(&position.to_be_bytes(), bytes);
        in_batch += 1;
        count += 1;
        if in_batch == batch.max(1) as u64 {
            tree.apply_batch(std::mem::take(&mut writes)).map_err(|e| e.to_string())?;
            done.fetch_add(in_batch, Ordering::Relaxed);
            in_batch = 0;
        }
    }
    tree.apply_batch(writes).map_err(|e| e.to_string())?;
    done.fetch_add(in_batch, Ordering::Relaxed);
    Ok((count, started.elapsed()))
}
