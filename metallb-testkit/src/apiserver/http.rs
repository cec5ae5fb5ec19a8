//! The HTTP side of the test server: the API's URL layout, verbs, patch types, list
//! pagination and watch streams, on top of the [`Store`](super::store::Store).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::{Query, State},
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    Fault, RecordedRequest, Shared, Verb,
    selector::{FieldSelector, LabelSelector},
    store::{ApiError, ApiResult, ChangeKind, Filter, Part, ResourceType},
};

/// Where a request points, once the URL is read.
#[derive(Debug)]
struct Target {
    rt: ResourceType,
    /// Empty for cluster-scoped resources and for lists across namespaces.
    namespace: String,
    /// `None` for the collection.
    name: Option<String>,
    part: Part,
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error_response(error: &ApiError) -> Response {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &error.status())
}

/// `(group, version, remaining segments)` of an API path.
fn split_path(path: &str) -> Option<(String, String, Vec<String>)> {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    match segments.as_slice() {
        [api, version, rest @ ..] if api == "api" => {
            Some((String::new(), version.clone(), rest.to_vec()))
        }
        [apis, group, version, rest @ ..] if apis == "apis" => {
            Some((group.clone(), version.clone(), rest.to_vec()))
        }
        _ => None,
    }
}

fn target(shared: &Shared, path: &str) -> ApiResult<Target> {
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    };
    let (group, version, rest) = split_path(path).ok_or_else(not_found)?;
    let store = shared.lock_store();
    let lookup = |plural: &str| {
        store
            .resource(&group, &version, plural)
            .cloned()
            .ok_or_else(not_found)
    };
    let status_part = |segment: &str| match segment {
        "status" => Ok(Part::Status),
        _ => Err(not_found()),
    };
    let namespaced_collection = |rest: &[String]| {
        rest.len() >= 3 && rest[0] == "namespaces" && !(rest.len() == 3 && rest[2] == "status")
    };
    let (rt, namespace, name, part) = if namespaced_collection(&rest) {
        let rt = lookup(&rest[2])?;
        if !rt.namespaced {
            return Err(not_found());
        }
        match &rest[3..] {
            [] => (rt, rest[1].clone(), None, Part::Object),
            [name] => (rt, rest[1].clone(), Some(name.clone()), Part::Object),
            [name, sub] => (rt, rest[1].clone(), Some(name.clone()), status_part(sub)?),
            _ => return Err(not_found()),
        }
    } else {
        match rest.as_slice() {
            [plural] => (lookup(plural)?, String::new(), None, Part::Object),
            [plural, name] => {
                let rt = lookup(plural)?;
                if rt.namespaced {
                    return Err(not_found());
                }
                (rt, String::new(), Some(name.clone()), Part::Object)
            }
            [plural, name, sub] => {
                let rt = lookup(plural)?;
                if rt.namespaced {
                    return Err(not_found());
                }
                (rt, String::new(), Some(name.clone()), status_part(sub)?)
            }
            _ => return Err(not_found()),
        }
    };
    if part == Part::Status && !rt.status_subresource {
        return Err(not_found());
    }
    Ok(Target {
        rt,
        namespace,
        name,
        part,
    })
}

fn verb(method: &Method, target: &Target, query: &BTreeMap<String, String>) -> Verb {
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    match *method {
        Method::GET if target.name.is_some() => Verb::Get,
        Method::GET if watching => Verb::Watch,
        Method::GET => Verb::List,
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE if target.name.is_none() => Verb::DeleteCollection,
        Method::DELETE => Verb::Delete,
        _ => Verb::Other,
    }
}

fn parse_body(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

fn filter(target: &Target, query: &BTreeMap<String, String>) -> ApiResult<Filter> {
    let labels = query
        .get("labelSelector")
        .map(|s| LabelSelector::parse(s))
        .transpose()
        .map_err(ApiError::bad_request)?
        .unwrap_or_default();
    let fields = query
        .get("fieldSelector")
        .map(|s| FieldSelector::parse(s))
        .transpose()
        .map_err(ApiError::bad_request)?
        .unwrap_or_default();
    Ok(Filter {
        namespace: (target.rt.namespaced && !target.namespace.is_empty())
            .then(|| target.namespace.clone()),
        labels,
        fields,
    })
}

/// The answer to one request, and what the record of it says.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if path == "/version" {
        return json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-metallb-testkit", "platform": "linux/amd64"}),
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let user = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let target = match target(&shared, &path) {
        Ok(target) => target,
        Err(error) => {
            shared.record(RecordedRequest {
                method: method.to_string(),
                verb: Verb::Other,
                path,
                query,
                content_type,
                body: String::from_utf8_lossy(&body).into_owned(),
                code: error.code,
                user,
            });
            return error_response(&error);
        }
    };
    let verb = verb(&method, &target, &query);
    let fault = shared.take_fault(verb, &target.rt.plural, target.part);
    let result = match fault {
        Some(Fault { code, .. }) => Err(ApiError::new(
            code,
            "InternalError",
            format!("injected fault: {code}"),
        )),
        None => execute(&shared, verb, &target, &query, &content_type, &body).await,
    };
    let code = match &result {
        Ok(response) => response.status().as_u16(),
        Err(error) => error.code,
    };
    shared.record(RecordedRequest {
        method: method.to_string(),
        verb,
        path,
        query,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
        code,
        user,
    });
    result.unwrap_or_else(|error| error_response(&error))
}

