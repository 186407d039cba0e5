use serde_json::{Value, json};

use super::ModelError;

/// What a build produced, by builder kind.
#[derive(Debug, Clone, PartialEq)]
pub enum BuilderResult {
    /// The generic builder, which reports nothing of its own.
    Generic,
    /// A Debian package build.
    Debian(Box<DebianResult>),
}

/// A Debian build: read from the worker's `target.details` (lintian only) and completed from
/// the uploaded `.changes` files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DebianResult {
    /// The source package's name (`Source` of the `.changes` files).
    pub source: Option<String>,
    /// The version built (`Version` of the `.changes` files).
    pub build_version: Option<String>,
    /// The distribution built for (`Distribution` of the `.changes` files).
    pub build_distribution: Option<String>,
    /// `None` until `.changes` files were found; a result without them is "empty".
    pub changes_filenames: Option<Vec<String>>,
    /// Lintian's report, from the worker's `target.details.lintian`.
    pub lintian_result: Value,
    /// The names of the binary packages built (from the `.deb` files the `.changes` list).
    pub binary_packages: Option<Vec<String>>,
    /// Every file the `.changes` files list, each followed by the `.changes` file itself.
    pub artifact_names: Vec<String>,
}

impl BuilderResult {
    /// The builder's name, as in the worker result's `target.name`: `generic` or `debian`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Debian(_) => "debian",
        }
    }

    /// Builder kinds the runner knows.
    pub fn check_kind(kind: &str) -> Result<(), ModelError> {
        match kind {
            "generic" | "debian" => Ok(()),
            other => Err(ModelError::new(format!(
                "unsupported build target {other:?}: expected \"debian\" or \"generic\""
            ))),
        }
    }

    /// `target.details` of the worker result. Only `lintian` is read for Debian; the rest
    /// comes from the uploaded files.
    pub fn from_details(kind: &str, details: &Value) -> Result<Self, ModelError> {
        match kind {
            "debian" => {
                let obj = details
                    .as_object()
                    .ok_or_else(|| ModelError::new("target.details must be a JSON object"))?;
                Ok(Self::Debian(Box::new(DebianResult {
                    lintian_result: obj.get("lintian").cloned().unwrap_or_default(),
                    ..DebianResult::default()
                })))
            }
            other => Self::check_kind(other).map(|()| Self::Generic),
        }
    }

    /// Python truthiness: a Debian result without changes files counts as no result.
    pub fn is_present(&self) -> bool {
        match self {
            Self::Generic => true,
            Self::Debian(debian) => debian.changes_filenames.is_some(),
        }
    }

    /// The `target.details` of the result JSON.
    pub fn details_json(&self) -> Value {
        match self {
            Self::Generic => json!({}),
            Self::Debian(d) => json!({
                "build_distribution": d.build_distribution,
                "build_version": d.build_version,
                "changes_filenames": d.changes_filenames,
                "lintian": d.lintian_result,
                "binary_packages": d.binary_packages,
            }),
        }
    }

    /// The uploaded files the result asks to keep as artifacts.
    pub fn artifact_filenames(&self) -> Vec<String> {
        match self {
            Self::Generic => Vec::new(),
            Self::Debian(d) if d.changes_filenames.is_none() => Vec::new(),
            Self::Debian(d) => d.artifact_names.clone(),
        }
    }
}
