//! The deployer: converges the environments on the agents to the published versions in the
//! store and the scaler's counts. This file is its run loop (a scaler tick and a convergence
//! pass on every store change, agent state change, and second; usage flushed every
//! [`crate::accounting::FLUSH_EVERY`]; the provider's hosts swept for stray environments every
//! [`SWEEP_EVERY`]); `converge` is the pass itself (versions → what is
//! wanted, placement, scale-in, rollouts, empty instances), `lifecycle` launches and drops
//! instances and starts and stops environments (with back-off after failures), and `watcher`
//! follows each agent's reports; `adopt` takes in instances that run already (a new leader's,
//! a follower's).

mod adopt;
mod converge;
mod lifecycle;
mod watcher;

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::DataPlane;

/// How often the deployer runs when nothing wakes it; also the scaler's period.
const PERIOD: Duration = Duration::from_secs(1);
/// How often the provider's hosts are swept for stray environments.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl DataPlane {
    pub(crate) async fn run_deployer(&self, stop: CancellationToken) {
        let mut changes = self.cp.changes();
        let mut reports = self.reports.subscribe();
        let mut last_flush = Instant::now();
        let mut last_sweep = Instant::now();
        let mut sweeping: Option<tokio::task::JoinHandle<()>> = None;
        let mut renewing: Option<tokio::task::JoinHandle<()>> = None;
        // The scaler ticks on a task of its own, every PERIOD: a deploy pass that waits for
        // instance launches (seconds) neither holds back the scaling of other versions nor
        // leaves holes in the one-second series.
        let ticker = {
            let dp = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut last_tick: Option<Instant> = None;
                loop {
                    let now = Instant::now();
                    let elapsed = last_tick.map_or(Duration::ZERO, |t| now - t);
                    last_tick = Some(now);
                    if let Err(e) = dp.scale_tick(elapsed).await {
                        tracing::warn!(error = %e, "scaler tick failed");
                    }
                    // The deploy loop acts on the new desired counts at once.
                    dp.bump();
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(PERIOD) => {}
                    }
                }
            })
        };
        loop {
            if self.cfg.roles.is_some() && renewing.as_ref().is_none_or(|h| h.is_finished()) {
                let dp = self.clone();
                renewing = Some(tokio::spawn(async move { dp.renew_credentials().await }));
            }
            if last_sweep.elapsed() >= SWEEP_EVERY
                && sweeping.as_ref().is_none_or(|h| h.is_finished())
            {
                last_sweep = Instant::now();
                let dp = self.clone();
                sweeping = Some(tokio::spawn(async move {
                    let sweep = dp.provider.sweep().await;
                    if sweep.stopped > 0 {
                        tracing::info!(stopped = sweep.stopped, "stray environments stopped");
                    }
                    if sweep.hosts_joined {
                        dp.retry_launches_now();
                    }
                }));
            }
            if last_flush.elapsed() >= crate::accounting::FLUSH_EVERY {
                last_flush = Instant::now();
                let dp = self.clone();
                tokio::spawn(async move { dp.flush_usage().await });
            }
            if let Err(e) = self.deploy_once().await {
                tracing::warn!(error = %e, "deploy pass failed");
            }
            tokio::select! {
                () = stop.cancelled() => {
                    ticker.abort();
                    return;
                }
                _ = changes.changed() => {}
                _ = reports.changed() => {}
                () = tokio::time::sleep(PERIOD) => {}
            }
        }
    }

    /// Hosts joined: launches backing off after a failure may try again at once (a failure
    /// after this continues the same back-off).
    fn retry_launches_now(&self) {
        let now = Instant::now();
        let mut any = false;
        for f in self.state.write().launch_failures.values_mut() {
            if f.retry_at > now {
                f.retry_at = now;
                any = true;
            }
        }
        if any {
            self.bump();
        }
    }

    /// Wakes the run loop (an agent reported a change, a launch or start ended).
    fn bump(&self) {
        self.reports.send_modify(|n| *n += 1);
    }
}
