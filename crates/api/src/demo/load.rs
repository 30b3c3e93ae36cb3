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
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

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
    let steps = (0..plan.steps.len()).map(|k| {
        let stream = plan.steps[k].stream;
        let (done, finished) = oneshot::channel::<()>();
        let before = previous.insert(stream, finished.shared());
        let (pipeline, plan) = (pipeline.clone(), plan.clone());
        // Spawned so that deciding and sealing (hashing, encoding) spread over every core.
        tokio::spawn(async move {
            if let Some(before) = before {
                // An error means the previous step's task is gone; its failure is reported on its own.
                let _ = before.await;
            }
            let step = &plan.steps[k];
            let id = &plan.streams[step.stream as usize];
            let ctx = plan.context(step, chrono::Utc::now());
            let outcome = pipeline.run(id, &ctx, &step.command, None).await;
            let _ = done.send(());
            outcome.map(|accepted| accepted.duplicate).with_context(|| {
                format!("scenario step {} ({} on {id} at {})", ctx.command_id, step.command.name(), step.at)
            })
        })
    });
    let mut running = futures::stream::iter(steps).buffer_unordered(concurrency.max(1));
    let (mut appended, mut repeated) = (0, 0);
    while let Some(outcome) = running.next().await {
        if outcome.context("a scenario step panicked")?? {
            repeated += 1;
        } else {
            appended += 1;
        }
        progress(appended + repeated);
    }
    Ok(Loaded { appended, repeated, elapsed: started.elapsed() })
}
