//! The Python runner's small helper functions (`committer_env`, `is_log_filename`,
//! `splitout_env`, `dpkg_vendor`).

use std::collections::BTreeMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// `committer_env(committer)`: the VCS environment for a committer; `None` gives `{}`.
#[pyfunction]
#[pyo3(signature = (committer))]
pub(super) fn committer_env(committer: Option<&str>) -> BTreeMap<String, String> {
    crate::committer_env(committer)
}

/// `is_log_filename(name)`: whether an uploaded file name is a log.
#[pyfunction]
pub(super) fn is_log_filename(name: &str) -> bool {
    crate::is_log_filename(name)
}

/// `splitout_env(command)`: leading `VAR=value` words as a dict, and the rest of the command.
#[pyfunction]
pub(super) fn splitout_env(command: &str) -> PyResult<(BTreeMap<String, String>, String)> {
    crate::splitout_env(command).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// `dpkg_vendor()`: `dpkg-vendor --query vendor` of this host ("Debian" when it cannot be
/// asked), asked once per process as the Python's cached function does.
#[pyfunction]
pub(super) fn dpkg_vendor(py: Python<'_>) -> String {
    static VENDOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    py.detach(|| {
        VENDOR
            .get_or_init(|| {
                pyo3_async_runtimes::tokio::get_runtime()
                    .block_on(crate::assign::builder::host_vendor())
            })
            .clone()
    })
}
