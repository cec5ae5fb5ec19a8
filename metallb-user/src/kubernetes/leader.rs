//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection
//! does it: every write of the Lease carries the `resourceVersion` read, so two
//! candidates can never both take it (one gets 409 Conflict); a holder's lease counts as
//! expired only when its record has not changed for the lease duration on *this*
//! candidate's clock, so clock skew between nodes does not matter.
//!
//! The leader renews every `retry_period`; when it cannot renew for `renew_deadline`, or
//! sees another holder, it stops being the leader at once. On a graceful stop it
//! releases the Lease so that another replica takes over without waiting.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client,
    api::{PostParams, ResourceExt as _},
};
use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate, e.g. the Pod name.
    pub identity: String,
    /// How long a holder's record must stay unchanged before another takes it.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// Time between attempts (and renewals).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's (and so MetalLB's controller's) defaults: 15 s, 10 s, 2 s.
    pub fn with_defaults(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What one attempt must do, given the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No Lease exists: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder's record has not changed for its duration: take it.
    Acquire,
    /// Someone else holds it.
    Follow { holder: String },
}

/// The part of a Lease that says who holds it; a change of any field is a sign of life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub holder: Option<String>,
    pub renew_time: Option<String>,
    pub duration: Option<Duration>,
}

impl Record {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Self {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.map(|t| t.0.to_string()),
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        }
    }
}

/// The record last seen, and when it was first seen as it is (local clock).
#[derive(Clone, Debug)]
pub struct Observed {
    pub record: Record,
    pub since: Instant,
}

/// Decides an attempt. `observed` must already be updated with the record just read.
pub fn decide(
    record: Option<&Record>,
    observed: Option<&Observed>,
    identity: &str,
    default_duration: Duration,
    now: Instant,
) -> Step {
    let Some(record) = record else {
        return Step::Create;
    };
    match record.holder.as_deref() {
        None => Step::Acquire,
        Some(holder) if holder == identity => Step::Renew,
        Some(holder) => {
            let duration = record.duration.unwrap_or(default_duration);
            let expired = observed.is_some_and(|o| o.since + duration <= now);
            if expired {
                Step::Acquire
            } else {
                Step::Follow {
                    holder: holder.to_owned(),
                }
            }
        }
    }
}

/// Whether this replica leads now; cheap to clone and to ask before every write.
#[derive(Clone, Debug)]
pub struct Leadership {
    receiver: watch::Receiver<bool>,
    /// Keeps the value of [`Leadership::always`] alive (no elector sends to it).
    _fixed: Option<std::sync::Arc<watch::Sender<bool>>>,
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Waits until this replica leads (returns at once if it does).
    pub async fn acquired(&mut self) {
        let _ = self.receiver.wait_for(|leading| *leading).await;
    }

    /// Waits for the next change of leadership.
    pub async fn changed(&mut self) -> bool {
        let _ = self.receiver.changed().await;
        *self.receiver.borrow()
    }

