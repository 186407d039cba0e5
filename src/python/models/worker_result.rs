//! `WorkerResult` as the Python runner has it: built from `result.json` or from keywords, with
//! every field readable.

use chrono::NaiveDateTime;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};
use serde_json::{Value, json};

use crate::models;
use crate::python::errors::model_error;
use crate::python::{any_to_json, from_json_value, to_json_value};

/// What a worker reported (Python `WorkerResult`).
#[pyclass(name = "WorkerResult", module = "janitor_runner", from_py_object)]
#[derive(Clone)]
pub(crate) struct PyWorkerResult {
    pub(crate) inner: models::WorkerResult,
}

/// A revision given as bytes (as the Python's fields are) or str, as JSON text.
fn revision_json(value: Option<&Bound<'_, PyAny>>) -> PyResult<Value> {
    match value {
        None => Ok(Value::Null),
        Some(value) if value.is_none() => Ok(Value::Null),
        Some(value) => match value.cast::<PyBytes>() {
            Ok(bytes) => Ok(Value::String(
                String::from_utf8_lossy(bytes.as_bytes()).into_owned(),
            )),
            Err(_) => Ok(Value::String(value.extract()?)),
        },
    }
}

fn timestamp_json(value: Option<NaiveDateTime>) -> Value {
    value.map_or(Value::Null, |t| {
        Value::String(t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
    })
}

fn revision_bytes<'py>(py: Python<'py>, value: Option<&str>) -> Option<Bound<'py, PyBytes>> {
    value.map(|v| PyBytes::new(py, v.as_bytes()))
}

type BranchTuple<'py> = (
    String,
    Option<String>,
    Option<Bound<'py, PyAny>>,
    Option<Bound<'py, PyAny>>,
);

/// `branches` as `result.json` has them, revisions as text.
fn branches_json(branches: Option<Vec<BranchTuple<'_>>>) -> PyResult<Option<Vec<Value>>> {
    branches
        .map(|branches| {
            branches
                .into_iter()
                .map(|(role, remote, base, tip)| {
                    Ok(json!([
                        role,
                        remote,
                        revision_json(base.as_ref())?,
                        revision_json(tip.as_ref())?
                    ]))
                })
                .collect::<PyResult<Vec<_>>>()
        })
        .transpose()
}

