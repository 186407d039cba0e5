//! The janitor's own public VCS store (`--public-vcs-location`): where workers find cached
//! copies of branches and push their results.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::assign::branch_url::escape;
use crate::assign::upstream::{BranchOpener, OpenError};

/// One VCS's store: a remote base URL, or a local directory served as `file://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcsStore {
    /// A store at a URL (a location with a `:`), e.g. `https://janitor.example/git`.
    Remote {
        /// `git` or `bzr`.
        vcs: String,
        /// The store's base URL, without a trailing `/`.
        base: String,
    },
    /// A store in a local directory.
    Local {
        /// `git` or `bzr`.
        vcs: String,
        /// The store's directory.
        path: PathBuf,
    },
}

/// A `--public-vcs-location` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --public-vcs-location {location:?}: {reason}")]
pub struct VcsLocationError {
    /// The location as given.
    pub location: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The stores by VCS type (`git`, `bzr`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VcsStores {
    stores: BTreeMap<String, VcsStore>,
}

impl VcsStores {
    /// A single base (`https://host/`) means `<base>/git` and `<base>/bzr`; otherwise a comma
    /// list of `vcs=location`. A location with a `:` is a URL, anything else a directory.
    pub fn parse(location: &str) -> Result<Self, VcsLocationError> {
        let error = |reason: &str| VcsLocationError {
            location: location.to_string(),
            reason: reason.to_string(),
        };
        let mut stores = BTreeMap::new();
        if !location.contains('=') {
            let base = location.trim_end_matches('/');
            if base.is_empty() {
                return Err(error("empty location"));
            }
            for vcs in ["bzr", "git"] {
                stores.insert(
                    vcs.to_string(),
                    VcsStore::new(vcs, &format!("{base}/{vcs}")),
                );
            }
        } else {
            for pair in location.split(',') {
                let (vcs, place) = pair
                    .split_once('=')
                    .ok_or_else(|| error("expected vcs=location pairs separated by commas"))?;
                if vcs != "git" && vcs != "bzr" {
                    return Err(error(&format!("unsupported VCS {vcs:?}")));
                }
                if place.is_empty() {
                    return Err(error(&format!("empty location for {vcs}")));
                }
                stores.insert(vcs.to_string(), VcsStore::new(vcs, place));
            }
        }
        Ok(Self { stores })
    }

    /// No location was given (`--public-vcs-location`): nothing can be assigned.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// The store for VCS `vcs` (`git`, `bzr`), if there is one.
    pub fn get(&self, vcs: &str) -> Option<&VcsStore> {
        self.stores.get(vcs)
    }
}

impl VcsStore {
    fn new(vcs: &str, place: &str) -> Self {
        if place.contains(':') {
            Self::Remote {
                vcs: vcs.to_string(),
                base: place.trim_end_matches('/').to_string(),
            }
        } else {
            Self::Local {
                vcs: vcs.to_string(),
                path: PathBuf::from(place),
            }
        }
    }

    fn base_url(&self) -> String {
        match self {
            Self::Remote { base, .. } => base.clone(),
            Self::Local { path, .. } => {
                let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                format!(
                    "file://{}",
                    absolute.display().to_string().trim_end_matches('/')
                )
            }
        }
    }

    fn vcs(&self) -> &str {
        match self {
            Self::Remote { vcs, .. } | Self::Local { vcs, .. } => vcs,
        }
    }

    /// The codebase's repository in the store.
    pub fn repository_url(&self, codebase: &str) -> String {
        format!("{}/{}", self.base_url(), escape(codebase))
    }

    /// A branch of the codebase: git names it with segment parameters (with `/` escaped, so
    /// they stay in the last path segment), bzr as a path. Two parameters, because the two
    /// clients read different ones: breezy (the site, the publisher) reads `branch`, the
    /// silver-platter that `janitor-worker` opens branches with reads `name` (and uses it as
    /// it stands, so a name with `/` does not reach that worker intact).
    pub fn branch_url(&self, codebase: &str, branch: &str) -> String {
        let repository = self.repository_url(codebase);
        if self.vcs() == "git" {
            let name = escape(branch).replace('/', "%2F");
            format!("{repository},branch={name},name={name}")
        } else {
            format!("{repository}/{}", escape(branch))
        }
    }
}

impl VcsStore {
    /// The tip revision of `branch` of the codebase's repository in the store, as runs record
    /// revisions (breezy revision ids: `git-v1:<sha>` for git, the revision id for bzr), so it
    /// can be matched with `run.revision`; `None` when the repository or the branch does not
    /// exist. Names that could leave the store directory (`..`, absolute paths, `/` in a
    /// codebase name) find nothing.
    pub async fn branch_tip(
        &self,
        opener: &BranchOpener,
        codebase: &str,
        branch: &str,
    ) -> Result<Option<String>, OpenError> {
        if !is_plain_name(codebase) || !branch.split('/').all(is_plain_name) {
            return Ok(None);
        }
        match self {
            Self::Remote { vcs, .. } if vcs == "git" => Ok(opener
                .git_branch_tip(&self.repository_url(codebase), branch)
                .await?
                .map(|sha| git_revision_id(&sha))),
            Self::Remote { .. } => {
                opener
                    .bzr_branch_tip(&self.branch_url(codebase, branch))
                    .await
            }
            Self::Local { vcs, path } if vcs == "git" => {
                Ok(local_git_tip(&path.join(codebase), branch)
                    .await
                    .map(|sha| git_revision_id(&sha)))
            }
            Self::Local { path, .. } => {
                let file = path
                    .join(codebase)
                    .join(branch)
                    .join(".bzr/branch/last-revision");
                Ok(tokio::fs::read_to_string(file)
                    .await
                    .ok()
                    .and_then(|text| crate::assign::upstream::parse_bzr_last_revision(&text)))
            }
        }
    }
}

/// The revision id breezy (and so the worker, in its result) gives a git commit.
fn git_revision_id(sha: &str) -> String {
    format!("git-v1:{sha}")
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// A branch tip in a local git repository (bare, or with a `.git` directory): the loose ref
/// file, else the `packed-refs` line.
async fn local_git_tip(repository: &std::path::Path, branch: &str) -> Option<String> {
    let git_dir = if tokio::fs::metadata(repository.join(".git")).await.is_ok() {
        repository.join(".git")
    } else {
        repository.to_path_buf()
    };
    let reference = format!("refs/heads/{branch}");
    if let Ok(text) = tokio::fs::read_to_string(git_dir.join(&reference)).await {
        let id = text.trim();
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(id.to_string());
        }
    }
    let packed = tokio::fs::read_to_string(git_dir.join("packed-refs"))
        .await
        .ok()?;
    packed.lines().find_map(|line| {
        let (id, name) = line.split_once(' ')?;
        (name == reference && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_base() {
        let stores = VcsStores::parse("https://janitor.example.org/").unwrap();
        let git = stores.get("git").unwrap();
        assert_eq!(
            git.repository_url("alpha"),
            "https://janitor.example.org/git/alpha"
        );
        assert_eq!(
            git.branch_url("alpha", "debian/latest"),
            "https://janitor.example.org/git/alpha,branch=debian%2Flatest,name=debian%2Flatest"
        );
        let bzr = stores.get("bzr").unwrap();
        assert_eq!(
            bzr.branch_url("alpha", "main"),
            "https://janitor.example.org/bzr/alpha/main"
        );
    }

    #[test]
    fn pairs_and_local_directories() {
        let stores = VcsStores::parse("git=/srv/git,bzr=https://bzr.example.org/b/").unwrap();
        assert_eq!(
            stores.get("git").unwrap().repository_url("alpha"),
            "file:///srv/git/alpha"
        );
        assert_eq!(
            stores.get("bzr").unwrap().repository_url("alpha"),
            "https://bzr.example.org/b/alpha"
        );
        assert!(VcsStores::parse("hg=/srv/hg").is_err());
        assert!(VcsStores::parse("git").is_ok());
        assert!(VcsStores::parse("git=/x,bzr").is_err());
        assert!(VcsStores::parse("").is_err());
    }
}
