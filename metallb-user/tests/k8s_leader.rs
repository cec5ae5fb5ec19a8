//! Leader election on a Lease, through the real kube::Client against the in-process
//! test API server: one leader at a time, takeover after a crash, fast takeover after a
//! graceful stop, and a leader that sees another holder stops leading.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use metallb_testkit::TestApiServer;
use metallb_user::kubernetes::leader::{Elector, Leadership, LeaseConfig};
use serde_json::json;
use tokio::{sync::oneshot, task::JoinHandle, time::Instant};

const DEADLINE: Duration = Duration::from_secs(10);

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_millis(1000),
        renew_deadline: Duration::from_millis(700),
        retry_period: Duration::from_millis(100),
        ..LeaseConfig::with_defaults("metallb-system", "metallb-controller", identity)
    }
}

struct Candidate {
    leadership: Leadership,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

fn candidate(server: &TestApiServer, identity: &str) -> Candidate {
    let (elector, leadership) = Elector::new(server.client().unwrap(), config(identity));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(elector.run(async move {
        let _ = stopped.await;
    }));
    Candidate {
        leadership,
        stop: Some(stop),
        task,
    }
}

async fn until(what: &str, condition: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn one_leader_then_takeover_after_a_crash_and_after_a_graceful_stop() {
    let server = TestApiServer::start().await.unwrap();
    let mut a = candidate(&server, "a");
    let b = candidate(&server, "b");
    until("a leader", || {
        a.leadership.is_leader() || b.leadership.is_leader()
    })
    .await;
    // Never two leaders, over many retry periods.
    let watch_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < watch_until {
        assert!(
            !(a.leadership.is_leader() && b.leadership.is_leader()),
            "two leaders at once"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (leader, follower) = if a.leadership.is_leader() {
        (a, b)
    } else {
        (b, a)
    };
    assert!(!follower.leadership.is_leader());

    // A crash: the leader vanishes without releasing; the other takes over once the
    // record has stood still for the lease duration.
    leader.task.abort();
    let took = until("takeover after a crash", || follower.leadership.is_leader()).await;
    assert!(
        took >= Duration::from_millis(500),
        "took over after {took:?}, before the lease could expire"
    );

    // A graceful stop releases the lease: a new candidate takes it at once.
    let mut follower = follower;
    let c = candidate(&server, "c");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!c.leadership.is_leader(), "the lease is held");
    let _ = follower.stop.take().map(|s| s.send(()));
    let took = until("takeover after a release", || c.leadership.is_leader()).await;
    assert!(
        took < Duration::from_millis(900),
        "a released lease was taken after {took:?}"
    );
    let lease = server
        .object(
            "coordination.k8s.io",
            "v1",
            "leases",
            "metallb-system",
            "metallb-controller",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "c");
    assert_eq!(lease["spec"]["leaseTransitions"], 2);
    a = c;
    let _ = a.stop.take().map(|s| s.send(()));
}

#[tokio::test]
async fn a_leader_that_sees_another_holder_stops_leading_at_once() {
    let server = TestApiServer::start().await.unwrap();
    let a = candidate(&server, "a");
    until("a leads", || a.leadership.is_leader()).await;
    let leases: Api<Lease> = Api::namespaced(server.client().unwrap(), "metallb-system");
    leases
        .patch(
            "metallb-controller",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 60}}),
            ),
        )
        .await
        .unwrap();
    let took = until("a steps down", || !a.leadership.is_leader()).await;
    assert!(
        took < Duration::from_millis(500),
        "stepped down after {took:?}"
    );
    a.task.abort();
}
