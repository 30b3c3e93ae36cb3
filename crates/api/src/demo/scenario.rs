//! The parameters of a scenario (a TOML file such as `scenarios/guizhou-2020.toml`) and the figures they
//! promise. Totals are exact counts; shares become exact counts by rounding, never sampled rates.

use anyhow::{Context, bail, ensure};
use chrono::NaiveDate;
use rectify_domain::values::Sector;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The Guizhou 2020–2022 campaign, built into the binary.
pub const GUIZHOU_2020: &str = include_str!("../../../../scenarios/guizhou-2020.toml");

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub name: String,
    pub name_en: String,
    pub seed: u64,
    pub period: Period,
    pub totals: Totals,
    pub open: OpenShares,
    pub rates: Rates,
    pub days: Days,
    pub activity: Activity,
    pub severity: SeverityShares,
    pub sectors: BTreeMap<Sector, f64>,
    #[serde(default)]
    pub sector_affinity: BTreeMap<Sector, BTreeMap<String, f64>>,
    pub prefectures: BTreeMap<String, f64>,
    pub enforcement: EnforcementParams,
}

/// Business days (Asia/Shanghai).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub enforcement_from: NaiveDate,
}

/// The published totals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub inspections: u64,
    pub found: u64,
    pub fixed: u64,
    pub voided: u64,
    pub listed: u64,
}

/// How the open problems stand at the end, as shares of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenShares {
    pub reported_share: f64,
    pub pending_acceptance_share: f64,
    pub overdue_share: f64,
}

/// Lifecycle rates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    pub immediate_share: f64,
    pub closed_late_share: f64,
    pub reopened_share: f64,
    pub rejected_share: f64,
    pub extension_requested_share: f64,
    pub extension_approved_share: f64,
    pub county_reported_share: f64,
    pub province_listed_share: f64,
}

/// Inclusive ranges of whole days.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Days {
    pub immediate: [i64; 2],
    pub time_limited: [i64; 2],
    pub extension: [i64; 2],
    pub late: [i64; 2],
    pub decision: [i64; 2],
    pub reopen_after: [i64; 2],
    pub reopen_due: [i64; 2],
    pub open_due_after_end: [i64; 2],
    pub progress_reports: [i64; 2],
}

/// When problems were found.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    pub decay_per_year: f64,
    pub open_recency_days: f64,
    pub problems_per_finding_inspection: Vec<f64>,
}

/// Shares of the severities.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityShares {
    pub general: f64,
    pub major: f64,
    pub serious: f64,
}

/// Enforcement totals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforcementParams {
    pub penalty_cases: u64,
    pub penalty_total_yuan: u64,
    pub penalty_min_yuan: u64,
    pub penalty_spread: f64,
    pub daily_penalty_cases: u64,
    pub daily_penalty_total_yuan: u64,
    pub daily_penalty_days: [i64; 2],
    pub seal_seizure: u64,
    pub production_limit: u64,
    pub detention_referral: u64,
    pub criminal_referral: u64,
}

/// The counts a scenario promises, derived from its parameters alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Figures {
    pub inspections: u64,
    pub found: u64,
    pub fixed: u64,
    pub open: u64,
    pub voided: u64,
    pub listed: u64,
    /// Open problems without a deadline yet.
    pub open_reported: u64,
    pub open_pending: u64,
    pub overdue: u64,
    pub immediate: u64,
    pub time_limited: u64,
    pub closed_late: u64,
    pub closed_on_time: u64,
    pub reopened: u64,
    pub extension_requests: u64,
    pub extensions: u64,
    pub penalties: u64,
    pub penalty_fen: u64,
    pub daily_penalties: u64,
    pub daily_penalty_fen: u64,
    pub seal_seizures: u64,
    pub production_limits: u64,
    pub detention_referrals: u64,
    pub criminal_referrals: u64,
}

/// `share × base`, rounded half away from zero.
pub fn share_of(base: u64, share: f64) -> u64 {
    (base as f64 * share).round().max(0.0) as u64
}

fn check_share(name: &str, v: f64) -> anyhow::Result<()> {
    ensure!(v.is_finite() && (0.0..=1.0).contains(&v), "{name} must be a share between 0 and 1, not {v}");
    Ok(())
}

fn check_range(name: &str, [lo, hi]: [i64; 2], min: i64) -> anyhow::Result<()> {
    ensure!(lo >= min && lo <= hi, "days.{name} must be [low, high] with {min} ≤ low ≤ high, not [{lo}, {hi}]");
    Ok(())
}

