//! Codebase upload: validation and breezy URL normalisation, then one upsert.

use serde_json::{Map, Value};
use sqlx::PgPool;

use crate::assign::branch_url::{split_segment_parameters, unescape, with_branch};
use crate::db::ConstraintExt;
use crate::db::codebases::{self, Codebase};
use crate::error::{Error, Result};
use crate::models::is_vcs_type;
use crate::names::is_valid_name;

/// Stores every codebase of an upload (a JSON list), in one transaction: all or nothing.
/// Returns how many were written.
pub async fn upload(pool: &PgPool, body: &Value) -> Result<usize> {
    let entries = body
        .as_array()
        .ok_or_else(|| Error::bad_request("expected a JSON list of codebases"))?;
    let mut codebases = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| parse_entry(index, entry))
        .collect::<Result<Vec<_>>>()?;
    // Later entries win, as if each were written in turn.
    let mut seen = std::collections::HashSet::new();
    codebases.reverse();
    codebases.retain(|c| c.name.as_ref().is_none_or(|name| seen.insert(name.clone())));
    codebases.reverse();
    if codebases.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    codebases::upsert_many(&mut tx, &codebases)
        .await
        .on_constraint(|name| {
            (name == "codebase_branch_url_subpath_key").then(|| {
                Error::Conflict("two codebases would share a branch URL and subpath".to_string())
            })
        })?;
    tx.commit().await?;
    Ok(codebases.len())
}

fn parse_entry(index: usize, entry: &Value) -> Result<Codebase> {
    let at = |message: String| Error::BadRequest(format!("codebase {index}: {message}"));
    let obj = entry
        .as_object()
        .ok_or_else(|| at("must be a JSON object".to_string()))?;
    let text = |key: &str| string_field(obj, key).map_err(at);
    let name = text("name")?;
    if let Some(name) = &name
        && !is_valid_name(name)
    {
        return Err(at(format!(
            "invalid name {name:?}: lowercase letters, digits and +,-. only, at least 2 characters"
        )));
    }
    let vcs_type = text("vcs_type")?;
    if let Some(vcs) = &vcs_type
        && !is_vcs_type(vcs)
    {
        return Err(at(format!("unknown vcs_type {vcs:?}")));
    }
    let value = match obj.get("value") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| at("value must be a 32-bit integer".to_string()))?,
        ),
        Some(_) => return Err(at("value must be an integer or null".to_string())),
    };
    let mut branch = text("branch")?;
    let (branch_url, url) = if let Some(branch_url) = text("branch_url")? {
        let (url, parameters) =
            split_segment_parameters(&branch_url).map_err(|e| at(e.to_string()))?;
        if let Some(escaped) = parameters.get("branch") {
            branch = Some(unescape(escaped).map_err(|e| at(e.to_string()))?);
        }
        (Some(branch_url), Some(url))
    } else if let Some(branch_name) = &branch {
        let url = text("url")?.ok_or_else(|| at("a branch needs a url".to_string()))?;
        let branch_url = with_branch(&url, branch_name).map_err(|e| at(e.to_string()))?;
        (Some(branch_url), Some(url))
    } else {
        let url = text("url")?;
        (url.clone(), url)
    };
    if name.is_none() && branch_url.is_none() {
        return Err(at("needs a name or a URL".to_string()));
    }
    Ok(Codebase {
        name,
        branch_url,
        url,
        branch,
        subpath: text("subpath")?,
        vcs_type,
        web_url: text("web_url")?,
        vcs_last_revision: text("vcs_last_revision")?,
        value,
    })
}

fn string_field(
    obj: &Map<String, Value>,
    key: &str,
) -> std::result::Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string or null")),
    }
}
