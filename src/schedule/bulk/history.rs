//! What the bulk scheduler reads before it touches the queue: the candidates and their
//! static checks, the codebase values, and per (codebase, campaign) the run history the
//! estimator needs, aggregated in a few set queries run several at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDateTime;
use sqlx::PgPool;

use super::{Pair, Skipped};
use crate::db;
use crate::db::candidates::BulkCandidate;
use crate::db::run_history::{AverageBy, RunFilter};
use crate::schedule::Micros;
use crate::schedule::engine::{ScheduleError, deps_satisfied};
use crate::schedule::estimate::{DependencyRun, HistoryFacts, shares_context};

/// The value each publish mode adds in the bulk path. `push-derived` has none (Python:
/// KeyError).
fn publish_mode_value(mode: &str) -> Option<i64> {
    Some(match mode {
        "skip" | "build-only" => 0,
        "push" => 500,
        "propose" => 400,
        "attempt-push" => 450,
        "bts" => 100,
        _ => return None,
    })
}

/// Whether a named policy has no per-branch policy, and its publish modes.
type PolicyModes = (bool, Arc<[Option<String>]>);

/// A candidate with its named policy: whether that has no per-branch policy, and its publish
/// modes (shared by every candidate of the policy).
pub(super) struct Candidate {
    pub(super) row: BulkCandidate,
    policy_is_null: bool,
    modes: Arc<[Option<String>]>,
}

/// A candidate that passed the static checks, with what the Python would pass to
/// `do_schedule_regular` after its own re-read of the base candidate.
pub(super) struct Prepared {
    pub(super) candidate: BulkCandidate,
    pub(super) value: Option<i64>,
    pub(super) normalized: f64,
    pub(super) context: Option<String>,
}

impl Prepared {
    pub(super) fn key(&self) -> Pair {
        (
            self.candidate.codebase.clone(),
            self.candidate.campaign.clone(),
        )
    }
}

/// The counted runs of one (codebase, campaign), aggregated in SQL.
#[derive(Debug, Default)]
pub(super) struct PairHistory {
    /// Durations in seconds, newest first (the order the float sum needs).
    seconds: Vec<f64>,
    successes: u32,
    /// Counted unsatisfied-dependencies runs: (context, instigated context, relations).
    dependency_runs: Vec<(Option<String>, Option<String>, Option<serde_json::Value>)>,
    /// Candidate contexts that some counted run (not a dependency run) shares.
    same_contexts: HashSet<String>,
    /// The codebase's average duration over all campaigns (when read with the history).
    codebase_average: Option<Micros>,
}

/// Everything the in-memory scheduling needs, read before the queue is locked.
pub(super) struct Inputs {
    /// How many candidates were read.
    pub(super) candidates: usize,
    /// The candidates that passed the static checks, in candidate order.
    pub(super) prepared: Vec<Prepared>,
    /// The candidates the Python would have crashed on.
    pub(super) skipped: Vec<Skipped>,
    histories: HashMap<Pair, PairHistory>,
    /// Whether each distinct set of recorded relations is satisfiable, by its JSON text.
    satisfied: HashMap<String, bool>,
    codebase_averages: HashMap<String, Micros>,
    campaign_averages: HashMap<String, Micros>,
}

/// The reads, several at once on their own connections.
pub(super) async fn read_inputs(
    pool: &PgPool,
    now: NaiveDateTime,
    codebases: Option<&[String]>,
    campaign: Option<&str>,
) -> Result<Inputs, ScheduleError> {
    let (candidates, values, base) = tokio::try_join!(
        load_candidates(pool, codebases, campaign),
        load_codebase_values(pool),
        load_base_candidates(pool, codebases, campaign),
    )?;
    let count = candidates.len();
    let max_value = values.values().copied().max();
    let (mut prepared, mut skipped) = (Vec::with_capacity(count), Vec::new());
    for candidate in candidates {
        match prepare(candidate, &values, max_value, &base) {
            Ok(ready) => prepared.push(ready),
            Err(skip) => skipped.push(skip),
        }
    }
    let filter = RunFilter {
        codebases,
        campaign,
        now,
    };
    let (pivot, contexts) = (middle_codebase(&prepared), contexts_wanted(&prepared));
    let (mut histories, shared_contexts) = tokio::try_join!(
        load_histories(pool, filter, pivot.as_deref()),
        load_same_context(pool, now, &contexts),
    )?;
    for (codebase, campaign, context) in shared_contexts {
        if let Some(history) = histories.get_mut(&(codebase, campaign)) {
            history.same_contexts.insert(context);
        }
    }
    let (satisfied, (codebase_averages, campaign_averages)) = tokio::try_join!(
        check_dependencies(pool, &histories),
        load_averages(pool, &prepared, &histories, campaign.is_none()),
    )?;
    Ok(Inputs {
        candidates: count,
        prepared,
        skipped,
        histories,
        satisfied,
        codebase_averages,
        campaign_averages,
    })
}

