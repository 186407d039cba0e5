//! The configuration files users have load: the reference example and ours.

use std::path::{Path, PathBuf};

use janitor_runner::config::Config;

#[tokio::test]
async fn reference_example_loads() {
    let dir = std::env::var_os("JANITOR_REFERENCE_SCHEMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference"));
    let path = dir.join("janitor.conf.example");
    if !path.is_file() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no reference example at {}",
            path.display()
        );
        return;
    }
    let config = Config::load(&path).await.unwrap();
    assert_eq!(config.campaigns().count(), 8);
    let lintian = config.campaign("lintian-fixes").unwrap();
    assert_eq!(lintian.debian_build().build_suffix(), "jan+lint");
    assert_eq!(
        config
            .distribution("unstable")
            .unwrap()
            .lintian_suppress_tag
            .len(),
        5
    );
    assert_eq!(config.redis_location(), Some("redis://localhost"));
    assert_eq!(
        config.message.apt_repository[0].select[0].campaign(),
        "lintian-fixes"
    );
}

#[tokio::test]
async fn project_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/janitor.conf");
    let config = Config::load(&path).await.unwrap();
    assert!(config.campaign("lintian-fixes").unwrap().has_debian_build());
    assert_eq!(config.database_location(), None);
}

#[tokio::test]
async fn missing_file_is_named() {
    let err = Config::load(Path::new("/nonexistent/janitor.conf"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/janitor.conf: cannot read"),
        "{err}"
    );
}
