//! Debian `.changes` files of an uploaded build: what was built, and which files to keep.

use std::collections::BTreeMap;

use crate::storage::Source;

use crate::models::DebianResult;

/// Why the `.changes` files of a Debian build could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    /// A changes file could not be read.
    #[error("cannot read {name}: {source}")]
    Read {
        /// The file name.
        name: String,
        /// What reading failed with.
        source: std::io::Error,
    },
    /// A changes file lacks a required field.
    #[error("{name}: missing field {field}")]
    MissingField {
        /// The changes file's name.
        name: String,
        /// The field it lacks.
        field: &'static str,
    },
    /// Two changes files of one build name different values for a field.
    #[error("changes files disagree on {field}: {first:?} and {second:?}")]
    Inconsistent {
        /// The field: `Source`, `Version` or `Distribution`.
        field: &'static str,
        /// Its value in the first changes file, in name order.
        first: String,
        /// Its value in the other one.
        second: String,
    },
}

/// One parsed `.changes` file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Changes {
    name: String,
    source: String,
    version: String,
    distribution: String,
    files: Vec<String>,
}

/// Reads the deb822 fields of a changes file. Continuation lines start with white space;
/// an OpenPGP signature wrapper is skipped.
fn parse(name: &str, text: &str) -> Result<Changes, ChangesError> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut in_signature = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN PGP SIGNED MESSAGE") {
            continue;
        }
        if line.starts_with("-----BEGIN PGP SIGNATURE") {
            in_signature = true;
            continue;
        }
        if in_signature || line.starts_with("Hash:") && fields.is_empty() {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    let get = |field: &'static str| {
        fields
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(field))
            .map(|(_, value)| value.clone())
            .ok_or(ChangesError::MissingField {
                name: name.to_string(),
                field,
            })
    };
    // Files: "<md5> <size> <section> <priority> <name>" per line.
    let files = get("Files")?
        .lines()
        .filter_map(|line| line.split_whitespace().last().map(str::to_string))
        .filter(|file| !file.is_empty())
        .collect();
    Ok(Changes {
        name: name.to_string(),
        source: get("Source")?
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
        version: get("Version")?,
        distribution: get("Distribution")?,
        files,
    })
}

/// Completes a Debian result from the uploaded `.changes` files (in name order). Without any,
/// the result stays empty (no `debian_build` row, no artifacts), as in the Python runner.
pub async fn complete_from_files(
    result: &mut DebianResult,
    files: &BTreeMap<String, Source>,
) -> Result<(), ChangesError> {
    let mut names = Vec::new();
    let mut parsed = Vec::new();
    for (name, source) in files {
        if !name.ends_with(".changes") {
            continue;
        }
        names.push(name.clone());
        let bytes = source.read().await.map_err(|source| ChangesError::Read {
            name: name.clone(),
            source,
        })?;
        parsed.push(parse(name, &String::from_utf8_lossy(&bytes))?);
    }
    let Some(first) = parsed.first() else {
        return Ok(());
    };
    for other in &parsed[1..] {
        for (field, a, b) in [
            ("Source", &first.source, &other.source),
            ("Version", &first.version, &other.version),
            ("Distribution", &first.distribution, &other.distribution),
        ] {
            if a != b {
                return Err(ChangesError::Inconsistent {
                    field,
                    first: a.clone(),
                    second: b.clone(),
                });
            }
        }
    }
    result.source = Some(first.source.clone());
    result.build_version = Some(first.version.clone());
    result.build_distribution = Some(first.distribution.clone());
    result.binary_packages = Some(
        parsed
            .iter()
            .flat_map(|c| c.files.iter())
            .filter(|file| file.ends_with(".deb"))
            .map(|file| file.split('_').next().unwrap_or(file).to_string())
            .collect(),
    );
    result.artifact_names = parsed
        .iter()
        .flat_map(|c| {
            c.files
                .iter()
                .cloned()
                .chain(std::iter::once(c.name.clone()))
        })
        .collect();
    result.changes_filenames = Some(names);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGES: &str = "Format: 1.8\nDate: Mon, 23 Nov 2026 12:00:00 +0000\nSource: alpha (1.0-1)\n\
Binary: alpha alpha-doc\nArchitecture: source amd64\nVersion: 1.0-1~jan+lint1\n\
Distribution: lintian-fixes\nFiles:\n 0123 1000 misc optional alpha_1.0-1~jan+lint1.dsc\n \
4567 2000 misc optional alpha_1.0-1~jan+lint1_amd64.deb\n 89ab 300 doc optional alpha-doc_1.0-1~jan+lint1_all.deb\n \
cdef 10 debug optional alpha-dbgsym_1.0-1~jan+lint1_amd64.ddeb\n";

    fn files(entries: &[(&str, String)]) -> BTreeMap<String, Source> {
        entries
            .iter()
            .map(|(name, text)| (name.to_string(), Source::Memory(text.clone().into())))
            .collect()
    }

    #[tokio::test]
    async fn reads_changes_files() {
        let dir = tempfile::tempdir().unwrap();
        let changes = dir.path().join("alpha_1.0-1~jan+lint1_amd64.changes");
        std::fs::write(&changes, CHANGES).unwrap();
        let mut uploaded = files(&[("build.log", "log".into())]);
        uploaded.insert(
            "alpha_1.0-1~jan+lint1_amd64.changes".into(),
            Source::File(changes),
        );
        let mut result = DebianResult::default();
        complete_from_files(&mut result, &uploaded).await.unwrap();
        assert_eq!(result.source.as_deref(), Some("alpha"));
        assert_eq!(result.build_version.as_deref(), Some("1.0-1~jan+lint1"));
        assert_eq!(result.build_distribution.as_deref(), Some("lintian-fixes"));
        assert_eq!(
            result.binary_packages,
            Some(vec!["alpha".to_string(), "alpha-doc".to_string()])
        );
        assert_eq!(result.artifact_names.len(), 5);
        assert_eq!(
            result.artifact_names[4],
            "alpha_1.0-1~jan+lint1_amd64.changes"
        );
    }

    #[tokio::test]
    async fn no_changes_leaves_the_result_empty() {
        let mut result = DebianResult::default();
        complete_from_files(&mut result, &files(&[("build.log", "log".into())]))
            .await
            .unwrap();
        assert_eq!(result, DebianResult::default());
    }

    #[tokio::test]
    async fn inconsistent_changes_are_an_error() {
        let uploaded = files(&[
            ("a_amd64.changes", CHANGES.into()),
            (
                "a_arm64.changes",
                CHANGES.replace("Version: 1.0-1~jan+lint1", "Version: 1.0-2"),
            ),
        ]);
        let err = complete_from_files(&mut DebianResult::default(), &uploaded)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Version"), "{err}");
    }
}