/// `tags` as `result.json` has them, revisions as text.
fn tags_json(
    tags: Option<Vec<(String, Option<Bound<'_, PyAny>>)>>,
) -> PyResult<Option<Vec<Value>>> {
    tags.map(|tags| {
        tags.into_iter()
            .map(|(name, tip)| Ok(json!([name, revision_json(tip.as_ref())?])))
            .collect::<PyResult<Vec<_>>>()
    })
    .transpose()
}

fn without_nulls(mut js: Value) -> Value {
    // A keyword left at None is a key the worker did not send (some keys may be absent but
    // not null, such as the timestamps).
    if let Value::Object(fields) = &mut js {
        fields.retain(|_, value| !value.is_null());
    }
    js
}

#[pymethods]
impl PyWorkerResult {
    /// The Python dataclass's fields, in its order; checked as `result.json` would be.
    #[new]
    #[pyo3(signature = (
        code, description, context=None, codemod=None, main_branch_revision=None, revision=None,
        value=None, branches=None, tags=None, remotes=None, details=None, stage=None,
        builder_result=None, start_time=None, finish_time=None, queue_id=None, worker_name=None,
        refreshed=false, target_branch_url=None, branch_url=None, vcs_type=None, subpath=None,
        transient=None, codebase=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        code: Option<String>,
        description: Option<String>,
        context: Option<&Bound<'_, PyAny>>,
        codemod: Option<&Bound<'_, PyAny>>,
        main_branch_revision: Option<&Bound<'_, PyAny>>,
        revision: Option<&Bound<'_, PyAny>>,
        value: Option<i64>,
        branches: Option<Vec<BranchTuple<'_>>>,
        tags: Option<Vec<(String, Option<Bound<'_, PyAny>>)>>,
        remotes: Option<&Bound<'_, PyAny>>,
        details: Option<&Bound<'_, PyAny>>,
        stage: Option<String>,
        builder_result: Option<&Bound<'_, PyAny>>,
        start_time: Option<NaiveDateTime>,
        finish_time: Option<NaiveDateTime>,
        queue_id: Option<i64>,
        worker_name: Option<String>,
        refreshed: bool,
        target_branch_url: Option<String>,
        branch_url: Option<String>,
        vcs_type: Option<String>,
        subpath: Option<String>,
        transient: Option<bool>,
        codebase: Option<String>,
    ) -> PyResult<Self> {
        let branches = branches_json(branches)?;
        let tags = tags_json(tags)?;
        let js = json!({
            "code": code,
            "description": description,
            "context": any_to_json(context)?,
            "codemod": any_to_json(codemod)?,
            "main_branch_revision": revision_json(main_branch_revision)?,
            "revision": revision_json(revision)?,
            "value": value,
            "branches": branches,
            "tags": tags,
            "remotes": any_to_json(remotes)?,
            "details": any_to_json(details)?,
            "stage": stage,
            "target": match builder_result {
                Some(target) if !target.is_none() => to_json_value(target)?,
                _ => Value::Null,
            },
            "start_time": timestamp_json(start_time),
            "finish_time": timestamp_json(finish_time),
            "queue_id": queue_id,
            "worker_name": worker_name,
            "refreshed": refreshed,
            "target_branch_url": target_branch_url,
            "branch_url": branch_url,
            "vcs_type": vcs_type,
            "subpath": subpath,
            "transient": transient,
            "codebase": codebase,
        });
        Ok(Self {
            inner: models::WorkerResult::from_json(&without_nulls(js)).map_err(model_error)?,
        })
    }

    #[classmethod]
    fn from_json(_cls: &Bound<'_, PyType>, js: &Bound<'_, PyAny>) -> PyResult<Self> {
        let value = to_json_value(js)?;
        Ok(Self {
            inner: models::WorkerResult::from_json(&value).map_err(model_error)?,
        })
    }

    #[getter]
    fn code(&self) -> &str {
        &self.inner.code
    }

    #[getter]
    fn description(&self) -> Option<&str> {
        self.inner.description.as_deref()
    }

    #[getter]
    fn context(&self) -> Option<&str> {
        self.inner.context.as_deref()
    }

    #[getter]
    fn codemod<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_json_value(py, &self.inner.codemod)
    }

    #[getter]
    fn main_branch_revision<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        revision_bytes(py, self.inner.main_branch_revision.as_deref())
    }

    #[getter]
    fn revision<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        revision_bytes(py, self.inner.revision.as_deref())
    }

    #[getter]
    fn value(&self) -> Option<i64> {
        self.inner.value
    }

    /// `[(role, remote_name, base_revision, revision)]`, revisions as bytes.
    #[getter]
    #[allow(clippy::type_complexity)]
    fn branches<'py>(
        &self,
        py: Python<'py>,
    ) -> Option<
        Vec<(
            String,
            Option<String>,
            Option<Bound<'py, PyBytes>>,
            Option<Bound<'py, PyBytes>>,
        )>,
    > {
        self.inner.branches.as_ref().map(|branches| {
            branches
                .iter()
                .map(|b| {
                    (
                        b.role.clone(),
                        b.remote_name.clone(),
                        revision_bytes(py, b.base_revision.as_deref()),
                        revision_bytes(py, b.revision.as_deref()),
                    )
                })
                .collect()
        })
    }

    /// `[(name, revision)]`, revisions as bytes.
    #[getter]
    fn tags<'py>(&self, py: Python<'py>) -> Option<Vec<(String, Bound<'py, PyBytes>)>> {
        self.inner.tags.as_ref().map(|tags| {
            tags.iter()
                .map(|t| (t.name.clone(), PyBytes::new(py, t.revision.as_bytes())))
                .collect()
        })
    }

    #[getter]
    fn remotes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_json_value(py, self.inner.remotes.as_ref().unwrap_or(&Value::Null))
    }

    #[getter]
    fn details<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_json_value(py, &self.inner.details)
    }

    #[getter]
    fn stage(&self) -> Option<&str> {
        self.inner.stage.as_deref()
    }

    #[getter]
    fn start_time(&self) -> Option<NaiveDateTime> {
        self.inner.start_time
    }

    #[getter]
    fn finish_time(&self) -> Option<NaiveDateTime> {
        self.inner.finish_time
    }

    #[getter]
    fn queue_id(&self) -> Option<i64> {
        self.inner.queue_id
    }

    #[getter]
    fn worker_name(&self) -> Option<&str> {
        self.inner.worker_name.as_deref()
    }

    #[getter]
    fn refreshed(&self) -> bool {
        self.inner.refreshed
    }

    #[getter]
    fn target_branch_url(&self) -> Option<&str> {
        self.inner.target_branch_url.as_deref()
    }

    #[getter]
    fn branch_url(&self) -> Option<&str> {
        self.inner.branch_url.as_deref()
    }

    #[getter]
    fn vcs_type(&self) -> Option<&str> {
        self.inner.vcs_type.as_deref()
    }

    #[getter]
    fn subpath(&self) -> Option<&str> {
        self.inner.subpath.as_deref()
    }

    #[getter]
    fn transient(&self) -> Option<bool> {
        self.inner.transient
    }

    #[getter]
    fn codebase(&self) -> Option<&str> {
        self.inner.codebase.as_deref()
    }
}