    /// Always the leader: for a single replica without election.
    pub fn always() -> Self {
        let (sender, receiver) = watch::channel(true);
        Self {
            receiver,
            _fixed: Some(std::sync::Arc::new(sender)),
        }
    }
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
    leading: watch::Sender<bool>,
    last_renewal: Option<Instant>,
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> (Self, Leadership) {
        let (leading, receiver) = watch::channel(false);
        let elector = Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            leading,
            last_renewal: None,
        };
        (
            elector,
            Leadership {
                receiver,
                _fixed: None,
            },
        )
    }

    fn set_leading(&self, leading: bool) {
        self.leading.send_if_modified(|current| {
            let changed = *current != leading;
            *current = leading;
            changed
        });
    }

    fn spec(&self, acquire_time: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: i32::try_from(self.config.lease_duration.as_secs()).ok(),
            acquire_time,
            renew_time: Some(micro_now()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One attempt; Ok(true) when we hold the Lease after it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let current = self.api.get_opt(&self.config.name).await?;
        let record = current.as_ref().map(Record::of);
        match (&record, &self.observed) {
            (Some(record), Some(observed)) if observed.record == *record => {}
            (Some(record), _) => {
                self.observed = Some(Observed {
                    record: record.clone(),
                    since: now,
                })
            }
            (None, _) => self.observed = None,
        }
        let step = decide(
            record.as_ref(),
            self.observed.as_ref(),
            &self.config.identity,
            self.config.lease_duration,
            now,
        );
        let written = match (step, current) {
            (Step::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(Some(micro_now()), 0)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (Step::Follow { .. }, _) | (_, None) => return Ok(false),
            (step, Some(mut lease)) => {
                let old = lease.spec.clone().unwrap_or_default();
                let transitions = old.lease_transitions.unwrap_or(0);
                lease.spec = Some(if step == Step::Renew {
                    self.spec(old.acquire_time, transitions)
                } else {
                    self.spec(Some(micro_now()), transitions + 1)
                });
                // Carries the resourceVersion read: a concurrent writer makes this 409.
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(lease) => {
                self.observed = Some(Observed {
                    record: Record::of(&lease),
                    since: Instant::now(),
                });
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Campaigns and renews until `stop` resolves, then releases the Lease if held.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let attempt = self.try_acquire_or_renew().await;
            let now = Instant::now();
            match attempt {
                Ok(true) => {
                    if !*self.leading.borrow() {
                        info!(lease = %self.config.name, identity = %self.config.identity, "became the leader");
                    }
                    self.last_renewal = Some(now);
                    self.set_leading(true);
                }
                Ok(false) => {
                    if *self.leading.borrow() {
                        warn!(lease = %self.config.name, holder = ?self.observed.as_ref().and_then(|o| o.record.holder.clone()), "lost the lease: no longer the leader");
                    }
                    self.set_leading(false);
                }
                Err(error) => {
                    let overdue = self
                        .last_renewal
                        .is_none_or(|last| now.duration_since(last) >= self.config.renew_deadline);
                    warn!(lease = %self.config.name, %error, "cannot read or write the lease");
                    if overdue && *self.leading.borrow() {
                        warn!(lease = %self.config.name, "no renewal within the renew deadline: no longer the leader");
                        self.set_leading(false);
                    }
                }
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
        self.release().await;
    }

    /// Gives the Lease up (holder cleared, duration 1 s) if we hold it.
    async fn release(&mut self) {
        self.set_leading(false);
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(micro_now());
        match self
            .api
            .replace(&lease.name_any(), &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.config.name, "released the lease"),
            Err(error) => warn!(lease = %self.config.name, %error, "could not release the lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: Option<&str>, renew: &str, duration: Option<u64>) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            renew_time: Some(renew.into()),
            duration: duration.map(Duration::from_secs),
        }
    }

    #[test]
    fn decision_table() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let default = Duration::from_secs(15);
        let other = record(Some("b"), "t1", Some(15));
        let seen = |record: &Record, since| Observed {
            record: record.clone(),
            since,
        };
        let short = record(Some("b"), "t1", Some(1));
        // (record, observed since, now, step)
        let cases: Vec<(Option<Record>, Option<Observed>, Instant, Step)> = vec![
            (None, None, at(0), Step::Create),
            (
                Some(record(Some("a"), "t1", Some(15))),
                None,
                at(0),
                Step::Renew,
            ),
            (
                Some(record(None, "t1", Some(15))),
                None,
                at(0),
                Step::Acquire,
            ),
            (
                Some(record(Some(""), "t1", Some(15))).map(|mut r| {
                    r.holder = None;
                    r
                }),
                None,
                at(0),
                Step::Acquire,
            ),
            (
                Some(other.clone()),
                Some(seen(&other, at(0))),
                at(14),
                Step::Follow { holder: "b".into() },
            ),
            (
                Some(other.clone()),
                Some(seen(&other, at(0))),
                at(15),
                Step::Acquire,
            ),
            // A released lease (duration 1 s) is taken a second after it is seen.
            (
                Some(short.clone()),
                Some(seen(&short, at(0))),
                at(1),
                Step::Acquire,
            ),
            // Without a duration on the record, ours applies.
            (
                Some(record(Some("b"), "t1", None)),
                Some(seen(&record(Some("b"), "t1", None), at(0))),
                at(14),
                Step::Follow { holder: "b".into() },
            ),
            (
                Some(record(Some("b"), "t1", None)),
                Some(seen(&record(Some("b"), "t1", None), at(0))),
                at(15),
                Step::Acquire,
            ),
        ];
        for (i, (record, observed, now, want)) in cases.into_iter().enumerate() {
            let got = decide(record.as_ref(), observed.as_ref(), "a", default, now);
            assert_eq!(got, want, "case {i}");
        }
    }
}