async fn execute(
    shared: &Arc<Shared>,
    verb: Verb,
    target: &Target,
    query: &BTreeMap<String, String>,
    content_type: &str,
    body: &[u8],
) -> ApiResult<Response> {
    let rt = &target.rt;
    let name = target.name.as_deref().unwrap_or_default();
    let ok = |value: Value| json_response(StatusCode::OK, &value);
    match verb {
        Verb::Get => Ok(ok(shared.lock_store().get(rt, &target.namespace, name)?)),
        Verb::List => list(shared, target, query),
        Verb::Watch => watch(shared, target, query),
        Verb::Create => {
            let object = parse_body(body)?;
            let created = shared.write(|store| store.create(rt, &target.namespace, object))?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        Verb::Update => {
            let object = parse_body(body)?;
            Ok(ok(shared.write(|store| {
                store.update(rt, &target.namespace, name, target.part, object)
            })?))
        }
        Verb::Patch => {
            patch(shared, target, content_type, body).map(|(code, v)| json_response(code, &v))
        }
        Verb::Delete => {
            let options = if body.is_empty() {
                Value::Null
            } else {
                parse_body(body)?
            };
            let precondition = options["preconditions"]["resourceVersion"].as_str();
            Ok(ok(shared.write(|store| {
                store.delete(rt, &target.namespace, name, precondition)
            })?))
        }
        Verb::DeleteCollection | Verb::Other => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the test server does not implement this verb",
        )),
    }
}

fn list(shared: &Shared, target: &Target, query: &BTreeMap<String, String>) -> ApiResult<Response> {
    let filter = filter(target, query)?;
    let store = shared.lock_store();
    let items = store.list(&target.rt, &filter)?;
    let start: usize = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => token
            .parse()
            .map_err(|_| ApiError::new(410, "Expired", "the continue token is not valid"))?,
        None => 0,
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(items.len());
    let page: Vec<Value> = items.get(start..end).unwrap_or_default().to_vec();
    let mut metadata = json!({"resourceVersion": store.revision().to_string()});
    if end < items.len() {
        metadata["continue"] = end.to_string().into();
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", target.rt.kind),
            "apiVersion": target.rt.api_version(),
            "metadata": metadata,
            "items": page,
        }),
    ))
}

fn patch(
    shared: &Shared,
    target: &Target,
    content_type: &str,
    body: &[u8],
) -> ApiResult<(StatusCode, Value)> {
    let rt = &target.rt;
    let name = target.name.as_deref().unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let apply = media == "application/apply-patch+yaml";
    let patch: Value = if apply {
        serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the apply body is not valid YAML: {e}")))?
    } else {
        parse_body(body)?
    };
    shared.write(|store| {
        let current = match store.get(rt, &target.namespace, name) {
            Ok(current) => current,
            Err(error) if error.code == 404 && apply && target.part == Part::Object => {
                // Server-side apply creates what does not exist.
                let created = store.create(rt, &target.namespace, patch.clone())?;
                return Ok((StatusCode::CREATED, created));
            }
            Err(error) => return Err(error),
        };
        let mut next = current;
        match media {
            "application/json-patch+json" => {
                let operations: json_patch::Patch = serde_json::from_value(patch)
                    .map_err(|e| ApiError::bad_request(format!("not a JSON patch: {e}")))?;
                json_patch::patch(&mut next, &operations).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!("the JSON patch does not apply: {e}"),
                    )
                })?;
            }
            // Strategic merge is approximated by a JSON merge patch (lists are replaced,
            // not merged by key); server-side apply by merging the applied fields.
            "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
            | "application/apply-patch+yaml" => json_patch::merge(&mut next, &patch),
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the patch type {other:?} is not supported"),
                ));
            }
        }
        let updated = store.update(rt, &target.namespace, name, target.part, next)?;
        Ok((StatusCode::OK, updated))
    })
}

