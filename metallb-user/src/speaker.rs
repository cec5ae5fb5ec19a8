//! The standalone speaker: follows a configuration file and keeps this node's datapath
//! equal to its plan. Source (file watch, SIGHUP) -> pure core (`plan`) -> datapath
//! (maps, attachments) and announcer (gratuitous ARP/NA), with metrics on the side.
//!
//! An invalid file is reported and the last good configuration keeps serving. Changes
//! are applied as a diff: addresses that stay are answered throughout.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
use metallb_common::VipAction;
use notify::Watcher as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{error, info, warn};

use crate::{
    allocator::{AllocatorOptions, Decision, ServiceKey},
    announce::Announcer,
    config::{Config, ValidateOptions, file, validate},
    datapath::{Datapath, DatapathOptions, XdpMode, iface},
    metrics::{self, Shared},
    plan::{PlanOptions, Role, interfaces_to_attach, plan},
};

#[derive(Clone, Debug)]
pub struct SpeakerOptions {
    pub config_path: PathBuf,
    /// Interfaces named on the command line (empty: those the L2Advertisements select).
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub metrics_addr: SocketAddr,
    pub node_name: String,
    pub namespace: String,
    pub load_balancer_class: Option<String>,
    pub datapath: DatapathOptions,
    /// On exit, leave the program attached and the maps pinned for the next agent.
    pub keep_datapath: bool,
    pub garp_interval: Duration,
    pub garp_duration: Duration,
}

/// How often the counters the metrics show are read from the kernel.
const METRICS_REFRESH: Duration = Duration::from_secs(1);
/// Editors write a file in several steps: wait for the last one.
const SETTLE: Duration = Duration::from_millis(100);

/// Reads, parses and validates the configuration file; every problem is logged.
pub fn load_config(path: &Path, namespace: &str) -> Option<Config> {
    parse_config(&read_config(path)?, path, namespace)
}

fn read_config(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .map_err(|e| error!(file = %path.display(), error = %e, "cannot read the configuration"))
        .ok()
}

/// Parses and validates `text`, read from `path`; every problem is logged.
fn parse_config(text: &str, path: &Path, namespace: &str) -> Option<Config> {
    let parsed = match file::parse(text) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for issue in errors {
                error!(file = %path.display(), "{issue}");
            }
            return None;
        }
    };
    let validation = validate(
        &parsed,
        &ValidateOptions {
            namespace: namespace.into(),
        },
    );
    for issue in &validation.warnings {
        warn!(file = %path.display(), "{issue}");
    }
    for issue in &validation.errors {
        error!(file = %path.display(), "{issue}");
    }
    validation.config
}

/// Gives services without a status the addresses they had in the last plan, so that an
/// edit of the file (a new service listed first, say) moves nobody's address: the
/// allocator keeps valid status addresses.
pub fn with_previous_status(
    mut config: Config,
    previous: &BTreeMap<ServiceKey, Vec<IpAddr>>,
) -> Config {
    for service in &mut config.services {
        let key = ServiceKey::of_service(service);
        let has_status = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .is_some_and(|i| !i.is_empty());
        if let (false, Some(ips)) = (has_status, previous.get(&key)) {
            service.status = Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(
                        ips.iter()
                            .map(|ip| LoadBalancerIngress {
                                ip: Some(ip.to_string()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                }),
                ..Default::default()
            });
        }
    }
    config
}

struct Speaker {
    options: SpeakerOptions,
    datapath: Datapath,
    announcer: Announcer,
    shared: Arc<Shared>,
    previous: BTreeMap<ServiceKey, Vec<IpAddr>>,
    last_roles: BTreeMap<ServiceKey, Role>,
    /// The file as last read: unchanged content is not applied again.
    last_text: Option<String>,
}

