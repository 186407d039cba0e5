use serde::{Deserialize, Serialize};

/// The labels of the `vcs_type` enum, in declaration order.
pub const VCS_TYPES: [&str; 8] = ["bzr", "git", "svn", "mtn", "hg", "arch", "cvs", "darcs"];

/// Whether `value` is a label of the `vcs_type` enum.
pub fn is_vcs_type(value: &str) -> bool {
    VCS_TYPES.contains(&value)
}

/// Where a codebase lives. Each key is present only when known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcsInfo {
    /// The URL of the codebase's main branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_url: Option<String>,
    /// Path within the branch where the codebase lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    /// The VCS type, one of [`VCS_TYPES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcs_type: Option<String>,
}

impl VcsInfo {
    /// From a codebase row: empty URL and type count as unknown, an empty subpath does not.
    pub fn from_codebase(
        branch_url: Option<String>,
        subpath: Option<String>,
        vcs_type: Option<String>,
    ) -> Self {
        Self {
            branch_url: branch_url.filter(|url| !url.is_empty()),
            subpath,
            vcs_type: vcs_type.filter(|t| !t.is_empty()),
        }
    }
}
