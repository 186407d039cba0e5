//! What an assignment is made of: the checks that make an item unassignable (campaign,
//! URL, build configuration, command), and the assignment JSON the worker gets.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::builder::{BuildLocations, Builder, get_builder};
use super::probe::Probed;
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::models::{ActiveRun, ResumeInfo};

/// Why an item cannot be handed out: a result code and a description.
pub(super) struct Unassignable {
    pub(super) code: &'static str,
    pub(super) description: String,
}

pub(super) fn unassignable(code: &'static str, description: impl Into<String>) -> Unassignable {
    Unassignable {
        code,
        description: description.into(),
    }
}

/// Everything the assignment needs, computed before the claim so that a bad item is
/// finished rather than handed out.
pub(super) struct Plan {
    command: String,
    command_env: BTreeMap<String, String>,
}

pub(super) fn plan(state: &AppState, run: &ActiveRun) -> Result<Plan, Unassignable> {
    let Some(campaign) = state.config.campaign(&run.campaign) else {
        return Err(unassignable(
            "unknown-campaign",
            format!("Campaign {} unknown", run.campaign),
        ));
    };
    if !campaign.default_empty() && run.main_branch_url().is_none() {
        return Err(unassignable("not-in-vcs", "No VCS URL known for codebase."));
    }
    get_builder(&state.config, campaign)
        .map_err(|e| unassignable("invalid-build-config", e.to_string()))?;
    if run.command.trim().is_empty() {
        return Err(unassignable("invalid-command", "queue item has no command"));
    }
    let (command_env, command) = crate::assign::command::splitout_env(&run.command)
        .map_err(|e| unassignable("invalid-command", e.to_string()))?;
    Ok(Plan {
        command,
        command_env,
    })
}

/// The campaign and builder `plan` has already checked.
pub(super) fn campaign_builder<'a>(
    state: &'a AppState,
    run: &ActiveRun,
) -> Result<(&'a crate::config::Campaign, Builder<'a>)> {
    let campaign = state
        .config
        .campaign(&run.campaign)
        .ok_or_else(|| Error::BadRequest(format!("Campaign {} unknown", run.campaign)))?;
    let builder =
        get_builder(&state.config, campaign).map_err(|e| Error::BadRequest(e.to_string()))?;
    Ok((campaign, builder))
}

fn build_locations(state: &AppState) -> BuildLocations<'_> {
    BuildLocations {
        apt_archive_url: state.settings.public_apt_archive_location.as_deref(),
        dep_server_url: state.settings.public_dep_server_url.as_deref(),
        host_vendor: &state.host_vendor,
    }
}

/// `build.config` of the assignment, read on the connection that holds the item (the Debian
/// builder reads the last built version; the generic builder reads nothing), so that no
/// connection is taken from the pool for it after the claim.
pub(super) async fn build_config(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    run: &ActiveRun,
) -> Result<Value> {
    let (_, builder) = campaign_builder(state, run)?;
    Ok(builder
        .config(
            conn,
            &build_locations(state),
            run.codebase(),
            run.change_set.as_deref(),
        )
        .await?)
}

/// The assignment JSON (models-backchannels-worker.md §7.4, with the DECISIONS.md rulings on the
/// worker contract).
pub(super) fn describe(
    state: &AppState,
    run: &ActiveRun,
    plan: &Plan,
    build_config: &Value,
    probed: &Probed,
) -> Result<Value> {
    let (campaign, builder) = campaign_builder(state, run)?;
    let locations = build_locations(state);
    let build_env = builder.build_env(&locations);
    let store = state
        .vcs_stores
        .get(&probed.vcs_type)
        .ok_or_else(|| Error::BadRequest(format!("no public VCS store for {}", probed.vcs_type)))?;
    let cached_url = store.branch_url(run.codebase(), &builder.cache_branch_name(&locations));
    let target_url = store.repository_url(run.codebase());
    let mut env: BTreeMap<String, String> = build_env.clone();
    if let Some(committer) = state
        .settings
        .committer
        .as_deref()
        .or(state.config.committer())
    {
        env.extend(crate::committer_env(Some(committer)));
    }
    env.extend(plan.command_env.clone());
    Ok(json!({
        "id": run.log_id,
        "description": format!("{} on {}", run.campaign, run.codebase()),
        "queue_id": run.queue_id,
        "branch": {
            "default-empty": campaign.default_empty(),
            "url": run.main_branch_url(),
            "subpath": run.subpath().unwrap_or(""),
            "vcs_type": probed.vcs_type,
            "cached_url": cached_url,
            "additional_colocated_branches": probed.colocated_branches,
        },
        "resume": probed.resume.as_ref().map(ResumeInfo::to_json),
        "build": {
            "target": builder.kind(),
            "environment": build_env,
            "config": build_config,
        },
        "command": plan.command,
        "codebase": run.codebase(),
        "codemod": {"command": plan.command, "environment": {}},
        "env": env,
        "campaign": run.campaign,
        "force-build": campaign.force_build(),
        "skip-setup-validation": campaign.skip_setup_validation(),
        "target_repository": {"url": target_url, "vcs_type": probed.vcs_type},
    }))
}