impl Speaker {
    fn apply(&mut self, config: Config) {
        let config = with_previous_status(config, &self.previous);
        let host = match iface::list() {
            Ok(host) => host,
            Err(e) => {
                error!(error = %e, "cannot list interfaces; configuration not applied");
                return;
            }
        };
        let (wanted, missing) = interfaces_to_attach(
            &config,
            &self.options.node_name,
            &self.options.interfaces,
            &host,
        );
        for name in missing {
            warn!(iface = %name, "interface named in the configuration does not exist on this node");
        }
        for iface in &wanted {
            if let Err(e) = self.datapath.attach(&iface.name, self.options.xdp_mode) {
                error!(iface = %iface.name, error = %e, "cannot attach the XDP responder");
            }
        }
        let wanted_names: BTreeSet<&str> = wanted.iter().map(|i| i.name.as_str()).collect();
        let attached: Vec<iface::Interface> = self
            .datapath
            .attachments()
            .filter(|a| wanted_names.contains(a.iface.name.as_str()))
            .map(|a| a.iface.clone())
            .collect();

        let plan_options = PlanOptions {
            node_name: self.options.node_name.clone(),
            allocator: AllocatorOptions {
                load_balancer_class: self.options.load_balancer_class.clone(),
            },
        };
        let plan = plan(&config, &plan_options, &attached);
        let report = self.datapath.sync(&plan.vips);
        for e in &report.errors {
            error!(error = %e, "datapath change not applied");
        }
        // Interfaces no longer wanted have no entries left: detach them.
        let stale: Vec<String> = self
            .datapath
            .attachments()
            .filter(|a| !wanted_names.contains(a.iface.name.as_str()))
            .map(|a| a.iface.name.clone())
            .collect();
        for name in stale {
            if let Err(e) = self.datapath.detach(&name) {
                error!(iface = %name, error = %e, "cannot detach the XDP responder");
            }
        }

        // Announce what this node answers now; stop announcing what it no longer does.
        for key in report.removed.iter().chain(&report.changed) {
            if plan
                .vips
                .get(key)
                .is_none_or(|c| c.action != VipAction::Answer)
            {
                self.announcer.stop(key);
            }
        }
        for key in &report.now_answering {
            if let Some(config) = plan.vips.get(key) {
                self.announcer.start(*key, config.mac);
            }
        }

        self.log_changes(&plan.services);
        self.previous = plan
            .services
            .iter()
            .filter_map(|(key, p)| match &p.decision {
                Decision::Allocated(a) => Some((key.clone(), a.ips.clone())),
                _ => None,
            })
            .collect();
        {
            let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            state.pools = plan.pools;
            state.config_loaded = true;
            state.config_stale = false;
        }
        self.shared.ready.store(true, Ordering::Relaxed);
        info!(
            services = plan.services.len(),
            vips = plan.vips.len(),
            added = report.added.len(),
            changed = report.changed.len(),
            removed = report.removed.len(),
            "configuration applied"
        );
    }

    /// MetalLB's events, as log lines, for services whose situation changed.
    fn log_changes(&mut self, services: &BTreeMap<ServiceKey, crate::plan::ServicePlan>) {
        let mut roles = BTreeMap::new();
        for (key, service) in services {
            if self.last_roles.get(key) != Some(&service.role) {
                match (&service.decision, &service.role) {
                    (Decision::Failed { reason }, _) => {
                        warn!(service = %key, event = "AllocationFailed", "{reason}")
                    }
                    (Decision::Allocated(a), Role::Announce { interfaces }) => info!(
                        service = %key, event = "nodeAssigned", pool = %a.pool, ips = ?a.ips, interfaces = ?interfaces,
                        "announcing from this node"
                    ),
                    (Decision::Allocated(a), role) => {
                        info!(service = %key, event = "IPAllocated", pool = %a.pool, ips = ?a.ips, role = ?role, "allocated")
                    }
                    (Decision::Ignored { .. }, _) => {}
                }
            }
            roles.insert(key.clone(), service.role.clone());
        }
        self.last_roles = roles;
    }

    fn refresh_metrics(&mut self) {
        let counters = self.datapath.vips().and_then(|vips| {
            let frames = self.datapath.frame_counts(&vips)?;
            Ok((vips, frames))
        });
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        match counters {
            Ok((vips, frames)) => {
                state.vips = vips;
                state.outcomes = frames;
            }
            Err(e) => warn!(error = %e, "cannot read the datapath counters"),
        }
        drop(state);
        self.announcer.reap();
    }
}

/// Watches the directory of `path`: editors replace files by renaming, Kubernetes
/// volumes swap symlinks. (A file that `path` links to elsewhere is not watched:
/// SIGHUP reloads it.)
fn watch(path: &Path, reload: mpsc::Sender<()>) -> anyhow::Result<notify::RecommendedWatcher> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = &event {
            tracing::debug!(kind = ?event.kind, paths = ?event.paths, "file event");
        }
        // Any change in the directory: editors rename over the file, Kubernetes
        // volumes swap a symlink. Not accesses: reading the file raises those.
        if let Ok(event) = event
            && (event.kind.is_create() || event.kind.is_modify() || event.kind.is_remove())
        {
            let _ = reload.try_send(());
        }
    })
    .context("creating the file watcher")?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    Ok(watcher)
}

