//! Build targets: what the worker builds after the codemod, and how.
//!
//! A campaign with `debian_build` uses the Debian builder (its `base_distribution` must be a
//! configured distribution); one with `generic_build` the generic builder.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sqlx::PgConnection;

use crate::assign::upstream::OpenedBranch;
use crate::config::{Campaign, CampaignBuild, Config, DebianBuild, Distribution};

/// Why a campaign has no builder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuilderError {
    /// The campaign's `base_distribution` is not a configured distribution.
    #[error("Unsupported distribution: {0}")]
    UnsupportedDistribution(String),
    /// The campaign has neither a `debian_build` nor a `generic_build`.
    #[error("no supported build type")]
    NoBuildType,
}

/// How the worker builds a campaign's changes: the build target of its assignment.
#[derive(Debug, Clone)]
pub enum Builder<'a> {
    /// A campaign with `generic_build`.
    Generic {
        /// The chroot to build in; `None` where the campaign names none.
        chroot: Option<String>,
    },
    /// A campaign with `debian_build`.
    Debian {
        /// The campaign being built.
        campaign: &'a Campaign,
        /// The campaign's `debian_build` settings.
        build: &'a DebianBuild,
        /// The configured distribution its `base_distribution` names.
        distribution: &'a Distribution,
    },
}

/// Where the builders point workers: our APT archive and dependency server.
#[derive(Debug, Clone, Default)]
pub struct BuildLocations<'a> {
    /// Public URL of our APT archive, for the extra build repositories; `None` adds none.
    pub apt_archive_url: Option<&'a str>,
    /// Public URL of the dependency server, passed on in `build.config`.
    pub dep_server_url: Option<&'a str>,
    /// `dpkg-vendor --query vendor` of this host, for distributions without a vendor.
    pub host_vendor: &'a str,
}

