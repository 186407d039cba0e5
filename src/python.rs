//! The PyO3 face: `janitor_runner._native`, re-exported by the `janitor_runner` package.
//! Functions here are thin wrappers over the library, named as in the Python runner.

use std::collections::BTreeMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// `committer_env(committer)`: the VCS environment for a committer; `None` gives `{}`.
#[pyfunction]
#[pyo3(signature = (committer))]
fn committer_env(committer: Option<&str>) -> BTreeMap<String, String> {
    crate::committer_env(committer)
}

/// `is_log_filename(name)`: whether an uploaded file name is a log.
#[pyfunction]
fn is_log_filename(name: &str) -> bool {
    crate::is_log_filename(name)
}

/// `splitout_env(command)`: leading `VAR=value` words as a dict, and the rest of the command.
#[pyfunction]
fn splitout_env(command: &str) -> PyResult<(BTreeMap<String, String>, String)> {
    crate::splitout_env(command).map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add_function(wrap_pyfunction!(committer_env, m)?)?;
    m.add_function(wrap_pyfunction!(is_log_filename, m)?)?;
    m.add_function(wrap_pyfunction!(splitout_env, m)?)?;
    Ok(())
}
