//! Which uploaded files are logs.

use std::path::Path;

/// `foo.log`, or `foo.log.N` with an all-numeric `N` (rotated logs). Case-sensitive.
pub fn is_log_filename(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.last() == Some(&"log") {
        return true;
    }
    parts.len() == 3 && parts[1] == "log" && parts[2].chars().all(char::is_numeric)
}

/// The log files directly inside `dir` (not directories, not recursive), in directory order.
pub async fn gather_logs(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        if entry.file_type().await?.is_dir() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str()
            && is_log_filename(name)
        {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names() {
        for name in [
            "foo.log",
            "foo.log.1",
            "foo.1.log",
            "worker.log.2024",
            "log",
            ".log",
            "foo..log",
            "foo.log.",
            "foo.log.½",
        ] {
            assert!(is_log_filename(name), "{name}");
        }
        for name in [
            "foo.1",
            "foo.deb",
            "foo.1.log.1",
            "a.b.log.1",
            "foo.1.notlog",
            "foo.log.notlog",
            "build.log.gz",
            "log.1",
            "foo.LOG",
        ] {
            assert!(!is_log_filename(name), "{name}");
        }
    }

    #[tokio::test]
    async fn gathers_files_not_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("build.log"), "x").unwrap();
        std::fs::write(dir.path().join("result.json"), "{}").unwrap();
        std::fs::create_dir(dir.path().join("dir.log")).unwrap();
        assert_eq!(
            gather_logs(dir.path()).await.unwrap(),
            vec!["build.log".to_string()]
        );
    }
}
