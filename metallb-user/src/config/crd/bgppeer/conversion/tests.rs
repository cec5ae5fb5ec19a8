use kube::core::conversion::{ConversionRequest, ConversionReview};
use serde_json::{Value, json};

use super::*;

fn peer(api_version: &str, spec: Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "BGPPeer",
        "metadata": {"name": "peer1", "namespace": "metallb-test-namespace", "uid": "u1", "resourceVersion": "7"},
        "spec": spec,
    })
}

/// (case, from, to, spec in, spec out). Ported from MetalLB's
/// `api/v1beta1/bgppeer_conversion_test.go`, then its behaviour at the edges.
#[allow(clippy::type_complexity)]
fn cases() -> Vec<(&'static str, &'static str, &'static str, Value, Value)> {
    vec![
        (
            "MetalLB's ConvertTo test",
            V1BETA1,
            V1BETA2,
            json!({
                "myASN": 42, "peerASN": 142, "peerAddress": "1.2.3.4", "peerPort": 1179,
                "holdTime": "180s", "routerID": "10.20.30.40", "sourceAddress": "10.20.30.40",
                "ebgpMultiHop": true, "bfdProfile": "default", "keepaliveTime": "1s",
                "password": "nopass",
                "nodeSelectors": [{"matchLabels": {"foo": "bar"}, "matchExpressions": [{"key": "", "operator": "In", "values": ["quux"]}]}],
            }),
            json!({
                "myASN": 42, "peerASN": 142, "peerAddress": "1.2.3.4", "peerPort": 1179,
                "holdTime": "3m0s", "routerID": "10.20.30.40", "sourceAddress": "10.20.30.40",
                "ebgpMultiHop": true, "bfdProfile": "default", "keepaliveTime": "1s",
                "password": "nopass",
                "nodeSelectors": [{"matchLabels": {"foo": "bar"}, "matchExpressions": [{"key": "", "operator": "In", "values": ["quux"]}]}],
            }),
        ),
        (
            "MetalLB's ConvertFrom test: v1beta2's passwordSecret is dropped",
            V1BETA2,
            V1BETA1,
            json!({
                "myASN": 42, "peerASN": 142, "peerAddress": "1.2.3.4", "peerPort": 1179,
                "holdTime": "3m0s", "routerID": "10.20.30.40", "sourceAddress": "10.20.30.40",
                "ebgpMultiHop": true, "password": "nopass",
                "passwordSecret": {"name": "nosecret", "namespace": "metallb-system"},
                "bfdProfile": "default", "keepaliveTime": "1s",
                "nodeSelectors": [{"matchLabels": {"foo": "bar"}, "matchExpressions": [{"key": "", "operator": "In", "values": ["quux"]}]}],
            }),
            json!({
                "myASN": 42, "peerASN": 142, "peerAddress": "1.2.3.4", "peerPort": 1179,
                "holdTime": "3m0s", "routerID": "10.20.30.40", "sourceAddress": "10.20.30.40",
                "ebgpMultiHop": true, "password": "nopass", "bfdProfile": "default",
                "keepaliveTime": "1s",
                "nodeSelectors": [{"matchLabels": {"foo": "bar"}, "matchExpressions": [{"key": "", "operator": "In", "values": ["quux"]}]}],
            }),
        ),
        (
            "absent v1beta1 timers become 0s (MetalLB takes the address of Go's zero Duration)",
            V1BETA1,
            V1BETA2,
            json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1"}),
            json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", "holdTime": "0s", "keepaliveTime": "0s"}),
        ),
        (
            "absent v1beta2 timers read as 0s in v1beta1 (Go writes the zero Duration)",
            V1BETA2,
            V1BETA1,
            json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1"}),
            json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", "holdTime": "0s", "keepaliveTime": "0s"}),
        ),
        (
            "v1beta2-only fields are dropped; v1beta1's required fields are written even when zero",
            V1BETA2,
            V1BETA1,
            json!({
                "myASN": 64500, "dynamicASN": "external", "interface": "eth1", "vrf": "red",
                "localASN": 64999, "connectTime": "5s", "enableGracefulRestart": true,
                "disableMP": true, "dualStackAddressFamily": true, "holdTime": "90s",
                "keepaliveTime": "30s",
            }),
            json!({"myASN": 64500, "peerASN": 0, "peerAddress": "", "holdTime": "1m30s", "keepaliveTime": "30s"}),
        ),
        (
            "selectors: an empty one stays empty; v1beta1 writes values even when there are none",
            V1BETA2,
            V1BETA1,
            json!({
                "myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1", "holdTime": "9s", "keepaliveTime": "3s",
                "nodeSelectors": [{}, {"matchExpressions": [{"key": "rack", "operator": "Exists"}]}],
            }),
            json!({
                "myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1", "holdTime": "9s", "keepaliveTime": "3s",
                "nodeSelectors": [{}, {"matchExpressions": [{"key": "rack", "operator": "Exists", "values": []}]}],
            }),
        ),
        (
            "selectors up: empty parts are left out",
            V1BETA1,
            V1BETA2,
            json!({
                "myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1", "holdTime": "1h", "keepaliveTime": "20m",
                "nodeSelectors": [{"matchLabels": {}}, {"matchLabels": {"zone": "a"}}],
            }),
            json!({
                "myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1", "holdTime": "1h0m0s", "keepaliveTime": "20m0s",
                "nodeSelectors": [{}, {"matchLabels": {"zone": "a"}}],
            }),
        ),
        (
            "port 0 and false flags are left out, as Go's omitempty",
            V1BETA1,
            V1BETA2,
            json!({"myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1", "peerPort": 0, "ebgpMultiHop": false, "holdTime": "90s"}),
            json!({"myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1", "holdTime": "1m30s", "keepaliveTime": "0s"}),
        ),
    ]
}