/// The builder of a campaign.
pub fn get_builder<'a>(
    config: &'a Config,
    campaign: &'a Campaign,
) -> Result<Builder<'a>, BuilderError> {
    match &campaign.build {
        Some(CampaignBuild::DebianBuild(build)) => {
            let name = build.base_distribution();
            let distribution = config
                .distribution(name)
                .ok_or_else(|| BuilderError::UnsupportedDistribution(name.to_string()))?;
            Ok(Builder::Debian {
                campaign,
                build,
                distribution,
            })
        }
        Some(CampaignBuild::GenericBuild(build)) => Ok(Builder::Generic {
            chroot: build.chroot.clone().filter(|c| !c.is_empty()),
        }),
        None => Err(BuilderError::NoBuildType),
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

impl Builder<'_> {
    /// The build target's name (`generic` or `debian`), as `build.target` of the assignment.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Generic { .. } => "generic",
            Self::Debian { .. } => "debian",
        }
    }

    /// The branch name of the runner's cached copy in the VCS store.
    pub fn cache_branch_name(&self, locations: &BuildLocations<'_>) -> String {
        match self {
            Self::Generic { .. } => "main".to_string(),
            Self::Debian { distribution, .. } => match non_empty(distribution.vendor.as_deref()) {
                Some(vendor) => format!("{vendor}/latest"),
                None => format!("{}/latest", locations.host_vendor.to_lowercase()),
            },
        }
    }

    fn chroot(&self) -> Option<&str> {
        match self {
            Self::Generic { chroot } => chroot.as_deref(),
            Self::Debian {
                build,
                distribution,
                ..
            } => non_empty(build.chroot.as_deref()).or(non_empty(distribution.chroot.as_deref())),
        }
    }

    fn base_apt_repository(&self) -> Option<String> {
        let Self::Debian { distribution, .. } = self else {
            return None;
        };
        let mirror = non_empty(distribution.archive_mirror_uri.as_deref())?;
        if distribution.component.is_empty() {
            return None;
        }
        Some(format!(
            "{mirror} {} {}",
            distribution.name(),
            distribution.component.join(" ")
        ))
    }

    /// Branches of the upstream repository the worker should fetch beside the main one.
    /// Debian: silver-platter's pick (`pristine-tar`, `pristine-lfs`, `upstream`,
    /// `patch-queue/<main>`, and `upstream/<rest>` for a `debian/<rest>` main branch), kept to
    /// those that exist, as a list of names (the worker's form). Generic: none.
    pub fn additional_colocated_branches(&self, main: &OpenedBranch) -> Vec<String> {
        let Self::Debian { .. } = self else {
            return Vec::new();
        };
        let Some(name) = main.name.as_deref() else {
            return Vec::new();
        };
        let mut wanted = vec![
            "pristine-tar".to_string(),
            "pristine-lfs".to_string(),
            "upstream".to_string(),
            format!("patch-queue/{name}"),
        ];
        if let Some(rest) = name.strip_prefix("debian/") {
            wanted.push(format!("upstream/{rest}"));
        }
        wanted.retain(|branch| main.branch_names.contains(branch));
        wanted
    }

    /// `build.environment` of the assignment: `DISTRIBUTION`, `DEB_VENDOR`, `CHROOT` and
    /// `APT_REPOSITORY` for Debian; empty for generic builds.
    pub fn build_env(&self, locations: &BuildLocations<'_>) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let Self::Debian { distribution, .. } = self else {
            return env;
        };
        if let Some(name) = non_empty(distribution.name.as_deref()) {
            env.insert("DISTRIBUTION".to_string(), name.to_string());
        }
        let vendor = non_empty(distribution.vendor.as_deref()).unwrap_or(locations.host_vendor);
        env.insert("DEB_VENDOR".to_string(), vendor.to_string());
        if let Some(chroot) = self.chroot() {
            env.insert("CHROOT".to_string(), chroot.to_string());
        }
        if let Some(repository) = self.base_apt_repository() {
            env.insert("APT_REPOSITORY".to_string(), repository);
        }
        env
    }

    /// `build.config` of the assignment. Reads the last built version for Debian.
    pub async fn config(
        &self,
        conn: &mut PgConnection,
        locations: &BuildLocations<'_>,
        codebase: &str,
        change_set: Option<&str>,
    ) -> Result<Value, sqlx::Error> {
        let mut config = Map::new();
        match self {
            Self::Generic { chroot } => {
                if let Some(chroot) = chroot {
                    config.insert("chroot".into(), chroot.clone().into());
                }
            }
            Self::Debian {
                campaign,
                build,
                distribution,
            } => {
                config.insert("lintian".into(), lintian(distribution));
                let mut suites: Vec<String> = build.extra_build_distribution.clone();
                if let Some(change_set) = change_set {
                    suites.push(format!("cs/{change_set}"));
                }
                let repositories: Vec<String> = match locations.apt_archive_url {
                    Some(apt) => suites
                        .iter()
                        .map(|suite| format!("deb [trusted=yes] {apt} {suite} main"))
                        .collect(),
                    None => Vec::new(),
                };
                config.insert("build-extra-repositories".into(), repositories.into());
                let build_distribution = non_empty(build.build_distribution.as_deref())
                    .unwrap_or(campaign.name())
                    .to_string();
                config.insert(
                    "build-distribution".into(),
                    build_distribution.clone().into(),
                );
                config.insert(
                    "build-suffix".into(),
                    non_empty(build.build_suffix.as_deref())
                        .unwrap_or("")
                        .into(),
                );
                if let Some(command) = non_empty(build.build_command.as_deref())
                    .or(non_empty(distribution.build_command.as_deref()))
                {
                    config.insert("build-command".into(), command.into());
                }
                if let Some(version) =
                    crate::db::runs::last_build_version(conn, codebase, &build_distribution).await?
                {
                    config.insert("last-build-version".into(), version.into());
                }
                if let Some(chroot) = self.chroot() {
                    config.insert("chroot".into(), chroot.into());
                }
                if let Some(repository) = self.base_apt_repository() {
                    config.insert("base-apt-repository".into(), repository.into());
                    config.insert(
                        "base-apt-repository-signed-by".into(),
                        distribution.signed_by.clone().into(),
                    );
                }
            }
        }
        config.insert("dep_server_url".into(), json!(locations.dep_server_url));
        Ok(Value::Object(config))
    }
}

/// `dpkg-vendor --query vendor`, or `Debian` where dpkg-dev is not installed. Run once at
/// start-up, with a timeout.
pub async fn host_vendor() -> String {
    let query = tokio::process::Command::new("dpkg-vendor")
        .args(["--query", "vendor"])
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(std::time::Duration::from_secs(10), query).await {
        Ok(Ok(output)) if output.status.success() => {
            let vendor = String::from_utf8_lossy(&output.stdout).trim().to_string();
            if vendor.is_empty() {
                "Debian".to_string()
            } else {
                vendor
            }
        }
        _ => "Debian".to_string(),
    }
}

/// `build.config.lintian`: the distribution's profile and the tags it suppresses.
fn lintian(distribution: &Distribution) -> Value {
    let mut lintian = Map::new();
    lintian.insert(
        "profile".into(),
        distribution.lintian_profile.clone().into(),
    );
    if !distribution.lintian_suppress_tag.is_empty() {
        lintian.insert(
            "suppress-tags".into(),
            distribution.lintian_suppress_tag.clone().into(),
        );
    }
    Value::Object(lintian)
}