/// Where a watch starts, from its parameters.
enum Start {
    /// Synthetic ADDED events for what exists now, then changes; with a bookmark that
    /// ends the initial events when `sendInitialEvents=true` asked for one.
    Now { initial_events_end: bool },
    /// Changes after this revision.
    After(u64),
}

fn watch(
    shared: &Arc<Shared>,
    target: &Target,
    query: &BTreeMap<String, String>,
) -> ApiResult<Response> {
    let filter = filter(target, query)?;
    let version = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let send_initial = query.get("sendInitialEvents").map(String::as_str) == Some("true");
    let start = match version {
        _ if send_initial => Start::Now {
            initial_events_end: true,
        },
        "" | "0" => Start::Now {
            initial_events_end: false,
        },
        text => Start::After(
            text.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {text:?}")))?,
        ),
    };
    let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let stream = WatchStream {
        shared: shared.clone(),
        rt: target.rt.clone(),
        filter,
        bookmarks,
        sender,
    };
    tokio::spawn(stream.run(start, timeout));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

struct WatchStream {
    shared: Arc<Shared>,
    rt: ResourceType,
    filter: Filter,
    bookmarks: bool,
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl WatchStream {
    async fn send(&self, kind: &str, object: Value) -> bool {
        let line = json!({"type": kind, "object": object}).to_string() + "\n";
        self.sender.send(Ok(Bytes::from(line))).await.is_ok()
    }

    fn bookmark(&self, revision: u64, initial_events_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": metadata})
    }

    async fn expired(&self) {
        let error = ApiError::new(
            410,
            "Expired",
            "too old resource version (the test server compacted its history)",
        );
        self.send("ERROR", error.status()).await;
    }

    async fn run(self, start: Start, timeout: Option<Duration>) {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut notifications = self.shared.subscribe();
        let epoch = notifications.borrow_and_update().1;
        let mut cursor = match start {
            Start::After(revision) => {
                if revision < self.shared.lock_store().oldest_watchable() {
                    self.expired().await;
                    return;
                }
                revision
            }
            Start::Now { initial_events_end } => {
                let (objects, revision) = {
                    let store = self.shared.lock_store();
                    let objects = store.list(&self.rt, &self.filter).unwrap_or_default();
                    (objects, store.revision())
                };
                for object in objects {
                    if !self.send("ADDED", object).await {
                        return;
                    }
                }
                if initial_events_end && !self.send("BOOKMARK", self.bookmark(revision, true)).await
                {
                    return;
                }
                revision
            }
        };
        let bookmark_every = self.shared.bookmark_interval;
        loop {
            let (changes, revision) = {
                let store = self.shared.lock_store();
                (
                    store.changes_after(&self.rt, cursor).unwrap_or_default(),
                    store.revision(),
                )
            };
            for change in changes {
                cursor = change.revision;
                let before = change
                    .before
                    .as_ref()
                    .is_some_and(|b| self.filter.matches(&change.namespace, b));
                let after = self.filter.matches(&change.namespace, &change.after);
                let kind = match (change.kind, before, after) {
                    (ChangeKind::Added, _, true) => "ADDED",
                    (ChangeKind::Modified, true, true) => "MODIFIED",
                    (ChangeKind::Modified, false, true) => "ADDED",
                    (ChangeKind::Modified, true, false) => "DELETED",
                    (ChangeKind::Deleted, true, _) => "DELETED",
                    _ => continue,
                };
                if !self.send(kind, change.after).await {
                    return;
                }
            }
            cursor = cursor.max(revision);
            let wait = async {
                tokio::select! {
                    changed = notifications.changed() => if changed.is_err() { Wake::Closed } else { Wake::Changed },
                    () = tokio::time::sleep(bookmark_every) => Wake::Bookmark,
                    () = sleep_until(deadline) => Wake::Timeout,
                    () = self.sender.closed() => Wake::Closed,
                }
            };
            match wait.await {
                Wake::Changed if notifications.borrow().1 != epoch => {
                    self.expired().await;
                    return;
                }
                Wake::Changed => {}
                Wake::Bookmark if self.bookmarks => {
                    if !self.send("BOOKMARK", self.bookmark(cursor, false)).await {
                        return;
                    }
                }
                Wake::Bookmark => {}
                Wake::Timeout | Wake::Closed => return,
            }
        }
    }
}

enum Wake {
    Changed,
    Bookmark,
    Timeout,
    Closed,
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