#[test]
fn converts_as_metallb() {
    for (case, from, to, spec_in, spec_out) in cases() {
        let converted = convert(&peer(from, spec_in), to).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(converted, peer(to, spec_out), "{case}");
    }
}

#[test]
fn objects_already_in_the_desired_version_are_returned_unchanged() {
    let object = peer(
        V1BETA2,
        json!({"myASN": 1, "holdTime": "90s", "futureField": 1}),
    );
    assert_eq!(convert(&object, V1BETA2).unwrap(), object);
}

#[test]
fn conversion_keeps_metadata_and_status() {
    let mut object = peer(
        V1BETA1,
        json!({"myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1"}),
    );
    object["metadata"]["labels"] = json!({"team": "net"});
    object["metadata"]["annotations"] = json!({"note": "x"});
    object["status"] = json!({});
    let converted = convert(&object, V1BETA2).unwrap();
    assert_eq!(converted["metadata"], object["metadata"]);
    assert_eq!(converted["status"], json!({}));
    let back = convert(&converted, V1BETA1).unwrap();
    assert_eq!(back["metadata"], object["metadata"]);
}

#[test]
fn what_go_cannot_decode_fails_the_conversion() {
    let cases = [
        (
            peer(
                V1BETA1,
                json!({"myASN": 1, "peerASN": 2, "peerAddress": "a", "holdTime": "90"}),
            ),
            V1BETA2,
            "BGPPeer peer1: time: missing unit in duration \"90\"",
        ),
        (
            peer(V1BETA2, json!({"myASN": 4_294_967_296_u64})),
            V1BETA1,
            "BGPPeer peer1: invalid value: integer `4294967296`, expected u32",
        ),
        (
            peer(V1BETA1, json!({"myASN": 1})),
            V1BETA2,
            "BGPPeer peer1: missing field `peerASN`",
        ),
        (
            peer("metallb.io/v1alpha1", json!({})),
            V1BETA2,
            "\"BGPPeer\" \"metallb.io/v1alpha1\" is not a metallb.io BGPPeer version this webhook converts",
        ),
        (
            json!({"apiVersion": V1BETA1, "kind": "BGPAdvertisement", "metadata": {}}),
            V1BETA2,
            "\"BGPAdvertisement\" \"metallb.io/v1beta1\" is not a metallb.io BGPPeer version this webhook converts",
        ),
        (
            peer(V1BETA1, json!({})),
            "metallb.io/v1",
            "cannot convert to \"metallb.io/v1\": BGPPeer is served as metallb.io/v1beta1 and metallb.io/v1beta2",
        ),
    ];
    for (object, to, message) in cases {
        let error = convert(&object, to).expect_err(message);
        assert!(
            error.to_string().starts_with(message),
            "{error} is not {message}"
        );
    }
}

fn review_of(objects: Vec<Value>, desired: &str) -> Value {
    let incoming: ConversionReview = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "desiredAPIVersion": desired, "objects": objects},
    }))
    .unwrap();
    let request = ConversionRequest::from_review(incoming).unwrap();
    serde_json::to_value(review(request).into_review()).unwrap()
}

#[test]
fn a_review_converts_every_object_in_order_or_fails_as_a_whole() {
    let first = peer(
        V1BETA1,
        json!({"myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1"}),
    );
    let second = peer(V1BETA2, json!({"myASN": 3}));
    let answer = review_of(vec![first.clone(), second.clone()], V1BETA2);
    assert_eq!(answer["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(answer["kind"], "ConversionReview");
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(answer["response"]["result"]["status"], "Success");
    assert_eq!(
        answer["response"]["convertedObjects"],
        json!([convert(&first, V1BETA2).unwrap(), second])
    );

    let broken = peer(V1BETA2, json!({"myASN": "one"}));
    let answer = review_of(vec![first, broken], V1BETA1);
    assert_eq!(answer["response"]["result"]["status"], "Failure");
    let message = answer["response"]["result"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("object 1: BGPPeer peer1: invalid type: string \"one\""),
        "{message}"
    );
    assert_eq!(answer["response"]["convertedObjects"], json!([]));
}
