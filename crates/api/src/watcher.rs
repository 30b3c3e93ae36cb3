//! The deadline watcher: turns passed deadlines into `problem_overdue` events, exactly once.
//!
//! Safe with several instances running: the command id is derived from the problem and the version the
//! watcher saw, so instances that saw the same state send the same command (a duplicate), and one that saw an
//! older state loses the version race and is then refused by the domain, which marks a problem overdue only
//! while it is not already.

use crate::pipeline::Pipeline;
use chrono::{DateTime, Utc};
use rectify_domain::{Actor, Command, CommandContext, RegionCode, Role};
use rectify_projector::ProjectorHandle;
use std::sync::Arc;
use std::time::Duration;

/// Where the watcher reads the time (injectable for tests).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// Scans the ledger for passed deadlines.
pub struct Watcher {
    pub pipeline: Pipeline,
    pub views: ProjectorHandle,
    pub clock: Clock,
    pub root: RegionCode,
    /// Completed sweeps (a gauge on /metrics, so tests and operators can tell the watcher is alive).
    pub sweeps: Arc<std::sync::atomic::AtomicU64>,
}

impl Watcher {
    /// Marks every problem whose deadline passed; returns how many were marked now.
    pub async fn sweep(&self) -> usize {
        let now = (self.clock)();
        let store = self.views.store();
        // The index lists candidates; the row says whether the deadline still needs marking.
        let rows = store.due_before(now).and_then(|ids| {
            ids.iter().filter_map(|id| store.ledger_row(id).transpose()).collect::<Result<Vec<_>, _>>()
        });
        let due: Vec<_> = match rows {
            Ok(rows) => rows
                .into_iter()
                .filter(|row| rectify_projector::DeadlineKey::of(row).is_some_and(|k| k.due < now))
                .collect(),
            Err(error) => {
                tracing::error!(%error, "deadline watcher cannot read the ledger");
                return 0;
            }
        };
        let mut marked = 0;
        for row in due {
            let Some(due) = row.state.problem().and_then(|p| p.due) else {
                continue;
            };
            let ctx = CommandContext {
                actor: Actor {
                    id: "system:deadline-watcher".into(),
                    role: Role::System,
                    region: self.root,
                    grid: None,
                },
                occurred_at: now,
                recorded_at: now,
                command_id: format!("overdue:{}:v{}", row.id, row.state.version),
                correlation_id: format!("overdue:{}", row.id),
            };
            match self.pipeline.run(&row.id, &ctx, &Command::MarkOverdue { due }, None).await {
                Ok(a) if !a.duplicate => marked += 1,
                Ok(_) => {}
                // The problem moved on (closed, extended, or another instance marked it): nothing to do.
                Err(
                    crate::error::ApiError::InvalidState(_)
                    | crate::error::ApiError::Invalid { .. }
                    | crate::error::ApiError::Conflict(_),
                ) => {}
                Err(error) => {
                    tracing::warn!(%error, problem = %row.id, "deadline watcher could not mark a problem overdue")
                }
            }
        }
        self.sweeps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        marked
    }

    /// Sweeps every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            self.sweep().await;
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