impl Inputs {
    /// The facts the estimator reads for one candidate, and its fallback duration.
    pub(super) fn estimate(&self, ready: &Prepared) -> crate::schedule::Estimate {
        let no_history = PairHistory::default();
        let history = self.histories.get(&ready.key()).unwrap_or(&no_history);
        let context = ready.context.as_deref();
        let dependency_runs: Vec<DependencyRun> = history
            .dependency_runs
            .iter()
            .map(|(run_context, instigated, relations)| DependencyRun {
                relations: relations.clone(),
                same_context: shares_context(
                    context,
                    run_context.as_deref(),
                    instigated.as_deref(),
                ),
            })
            .collect();
        let same_context = context.is_some_and(|context| history.same_contexts.contains(context));
        crate::schedule::estimate::estimate_from_facts(
            HistoryFacts {
                seconds: &history.seconds,
                successes: history.successes,
                same_context,
                dependency_runs: &dependency_runs,
            },
            context,
            |relations| {
                self.satisfied
                    .get(&relations.to_string())
                    .copied()
                    .unwrap_or(false)
            },
        )
    }

    /// The duration of a candidate without counted runs: its codebase's average over all
    /// campaigns, else its campaign's over all codebases, else the default.
    pub(super) fn fallback_duration(&self, candidate: &BulkCandidate) -> Micros {
        self.codebase_averages
            .get(&candidate.codebase)
            .or_else(|| self.campaign_averages.get(&candidate.campaign))
            .copied()
            .unwrap_or(crate::schedule::DEFAULT_ESTIMATED_DURATION)
    }
}

/// The middle codebase among the candidates, which splits the history read in two.
fn middle_codebase(prepared: &[Prepared]) -> Option<String> {
    let mut names: Vec<&str> = prepared
        .iter()
        .map(|ready| ready.candidate.codebase.as_str())
        .collect();
    names.sort_unstable();
    names
        .get(names.len() / 2)
        .map(std::string::ToString::to_string)
}

/// The distinct (codebase, campaign, context) of candidates with a non-empty context: the
/// only ones a same-context penalty can apply to.
fn contexts_wanted(prepared: &[Prepared]) -> HashSet<(String, String, String)> {
    prepared
        .iter()
        .filter_map(|ready| {
            let context = ready.context.as_deref().filter(|c| !c.is_empty())?;
            Some((
                ready.candidate.codebase.clone(),
                ready.candidate.campaign.clone(),
                context.to_string(),
            ))
        })
        .collect()
}

/// The static checks, in the order the Python would fail them, and the base-candidate
/// re-read of `do_schedule_regular`.
fn prepare(
    candidate: Candidate,
    values: &HashMap<String, i64>,
    max_value: Option<i64>,
    base: &HashMap<Pair, (Option<i32>, Option<String>)>,
) -> Result<Prepared, Skipped> {
    let Candidate {
        row: candidate,
        policy_is_null,
        modes,
    } = candidate;
    let skip = |candidate: &BulkCandidate, reason: String| Skipped {
        codebase: candidate.codebase.clone(),
        campaign: candidate.campaign.clone(),
        reason,
    };
    if policy_is_null {
        return Err(skip(
            &candidate,
            "publish policy has no per-branch policy".into(),
        ));
    }
    let mut value =
        bulk_value(candidate.value, &modes).map_err(|reason| skip(&candidate, reason))?;
    let normalized = match max_value {
        None => 1.0,
        Some(0) => {
            return Err(skip(
                &candidate,
                ScheduleError::ZeroMaximumValue.to_string(),
            ));
        }
        Some(max) => {
            (values.get(&candidate.codebase).copied().unwrap_or(0) as f64 / max as f64).min(1.0)
        }
    };
    let mut context = candidate.context.clone();
    if value.is_none() || candidate.success_chance.is_none() {
        let key = (candidate.codebase.clone(), candidate.campaign.clone());
        let Some((base_value, base_context)) = base.get(&key) else {
            let reason = ScheduleError::CandidateUnavailable {
                campaign: candidate.campaign.clone(),
                codebase: candidate.codebase.clone(),
            }
            .to_string();
            return Err(skip(&candidate, reason));
        };
        value = value.or(base_value.map(i64::from));
        if context.is_none() {
            context.clone_from(base_context);
        }
    }
    Ok(Prepared {
        candidate,
        value,
        normalized,
        context,
    })
}

