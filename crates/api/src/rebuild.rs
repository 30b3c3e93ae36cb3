//! `rectify rebuild`: builds the views anew from the log as the next generation beside the current one, then
//! either compares (`--check`: are the current views exactly the fold of the log up to their checkpoint?)
//! and discards it, or switches to it.

use crate::server::{Settings, open_log};
use anyhow::{Context, bail};
use rectify_projector::{Generations, Projector};
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
    let generations = Generations::new(settings.data_dir.join("views"));
    if check && generations.left_open_by_an_earlier_boot()? {
        // Opening them would replace them: a check changes nothing and says so.
        let reason = "they were open when the machine went down, so they are not trusted (`serve` builds them again)";
        return Ok(Outcome { position: 0, entries: 0, first_difference: Some(reason.into()) });
    }
    let log = open_log(settings).await?;
    let (current, generation) =
        generations.open_current().context("opening the current views (is the service still running?)")?;
    // A check compares at the current views' position; a rebuild goes to the head.
    let until = if check { current.checkpoint()? } else { log.head().await? };
    let next = generations.create(generation + 1)?;
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
    let entries = next.count_entries()?;
    let mut first_difference = None;
    if check {
        // Streamed side by side: the views of a large log do not fit in memory as JSON.
        let (mut live, mut rebuilt) = (current.entries(), next.entries());
        loop {
            let (a, b) = (live.next().transpose()?, rebuilt.next().transpose()?);
            if a.is_none() && b.is_none() {
                break;
            }
            if a != b {
                let key = |e: Option<(String, serde_json::Value)>| e.map_or("<end>".to_owned(), |e| e.0);
                first_difference = Some(format!("views have {} where a rebuild has {}", key(a), key(b)));
                break;
            }
        }
        drop((next, projector, current));
        generations.remove_others(generation)?;
    } else {
        next.flush().await?;
        drop((next, projector, current));
        generations.switch(generation + 1)?;
        generations.remove_others(generation + 1)?;
    }
    generations.close()?;
    Ok(Outcome { position, entries, first_difference })
}