impl Params {
    /// The built-in Guizhou scenario.
    pub fn guizhou() -> Params {
        Params::parse(GUIZHOU_2020).expect("the built-in scenario is valid")
    }

    /// Parses and checks a scenario file's text.
    pub fn parse(text: &str) -> anyhow::Result<Params> {
        let params: Params = toml::from_str(text).context("reading the scenario")?;
        params.figures()?;
        Ok(params)
    }

    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Params> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Params::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The same scenario with every count (and the fines) multiplied by `factor`, rates unchanged.
    pub fn scaled(&self, factor: f64) -> anyhow::Result<Params> {
        ensure!(factor.is_finite() && factor > 0.0 && factor <= 1.0, "--scale must be in (0, 1], not {factor}");
        let s = |n: u64| share_of(n, factor);
        let mut p = self.clone();
        let open = self.totals.found - self.totals.fixed;
        p.totals.fixed = s(self.totals.fixed);
        p.totals.found = p.totals.fixed + s(open);
        p.totals.inspections = s(self.totals.inspections).max(p.totals.found);
        p.totals.voided = s(self.totals.voided);
        p.totals.listed = s(self.totals.listed);
        let e = &mut p.enforcement;
        e.penalty_cases = s(e.penalty_cases);
        e.penalty_total_yuan = s(e.penalty_total_yuan).max(e.penalty_cases * e.penalty_min_yuan);
        // A rare measure stays in a scaled-down scenario, so that every kind still shows.
        e.daily_penalty_cases = s(e.daily_penalty_cases).max(u64::from(e.daily_penalty_cases > 0));
        e.daily_penalty_total_yuan = s(e.daily_penalty_total_yuan).max(e.daily_penalty_cases);
        e.seal_seizure = s(e.seal_seizure);
        e.production_limit = s(e.production_limit);
        e.detention_referral = s(e.detention_referral);
        e.criminal_referral = s(e.criminal_referral);
        p.figures()?;
        Ok(p)
    }