/// The bulk value: the candidate's plus each publish mode's; the reason the Python would
/// fail on it otherwise.
fn bulk_value(value: Option<i32>, modes: &[Option<String>]) -> Result<Option<i64>, String> {
    let mut value = value.map(i64::from);
    for mode in modes {
        match (mode.as_deref().and_then(publish_mode_value), value) {
            (Some(extra), Some(v)) => value = Some(v + extra),
            (Some(_), None) => {
                return Err("candidate has no value but its policy has entries".into());
            }
            (None, _) => {
                return Err(format!(
                    "publish mode {} has no scheduling value",
                    mode.as_deref().unwrap_or("NULL")
                ));
            }
        }
    }
    Ok(value)
}

async fn load_candidates(
    pool: &PgPool,
    codebases: Option<&[String]>,
    campaign: Option<&str>,
) -> Result<Vec<Candidate>, sqlx::Error> {
    // The few named policies are read once rather than unnested for every candidate.
    let (rows, policies) = tokio::try_join!(
        db::candidates::for_bulk(pool, codebases, campaign),
        db::publish_policies::modes(pool),
    )?;
    let policies: HashMap<String, PolicyModes> = policies
        .into_iter()
        .map(|(name, is_null, modes)| (name, (is_null, modes.into())))
        .collect();
    // A candidate without a (known) policy is not scheduled, as the inner join in Python.
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let (policy_is_null, modes) = policies.get(row.publish_policy.as_deref()?)?;
            Some(Candidate {
                row,
                policy_is_null: *policy_is_null,
                modes: modes.clone(),
            })
        })
        .collect())
}

/// Codebase values as the bulk path normalises them (NULL counts as 0).
async fn load_codebase_values(pool: &PgPool) -> Result<HashMap<String, i64>, sqlx::Error> {
    Ok(db::codebases::values(pool)
        .await?
        .into_iter()
        .map(|(name, value)| (name, i64::from(value.unwrap_or(0))))
        .collect())
}

/// Base candidates (no change set), re-read when a success chance is missing.
async fn load_base_candidates(
    pool: &PgPool,
    codebases: Option<&[String]>,
    campaign: Option<&str>,
) -> Result<HashMap<Pair, (Option<i32>, Option<String>)>, sqlx::Error> {
    Ok(db::candidates::base_for_bulk(pool, codebases, campaign)
        .await?
        .into_iter()
        .map(|(codebase, campaign, value, context)| ((codebase, campaign), (value, context)))
        .collect())
}

/// Per (codebase, campaign): the counted runs' durations, the successes, the codebase's
/// average duration over all campaigns, and the unsatisfied-dependencies runs.
async fn load_histories(
    pool: &PgPool,
    filter: RunFilter<'_>,
    pivot: Option<&str>,
) -> Result<HashMap<Pair, PairHistory>, sqlx::Error> {
    // Two halves, split at the middle codebase, on two connections, so both cores work on it
    // and each scans only its range of the (codebase, suite) index. The halves are
    // complementary under any collation.
    let (first, second, dependency_rows) = tokio::try_join!(
        db::run_history::pair_histories(pool, filter, pivot, true),
        db::run_history::pair_histories(pool, filter, pivot, false),
        db::run_history::dependency_runs(pool, filter),
    )?;
    let mut histories: HashMap<Pair, PairHistory> = HashMap::new();
    for (codebase, campaign, seconds, successes, average) in first.into_iter().chain(second) {
        histories.insert(
            (codebase, campaign),
            PairHistory {
                seconds: seconds.unwrap_or_default(),
                successes: u32::try_from(successes).unwrap_or(u32::MAX),
                dependency_runs: Vec::new(),
                same_contexts: HashSet::new(),
                codebase_average: average.as_ref().map(Micros::from_interval),
            },
        );
    }
    for (codebase, campaign, context, instigated, details) in dependency_rows {
        let relations = details
            .as_ref()
            .and_then(|details| details.get("relations"))
            .filter(|relations| crate::models::is_truthy(relations))
            .cloned();
        histories
            .entry((codebase, campaign))
            .or_default()
            .dependency_runs
            .push((context, instigated, relations));
    }
    Ok(histories)
}

