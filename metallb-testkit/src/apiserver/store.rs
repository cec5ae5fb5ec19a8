//! The object store behind the test server: objects by resource, one global
//! resourceVersion counter (as etcd's revision), and the history of changes that watches
//! replay. The API's storage rules live here: optimistic concurrency, the status
//! subresource, generation, no-op updates, finalizers, compaction.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::selector::{FieldSelector, LabelSelector};

/// A resource the server serves, e.g. `apps/v1 deployments`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// With a status subresource, writes to the object leave `status` alone and writes
    /// to `/status` change only `status`.
    pub status_subresource: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// An API error, answered as a `metav1.Status`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", rt.qualified()),
        )
    }

    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// What a change did, as a watch reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One write, kept for watches: the object before (if any) and after.
#[derive(Clone, Debug)]
pub struct Change {
    pub revision: u64,
    pub kind: ChangeKind,
    pub namespace: String,
    pub before: Option<Value>,
    pub after: Value,
}

/// What a list or watch selects.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// `None`: every namespace.
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, namespace: &str, object: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }
}

#[derive(Debug)]
struct Collection {
    rt: ResourceType,
    /// By (namespace, name); namespace is empty for cluster-scoped objects.
    objects: BTreeMap<(String, String), Value>,
    history: Vec<Change>,
}

/// Which part of an object a write targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Object,
    Status,
}

#[derive(Debug, Default)]
pub struct Store {
    revision: u64,
    /// Watches from a revision before this one get 410 Gone.
    oldest_watchable: u64,
    next_uid: u64,
    collections: Vec<Collection>,
}

fn metadata_mut(object: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    let object = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body is not a JSON object"))?;
    let meta = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if meta.is_null() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata is not an object"))
}