    /// Checks the parameters and derives the figures they promise.
    pub fn figures(&self) -> anyhow::Result<Figures> {
        let t = &self.totals;
        let (o, r, e) = (&self.open, &self.rates, &self.enforcement);
        ensure!(t.fixed <= t.found, "totals.fixed ({}) exceeds totals.found ({})", t.fixed, t.found);
        ensure!(
            self.period.start < self.period.end,
            "period.start must come before period.end (and the period needs at least a day)"
        );
        ensure!(
            (self.period.start..=self.period.end).contains(&self.period.enforcement_from),
            "period.enforcement_from must lie in the period"
        );
        ensure!((self.period.end - self.period.start).num_days() >= 60, "the period must span at least 60 days");
        for (name, v) in [
            ("open.reported_share", o.reported_share),
            ("open.pending_acceptance_share", o.pending_acceptance_share),
            ("open.overdue_share", o.overdue_share),
            ("rates.immediate_share", r.immediate_share),
            ("rates.closed_late_share", r.closed_late_share),
            ("rates.reopened_share", r.reopened_share),
            ("rates.rejected_share", r.rejected_share),
            ("rates.extension_requested_share", r.extension_requested_share),
            ("rates.extension_approved_share", r.extension_approved_share),
            ("rates.county_reported_share", r.county_reported_share),
            ("rates.province_listed_share", r.province_listed_share),
        ] {
            check_share(name, v)?;
        }
        let d = &self.days;
        for (name, range, min) in [
            ("immediate", d.immediate, 1),
            ("time_limited", d.time_limited, 10),
            ("extension", d.extension, 1),
            ("late", d.late, 1),
            ("decision", d.decision, 1),
            ("reopen_after", d.reopen_after, 1),
            ("reopen_due", d.reopen_due, 1),
            ("open_due_after_end", d.open_due_after_end, 5),
            ("progress_reports", d.progress_reports, 0),
            ("enforcement.daily_penalty_days", e.daily_penalty_days, 1),
        ] {
            check_range(name, range, min)?;
        }
        let a = &self.activity;
        ensure!(a.decay_per_year > 0.0 && a.decay_per_year <= 1.0, "activity.decay_per_year must be in (0, 1]");
        ensure!(a.open_recency_days > 0.0, "activity.open_recency_days must be positive");
        ensure!(
            !a.problems_per_finding_inspection.is_empty()
                && a.problems_per_finding_inspection.iter().all(|w| *w >= 0.0)
                && a.problems_per_finding_inspection[0] > 0.0,
            "activity.problems_per_finding_inspection must be non-negative shares, the first (one problem) positive"
        );
        let sev = &self.severity;
        ensure!(
            [sev.general, sev.major, sev.serious].iter().all(|w| *w >= 0.0)
                && sev.general + sev.major + sev.serious > 0.0,
            "severity shares must be non-negative and not all zero"
        );
        ensure!(
            self.sectors.values().all(|w| *w >= 0.0) && self.sectors.values().sum::<f64>() > 0.0,
            "sector shares must be non-negative and not all zero"
        );
        ensure!(
            self.prefectures.values().all(|w| *w >= 0.0) && self.prefectures.values().sum::<f64>() > 0.0,
            "prefecture weights must be non-negative and not all zero"
        );

        let open = t.found - t.fixed;
        let open_reported = share_of(open, o.reported_share);
        let open_pending = share_of(open, o.pending_acceptance_share);
        let overdue = share_of(open, o.overdue_share);
        ensure!(open_reported + open_pending <= open, "open.reported_share + open.pending_acceptance_share exceed 1");
        ensure!(overdue <= open - open_reported, "open.overdue_share exceeds the open problems that have a deadline");
        let with_deadline = t.found - open_reported;
        let immediate = share_of(with_deadline, r.immediate_share);
        ensure!(
            immediate <= t.fixed,
            "rates.immediate_share asks for {immediate} immediate problems, but they must all be among the {} fixed",
            t.fixed
        );
        let time_limited = with_deadline - immediate;
        let closed_late = share_of(t.fixed, r.closed_late_share);
        let reopened = share_of(t.fixed, r.reopened_share);
        // Extensions: time-limited problems that are fixed or open without being overdue.
        let extension_requests = share_of(time_limited, r.extension_requested_share);
        ensure!(
            extension_requests <= time_limited - overdue,
            "rates.extension_requested_share asks for more extensions than there are time-limited problems"
        );
        let extensions = share_of(extension_requests, r.extension_approved_share);
        ensure!(t.listed <= with_deadline, "totals.listed exceeds the problems that have a deadline");
        ensure!(t.voided <= t.fixed, "totals.voided (duplicates of fixed problems) exceeds totals.fixed");
        let eligible = with_deadline;
        for (name, n) in [
            ("enforcement.penalty_cases", e.penalty_cases),
            ("enforcement.seal_seizure", e.seal_seizure),
            ("enforcement.production_limit", e.production_limit),
            ("enforcement.detention_referral", e.detention_referral),
            ("enforcement.criminal_referral", e.criminal_referral),
        ] {
            ensure!(n <= eligible, "{name} ({n}) exceeds the problems that have a deadline ({eligible})");
        }
        ensure!(e.daily_penalty_cases <= e.penalty_cases.max(1), "daily penalties follow penalties: too many");
        ensure!(
            e.penalty_total_yuan >= e.penalty_cases * e.penalty_min_yuan,
            "enforcement.penalty_total_yuan is below penalty_cases × penalty_min_yuan"
        );
        ensure!(
            e.penalty_cases == 0 || e.penalty_min_yuan > 0,
            "enforcement.penalty_min_yuan must be positive (a penalty has an amount)"
        );
        ensure!(
            e.daily_penalty_cases == 0 || e.daily_penalty_total_yuan >= e.daily_penalty_cases,
            "enforcement.daily_penalty_total_yuan must give each daily penalty a positive amount"
        );
        ensure!(e.penalty_spread.is_finite() && e.penalty_spread >= 0.0, "enforcement.penalty_spread must be ≥ 0");
        // Every finding inspection finds at least one problem.
        if t.inspections < t.found {
            bail!("totals.inspections ({}) must be at least totals.found ({})", t.inspections, t.found);
        }
        Ok(Figures {
            inspections: t.inspections,
            found: t.found,
            fixed: t.fixed,
            open,
            voided: t.voided,
            listed: t.listed,
            open_reported,
            open_pending,
            overdue,
            immediate,
            time_limited,
            closed_late,
            closed_on_time: t.fixed - closed_late,
            reopened,
            extension_requests,
            extensions,
            penalties: e.penalty_cases,
            penalty_fen: e.penalty_total_yuan * 100,
            daily_penalties: e.daily_penalty_cases,
            daily_penalty_fen: e.daily_penalty_total_yuan * 100,
            seal_seizures: e.seal_seizure,
            production_limits: e.production_limit,
            detention_referrals: e.detention_referral,
            criminal_referrals: e.criminal_referral,
        })
    }
}
