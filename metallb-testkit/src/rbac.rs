//! Whether the requests a component made are exactly what its RBAC table
//! (`metallb_user::kubernetes::rbac`) grants: the code under test talks to the test API
//! server through [`TestApiServer::client_as`] with the component's user, and these
//! checks read that user's recorded requests as the API server's authorizer would.

use std::collections::BTreeSet;

use metallb_user::kubernetes::rbac::{Component, Request};

use crate::{TestApiServer, apiserver::RecordedRequest};

/// A client that the server records as `component`'s ServiceAccount in `namespace`.
pub fn client(server: &TestApiServer, component: &Component, namespace: &str) -> kube::Client {
    server
        .client_as(&component.user(namespace))
        .expect("a client of the test API server")
}

/// `recorded` as the authorizer sees it (`None` for a path that is no resource).
pub fn request(recorded: &RecordedRequest) -> Option<Request<'_>> {
    let attributes = recorded.attributes()?;
    Some(Request {
        api_group: attributes.group,
        resource: attributes.resource,
        subresource: attributes.subresource,
        verb: attributes.verb.as_str(),
        namespace: attributes.namespace,
        name: attributes.name,
    })
}

fn shown(recorded: &RecordedRequest) -> String {
    let query: Vec<String> = recorded
        .query
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    format!(
        "{:?} {} {}?{}",
        recorded.verb,
        recorded.method,
        recorded.path,
        query.join("&")
    )
}

/// The requests recorded as `component`'s ServiceAccount's.
pub fn made_by(
    server: &TestApiServer,
    component: &Component,
    namespace: &str,
) -> Vec<RecordedRequest> {
    let user = component.user(namespace);
    server
        .requests()
        .into_iter()
        .filter(|r| r.user.as_deref() == Some(user.as_str()))
        .collect()
}

/// The requests `component` made so far. Panics when there is none (the code under
/// test does not use the component's client) or when a rule of the table is missing
/// for one of them, naming each request refused.
pub fn assert_authorized(
    server: &TestApiServer,
    component: &Component,
    namespace: &str,
) -> Vec<RecordedRequest> {
    let made = made_by(server, component, namespace);
    let user = component.user(namespace);
    assert!(
        !made.is_empty(),
        "no request of {user} was recorded: does the code under test use \
         metallb_testkit::rbac::client (TestApiServer::client_as)?"
    );
    let refused: BTreeSet<String> = made
        .iter()
        .filter(|r| request(r).is_none_or(|q| component.allowing(&q, namespace).is_none()))
        .map(shown)
        .collect();
    assert!(
        refused.is_empty(),
        "the RBAC of the {} (metallb-user/src/kubernetes/rbac.rs) would refuse:\n  {}",
        component.name,
        refused.into_iter().collect::<Vec<_>>().join("\n  ")
    );
    made
}

/// The (resource, verb) pairs that `component`'s table grants and none of the requests
/// it made so far used.
pub fn unused(server: &TestApiServer, component: &Component, namespace: &str) -> Vec<String> {
    let made = made_by(server, component, namespace);
    let requests: Vec<Request<'_>> = made.iter().filter_map(request).collect();
    let mut unused = Vec::new();
    for rule in component.rules {
        for resource in rule.resources {
            for verb in rule.verbs {
                let used = requests.iter().any(|q| {
                    q.verb == *verb && q.rbac_resource() == *resource && rule.allows(q, namespace)
                });
                if !used {
                    unused.push(format!("{verb} {resource} ({:?})", rule.scope));
                }
            }
        }
    }
    unused
}

/// Panics unless every request `component` made is allowed ([`assert_authorized`]) and
/// every (resource, verb) that its table grants was used by one of them: the table
/// grants nothing the code does not need.
pub fn assert_every_rule_used(server: &TestApiServer, component: &Component, namespace: &str) {
    assert_authorized(server, component, namespace);
    let unused = unused(server, component, namespace);
    assert!(
        unused.is_empty(),
        "the {}'s RBAC grants what no request used (remove it from \
         metallb-user/src/kubernetes/rbac.rs, or exercise it here):\n  {}",
        component.name,
        unused.join("\n  ")
    );
}
