//! `rectify rebuild`: builds the views anew from the log beside the current ones, then either compares
//! (`--check`: are the current views exactly the fold of the log up to their checkpoint?) or switches to
//! the new views.

use crate::server::{Settings, open_log};
use anyhow::{Context, bail};
use rectify_projector::{Projector, ViewStore};
use std::io::Write;
use std::time::Instant;

/// What a rebuild found or did.
#[derive(Debug)]
pub struct Outcome {
    pub position: u64,
    /// Entries (ledger rows, counter rows, command results) in the rebuilt views.
    pub entries: usize,
    /// For `--check`: the first entry where the current views differ from the rebuild, if any.
    pub first_difference: Option<String>,
}

/// Rebuilds the views of `settings.data_dir`. With `check`, compares and leaves everything as it was.
pub async fn rebuild(settings: &Settings, check: bool) -> anyhow::Result<Outcome> {
    let log = open_log(settings).await?;
    let current_dir = settings.data_dir.join("views");
    let next_dir = settings.data_dir.join("views.next");
    if next_dir.exists() {
        std::fs::remove_dir_all(&next_dir).with_context(|| format!("removing a stale {}", next_dir.display()))?;
    }
    let current = if current_dir.exists() || check {
        Some(ViewStore::open(&current_dir).context("opening the current views (is the service still running?)")?)
    } else {
        None
    };
    // A check compares at the current views' position; a rebuild goes to the head.
    let until = match (&current, check) {
        (Some(c), true) => c.checkpoint()?,
        _ => log.head().await?,
    };
    let next = ViewStore::open(&next_dir)?;
    let (projector, _) = Projector::new(log, next.clone())?;
    let started = Instant::now();
    let position = projector
        .catch_up_to(until, |at| {
            let rate = at as f64 / started.elapsed().as_secs_f64().max(1e-3);
            eprint!("\rrebuilding views: {at}/{until} commits ({rate:.0}/s)   ");
            let _ = std::io::stderr().flush();
        })
        .await?;
    eprintln!();
    if position != until {
        bail!("the log ended at {position}, before position {until}");
    }
    let rebuilt = next.dump()?;
    let entries = rebuilt.len();
    let mut first_difference = None;
    if check {
        let live = current.as_ref().expect("opened for a check").dump()?;
        let mut a = live.iter();
        let mut b = rebuilt.iter();
        loop {
            match (a.next(), b.next()) {
                (None, None) => break,
                (x, y) if x == y => {}
                (x, y) => {
                    let key = |e: Option<&(String, serde_json::Value)>| e.map_or("<end>".to_owned(), |e| e.0.clone());
                    first_difference = Some(format!("views have {} where a rebuild has {}", key(x), key(y)));
                    break;
                }
            }
        }
        next.flush().await?;
        drop(next);
        std::fs::remove_dir_all(&next_dir)?;
    } else {
        next.flush().await?;
        drop((next, projector, current));
        let old_dir = settings.data_dir.join("views.old");
        if current_dir.exists() {
            std::fs::rename(&current_dir, &old_dir)?;
        }
        std::fs::rename(&next_dir, &current_dir)?;
        if old_dir.exists() {
            std::fs::remove_dir_all(&old_dir)?;
        }
    }
    Ok(Outcome { position, entries, first_difference })
}
