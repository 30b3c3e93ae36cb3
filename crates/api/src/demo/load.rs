//! Runs a plan through the command pipeline — the same `Pipeline::run` the HTTP handlers use — many
//! problems at a time, each problem's commands in order.
//!
//! Steps are dispatched in business-time order with up to `concurrency` in flight; a step waits for the
//! previous step of its own stream to finish, nothing else. Since the embedded log commits a whole batch of
//! appends with one flush, throughput grows with the number in flight. The log ends up close to business
//! order, so a dashboard watching the load sees the campaign unfold.

use super::plan::Plan;
use crate::pipeline::Pipeline;
use anyhow::Context;
use futures::FutureExt;
use futures::StreamExt;
use futures::future::Shared;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A step not run because the step before it on its stream did not complete.
#[derive(Debug, thiserror::Error)]
#[error("scenario step {seq} of {stream} skipped: the step before it did not complete")]
pub struct Skipped {
    pub stream: String,
    pub seq: u32,
}

/// Commands in flight by default.
pub const CONCURRENCY: usize = 512;

/// What a load did.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// Commands appended now.
    pub appended: u64,
    /// Commands the log already had (a resumed load).
    pub repeated: u64,
    pub elapsed: Duration,
}

/// Runs every step of `plan` through `pipeline`, calling `progress` after each; stops at the first refusal.
pub async fn load(
    pipeline: &Pipeline,
    plan: Arc<Plan>,
    concurrency: usize,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Loaded> {
    let started = Instant::now();
    let mut previous: HashMap<u32, Shared<oneshot::Receiver<()>>> = HashMap::new();
    // After a failure no new step starts; the ones in flight finish, so that the first real error is known.
    let failed = Arc::new(AtomicBool::new(false));
    let stop = failed.clone();
    let steps = (0..plan.steps.len()).take_while(move |_| !stop.load(Ordering::Relaxed)).map(|k| {
        let stream = plan.steps[k].stream;
        let (done, finished) = oneshot::channel::<()>();
        let before = previous.insert(stream, finished.shared());
        let (pipeline, plan) = (pipeline.clone(), plan.clone());
        // Spawned so that deciding and sealing (hashing, encoding) spread over every core.
        tokio::spawn(async move {
            let step = &plan.steps[k];
            let id = &plan.streams[step.stream as usize];
            if let Some(before) = before
                && before.await.is_err()
            {
                // The stream's previous step failed or was cut off (an interrupted load): running this one
                // now could append it out of order, so it is left for a resumed load.
                return Err(Skipped { stream: id.to_string(), seq: step.seq }.into());
            }
            let ctx = plan.context(step, chrono::Utc::now());
            let outcome = pipeline.run(id, &ctx, &step.command, None).await;
            if outcome.is_ok() {
                let _ = done.send(());
            }
            outcome.map(|accepted| accepted.duplicate).with_context(|| {
                format!("scenario step {} ({} on {id} at {})", ctx.command_id, step.command.name(), step.at)
            })
        })
    });
    let mut running = futures::stream::iter(steps).buffer_unordered(concurrency.max(1));
    let (mut appended, mut repeated) = (0, 0);
    let mut error: Option<anyhow::Error> = None;
    while let Some(outcome) = running.next().await {
        match outcome.context("a scenario step panicked").and_then(|r| r) {
            Ok(true) => repeated += 1,
            Ok(false) => appended += 1,
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                // A skipped step only follows from another failure: report that one.
                if error.as_ref().is_none_or(|first| first.is::<Skipped>() && !e.is::<Skipped>()) {
                    error = Some(e);
                }
            }
        }
        progress(appended + repeated);
    }
    match error {
        Some(e) => Err(e),
        None => Ok(Loaded { appended, repeated, elapsed: started.elapsed() }),
    }
}