pub async fn run(options: SpeakerOptions) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::default());
    metrics::serve(options.metrics_addr, shared.clone()).await?;
    let config_path = std::path::absolute(&options.config_path)
        .with_context(|| format!("resolving {}", options.config_path.display()))?;
    let datapath = Datapath::load(&options.datapath).context("loading the XDP datapath")?;
    let announcer = Announcer::new(
        options.garp_interval,
        options.garp_duration,
        shared.gratuitous.clone(),
    )
    .context("opening a packet socket for gratuitous announcements")?;
    let mut speaker = Speaker {
        options: options.clone(),
        datapath,
        announcer,
        shared: shared.clone(),
        previous: BTreeMap::new(),
        last_roles: BTreeMap::new(),
        last_text: None,
    };

    let (reload_tx, mut reload_rx) = mpsc::channel(16);
    let _watcher = watch(&config_path, reload_tx.clone())?;
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut tick = tokio::time::interval(METRICS_REFRESH);

    if !reload(&mut speaker, &config_path, true) {
        error!(file = %config_path.display(), "no valid configuration yet: waiting for the file to be fixed");
    }
    info!(file = %config_path.display(), node = %options.node_name, "speaker running; SIGHUP or a file change reloads");

    loop {
        tokio::select! {
            Some(()) = reload_rx.recv() => {
                tokio::time::sleep(SETTLE).await;
                while reload_rx.try_recv().is_ok() {}
                reload(&mut speaker, &config_path, false);
            }
            _ = hangup.recv() => {
                info!("SIGHUP: reloading");
                reload(&mut speaker, &config_path, true);
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = tick.tick() => speaker.refresh_metrics(),
        }
    }

    let Speaker {
        datapath, options, ..
    } = speaker;
    let errors = if options.keep_datapath {
        info!("stopping; --keep-datapath: the XDP program and its maps stay for the next agent");
        datapath.leave_in_place()
    } else {
        info!("stopping: detaching and unpinning");
        datapath.shutdown()
    };
    for e in &errors {
        error!(error = %e, "during shutdown");
    }
    anyhow::ensure!(
        errors.is_empty(),
        "{} error(s) while stopping",
        errors.len()
    );
    Ok(())
}

/// Reads the file and applies it, unless it is what was read last time and `force`
/// is false (directory events also come from other files, and from renames around
/// ours). Returns whether a valid configuration serves.
fn reload(speaker: &mut Speaker, path: &Path, force: bool) -> bool {
    let Some(text) = read_config(path) else {
        return speaker.last_text.is_some();
    };
    if !force && speaker.last_text.as_deref() == Some(text.as_str()) {
        return true;
    }
    let parsed = parse_config(&text, path, &speaker.options.namespace);
    speaker.last_text = Some(text);
    match parsed {
        Some(config) => {
            speaker.apply(config);
            true
        }
        None => {
            speaker
                .shared
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .config_stale = true;
            error!(file = %path.display(), "configuration refused: the last good one keeps serving");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::parse;

    #[test]
    fn previous_addresses_become_the_status_of_services_without_one() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: LoadBalancer}\n\
                    ---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {type: LoadBalancer}\nstatus: {loadBalancer: {ingress: [{ip: 192.0.2.9}]}}\n";
        let config = validate(&parse(text).expect("parses"), &ValidateOptions::default())
            .config
            .expect("valid");
        let key = |name: &str| ServiceKey {
            namespace: "default".into(),
            name: name.into(),
        };
        let previous = BTreeMap::from([
            (
                key("a"),
                vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            ),
            (key("b"), vec!["192.0.2.2".parse().unwrap()]),
        ]);
        let config = with_previous_status(config, &previous);
        let ingress = |i: usize| {
            config.services[i]
                .status
                .as_ref()
                .unwrap()
                .load_balancer
                .as_ref()
                .unwrap()
                .ingress
                .clone()
                .unwrap()
        };
        let ips = |i: usize| {
            ingress(i)
                .iter()
                .map(|x| x.ip.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(ips(0), ["192.0.2.1", "2001:db8::1"]);
        // A status in the file wins over memory.
        assert_eq!(ips(1), ["192.0.2.9"]);
    }
}