fn text(value: &Value, path: &[&str]) -> String {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Everything but `metadata` and `status`: what bumps `metadata.generation`.
fn spec_part(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

fn now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

impl Store {
    pub fn register(&mut self, rt: ResourceType) {
        let exists = self.collections.iter().any(|c| {
            c.rt.group == rt.group && c.rt.version == rt.version && c.rt.plural == rt.plural
        });
        if !exists {
            self.collections.push(Collection {
                rt,
                objects: BTreeMap::new(),
                history: Vec::new(),
            });
        }
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.collections
            .iter()
            .map(|c| &c.rt)
            .find(|rt| rt.group == group && rt.version == version && rt.plural == plural)
    }

    pub fn resources(&self) -> impl Iterator<Item = &ResourceType> {
        self.collections.iter().map(|c| &c.rt)
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn oldest_watchable(&self) -> u64 {
        self.oldest_watchable
    }

    /// Forgets the history: watches from any revision seen so far get 410 Gone.
    pub fn compact(&mut self) {
        self.oldest_watchable = self.revision + 1;
        for collection in &mut self.collections {
            collection.history.clear();
        }
    }

    fn collection(&self, rt: &ResourceType) -> ApiResult<&Collection> {
        self.collections
            .iter()
            .find(|c| c.rt == *rt)
            .ok_or_else(|| ApiError::not_found(rt, ""))
    }

    fn collection_mut(&mut self, rt: &ResourceType) -> ApiResult<&mut Collection> {
        self.collections
            .iter_mut()
            .find(|c| c.rt == *rt)
            .ok_or_else(|| ApiError::not_found(rt, ""))
    }

    /// The object as stored, with apiVersion/kind of the resource.
    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> ApiResult<Value> {
        self.collection(rt)?
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Matching objects in (namespace, name) order.
    pub fn list(&self, rt: &ResourceType, filter: &Filter) -> ApiResult<Vec<Value>> {
        Ok(self
            .collection(rt)?
            .objects
            .iter()
            .filter(|((ns, _), object)| filter.matches(ns, object))
            .map(|(_, object)| object.clone())
            .collect())
    }

    /// How many objects satisfy `predicate`.
    pub fn count(&self, rt: &ResourceType, predicate: impl Fn(&Value) -> bool) -> usize {
        self.collection(rt)
            .map(|c| c.objects.values().filter(|o| predicate(o)).count())
            .unwrap_or(0)
    }

    /// Changes after `revision`, for watches.
    pub fn changes_after(&self, rt: &ResourceType, revision: u64) -> ApiResult<Vec<Change>> {
        let history = &self.collection(rt)?.history;
        let start = history.partition_point(|c| c.revision <= revision);
        Ok(history[start..].to_vec())
    }

    fn record(
        &mut self,
        rt: &ResourceType,
        kind: ChangeKind,
        namespace: &str,
        before: Option<Value>,
        mut after: Value,
    ) -> ApiResult<Value> {
        self.revision += 1;
        let revision = self.revision;
        metadata_mut(&mut after)?.insert("resourceVersion".into(), revision.to_string().into());
        let name = text(&after, &["metadata", "name"]);
        let collection = self.collection_mut(rt)?;
        let key = (namespace.to_owned(), name);
        if kind == ChangeKind::Deleted {
            collection.objects.remove(&key);
        } else {
            collection.objects.insert(key, after.clone());
        }
        collection.history.push(Change {
            revision,
            kind,
            namespace: namespace.to_owned(),
            before,
            after: after.clone(),
        });
        Ok(after)
    }

    /// Checks apiVersion, kind and namespace of a body against where it is written.
    fn check_body(rt: &ResourceType, namespace: &str, body: &mut Value) -> ApiResult<()> {
        let api_version = text(body, &["apiVersion"]);
        let kind = text(body, &["kind"]);
        if !api_version.is_empty() && api_version != rt.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
        if !kind.is_empty() && kind != rt.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        let object = body
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("the body is not a JSON object"))?;
        object.insert("apiVersion".into(), rt.api_version().into());
        object.insert("kind".into(), rt.kind.clone().into());
        let meta = metadata_mut(body)?;
        let body_namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if rt.namespaced {
            if !body_namespace.is_empty() && body_namespace != namespace {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({body_namespace}) does not match the namespace sent on the request ({namespace})"
                )));
            }
            meta.insert("namespace".into(), namespace.into());
        } else {
            meta.remove("namespace");
        }
        Ok(())
    }

    pub fn create(&mut self, rt: &ResourceType, namespace: &str, body: Value) -> ApiResult<Value> {
        self.insert(rt, namespace, body, false)
    }

    /// Stores `body` as a restore from a backup would: its `creationTimestamp` and
    /// `status` are kept (a create through the API drops status and sets the time).
    pub fn seed(&mut self, rt: &ResourceType, namespace: &str, body: Value) -> ApiResult<Value> {
        self.insert(rt, namespace, body, true)
    }

    fn insert(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        mut body: Value,
        as_given: bool,
    ) -> ApiResult<Value> {
        Self::check_body(rt, namespace, &mut body)?;
        self.next_uid += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", self.next_uid);
        let meta = metadata_mut(&mut body)?;
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            let prefix = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if prefix.is_empty() {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            name = format!("{prefix}{:05x}", self.next_uid);
            meta.insert("name".into(), name.clone().into());
        }
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        meta.insert("uid".into(), uid.into());
        let given_time = meta.get("creationTimestamp").is_some_and(Value::is_string);
        if !(as_given && given_time) {
            meta.insert("creationTimestamp".into(), now().into());
        }
        meta.insert("generation".into(), 1.into());
        meta.remove("deletionTimestamp");
        if rt.status_subresource
            && !as_given
            && let Some(object) = body.as_object_mut()
        {
            // Status is written through the status subresource only.
            object.remove("status");
        }
        let key = (namespace.to_owned(), name.clone());
        if self.collection(rt)?.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} {name:?} already exists", rt.qualified()),
            ));
        }
        self.record(rt, ChangeKind::Added, namespace, None, body)
    }

    /// Replaces the object (or its status) with `body`, as PUT does; PATCH computes the
    /// body first and comes here too. A `metadata.resourceVersion` in the body must be
    /// the current one (409 Conflict otherwise). A write that changes nothing changes
    /// no version and notifies no watch, as the API server does.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        part: Part,
        mut body: Value,
    ) -> ApiResult<Value> {
        let current = self.get(rt, namespace, name)?;
        Self::check_body(rt, namespace, &mut body)?;
        let body_name = text(&body, &["metadata", "name"]);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let wanted_version = text(&body, &["metadata", "resourceVersion"]);
        let current_version = text(&current, &["metadata", "resourceVersion"]);
        if !wanted_version.is_empty() && wanted_version != current_version {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                    rt.qualified()
                ),
            ));
        }
        let mut next = match part {
            Part::Status => {
                let mut next = current.clone();
                let status = body.get("status").cloned().unwrap_or(Value::Null);
                if let Some(object) = next.as_object_mut() {
                    object.insert("status".into(), status);
                }
                next
            }
            Part::Object => {
                if rt.status_subresource
                    && let Some(object) = body.as_object_mut()
                {
                    match current.get("status") {
                        Some(status) => object.insert("status".into(), status.clone()),
                        None => object.remove("status"),
                    };
                }
                body
            }
        };
        // What the server owns is kept from the stored object.
        let meta = metadata_mut(&mut next)?;
        for owned in [
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
        ] {
            match current["metadata"].get(owned) {
                Some(value) => meta.insert(owned.into(), value.clone()),
                None => meta.remove(owned),
            };
        }
        meta.insert("name".into(), name.into());
        meta.insert("resourceVersion".into(), current_version.into());
        if spec_part(&next) != spec_part(&current) {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            metadata_mut(&mut next)?.insert("generation".into(), generation.into());
        }
        if next == current {
            return Ok(current);
        }
        let deleting = !current["metadata"]["deletionTimestamp"].is_null();
        let no_finalizers = next["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        if deleting && no_finalizers {
            return self.record(rt, ChangeKind::Deleted, namespace, Some(current), next);
        }
        self.record(rt, ChangeKind::Modified, namespace, Some(current), next)
    }

    /// Deletes the object, or marks it for deletion while it has finalizers.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        precondition_version: Option<&str>,
    ) -> ApiResult<Value> {
        let current = self.get(rt, namespace, name)?;
        if let Some(wanted) = precondition_version.filter(|v| !v.is_empty())
            && wanted != text(&current, &["metadata", "resourceVersion"])
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: the ResourceVersion in the precondition ({wanted}) does not match the ResourceVersion in record",
                    rt.qualified()
                ),
            ));
        }
        let has_finalizers = current["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if !current["metadata"]["deletionTimestamp"].is_null() {
                return Ok(current);
            }
            let mut next = current.clone();
            metadata_mut(&mut next)?.insert("deletionTimestamp".into(), now().into());
            return self.record(rt, ChangeKind::Modified, namespace, Some(current), next);
        }
        let gone = current.clone();
        self.record(rt, ChangeKind::Deleted, namespace, Some(current), gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> ResourceType {
        ResourceType {
            group: String::new(),
            version: "v1".into(),
            kind: "Service".into(),
            plural: "services".into(),
            namespaced: true,
            status_subresource: true,
        }
    }

    fn store() -> Store {
        let mut store = Store::default();
        store.register(services());
        store
    }

    #[test]
    fn create_sets_server_fields_and_drops_status() {
        let mut store = store();
        let created = store
            .create(
                &services(),
                "ns",
                json!({"metadata": {"name": "a"}, "spec": {"type": "LoadBalancer"}, "status": {"x": 1}}),
            )
            .unwrap();
        assert_eq!(created["apiVersion"], "v1");
        assert_eq!(created["kind"], "Service");
        assert_eq!(created["metadata"]["namespace"], "ns");
        assert_eq!(created["metadata"]["resourceVersion"], "1");
        assert_eq!(created["metadata"]["generation"], 1);
        assert!(created["metadata"]["uid"].is_string());
        assert!(created.get("status").is_none());
        let again = store.create(&services(), "ns", json!({"metadata": {"name": "a"}}));
        assert_eq!(again.unwrap_err().code, 409);
    }

    #[test]
    fn update_checks_versions_and_keeps_status_apart() {
        let mut store = store();
        let rt = services();
        store
            .create(
                &rt,
                "ns",
                json!({"metadata": {"name": "a"}, "spec": {"p": 1}}),
            )
            .unwrap();
        let stale = store.update(
            &rt,
            "ns",
            "a",
            Part::Object,
            json!({"metadata": {"name": "a", "resourceVersion": "7"}, "spec": {"p": 2}}),
        );
        assert_eq!(stale.unwrap_err().code, 409);
        let status = store
            .update(
                &rt,
                "ns",
                "a",
                Part::Status,
                json!({"metadata": {"name": "a"}, "spec": {"p": 9}, "status": {"s": 1}}),
            )
            .unwrap();
        assert_eq!(status["spec"]["p"], 1, "a status write leaves spec alone");
        assert_eq!(status["status"]["s"], 1);
        assert_eq!(status["metadata"]["generation"], 1);
        let object = store
            .update(
                &rt,
                "ns",
                "a",
                Part::Object,
                json!({"metadata": {"name": "a", "resourceVersion": "2"}, "spec": {"p": 2}}),
            )
            .unwrap();
        assert_eq!(
            object["status"]["s"], 1,
            "an object write leaves status alone"
        );
        assert_eq!(object["metadata"]["generation"], 2);
        assert_eq!(object["metadata"]["resourceVersion"], "3");
        let same = store
            .update(&rt, "ns", "a", Part::Object, object.clone())
            .unwrap();
        assert_eq!(same, object, "a no-op write changes nothing");
        assert_eq!(store.revision(), 3);
    }

    #[test]
    fn finalizers_hold_deletion() {
        let mut store = store();
        let rt = services();
        store
            .create(
                &rt,
                "ns",
                json!({"metadata": {"name": "a", "finalizers": ["x"]}}),
            )
            .unwrap();
        let marked = store.delete(&rt, "ns", "a", None).unwrap();
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        let mut released = marked.clone();
        released["metadata"]["finalizers"] = json!([]);
        store
            .update(&rt, "ns", "a", Part::Object, released)
            .unwrap();
        assert_eq!(store.get(&rt, "ns", "a").unwrap_err().code, 404);
        let kinds: Vec<ChangeKind> = store
            .changes_after(&rt, 0)
            .unwrap()
            .iter()
            .map(|c| c.kind)
            .collect();
        assert_eq!(
            kinds,
            [ChangeKind::Added, ChangeKind::Modified, ChangeKind::Deleted]
        );
    }
}