/// Of the wanted (codebase, campaign, context) triples, those some counted run other than an
/// unsatisfied-dependencies one shares.
async fn load_same_context(
    pool: &PgPool,
    now: NaiveDateTime,
    wanted: &HashSet<(String, String, String)>,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let (mut codebases, mut campaigns, mut contexts) = (Vec::new(), Vec::new(), Vec::new());
    for (codebase, campaign, context) in wanted {
        codebases.push(codebase.as_str());
        campaigns.push(campaign.as_str());
        contexts.push(context.as_str());
    }
    db::run_history::shared_contexts(pool, now, &codebases, &campaigns, &contexts).await
}

/// Whether each distinct set of recorded relations is satisfiable now, by its JSON text.
async fn check_dependencies(
    pool: &PgPool,
    histories: &HashMap<Pair, PairHistory>,
) -> Result<HashMap<String, bool>, sqlx::Error> {
    let mut satisfied = HashMap::new();
    let mut conn = None;
    for history in histories.values() {
        for relations in history
            .dependency_runs
            .iter()
            .filter_map(|run| run.2.as_ref())
        {
            let key = relations.to_string();
            if satisfied.contains_key(&key) {
                continue;
            }
            let conn = match &mut conn {
                Some(conn) => conn,
                None => conn.insert(pool.acquire().await?),
            };
            let ok = deps_satisfied(conn, relations).await?;
            satisfied.insert(key, ok);
        }
    }
    Ok(satisfied)
}

/// Duration fallbacks for candidates without counted runs: the codebase's average over all
/// campaigns, else the campaign's over all codebases, averaged in SQL for the same rounding.
/// Only the codebases and campaigns some candidate falls back to are averaged.
async fn load_averages(
    pool: &PgPool,
    prepared: &[Prepared],
    histories: &HashMap<Pair, PairHistory>,
    codebase_averages_read: bool,
) -> Result<(HashMap<String, Micros>, HashMap<String, Micros>), sqlx::Error> {
    let without_history: Vec<&Prepared> = prepared
        .iter()
        .filter(|ready| {
            histories
                .get(&ready.key())
                .is_none_or(|h| h.seconds.is_empty())
        })
        .collect();
    let codebases: HashSet<&str> = without_history
        .iter()
        .map(|ready| ready.candidate.codebase.as_str())
        .collect();
    // Without a campaign filter the history query saw every run of these codebases and
    // averaged them already; a codebase it has no row for has no non-transient run.
    let codebase_averages = if codebase_averages_read {
        histories
            .iter()
            .filter(|((codebase, _), _)| codebases.contains(codebase.as_str()))
            .filter_map(|((codebase, _), h)| Some((codebase.clone(), h.codebase_average?)))
            .collect()
    } else {
        averages(pool, AverageBy::Codebase, codebases.into_iter().collect()).await?
    };
    let campaigns: HashSet<&str> = without_history
        .iter()
        .filter(|ready| !codebase_averages.contains_key(&ready.candidate.codebase))
        .map(|ready| ready.candidate.campaign.as_str())
        .collect();
    let campaign_averages =
        averages(pool, AverageBy::Campaign, campaigns.into_iter().collect()).await?;
    Ok((codebase_averages, campaign_averages))
}

/// Non-transient average durations per codebase or campaign among `keys`.
async fn averages(
    pool: &PgPool,
    by: AverageBy,
    keys: Vec<&str>,
) -> Result<HashMap<String, Micros>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(db::run_history::average_durations(pool, by, &keys)
        .await?
        .into_iter()
        .filter_map(|(key, average)| Some((key, Micros::from_interval(&average?))))
        .collect())
}
